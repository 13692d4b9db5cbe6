"""Evaluation: does augmentation help? Metrics (Dice, accuracy, calibration, per-class report),
paired statistics, k-fold comparisons on group/spatial-block splits, robustness under a held-out
shift, and reports (``domainaug evaluate CONFIG.yaml``); a policy search graded by nested
cross-validation (``tune``, ``domainaug tune CONFIG.yaml``)."""

from .compare import Comparison, group_kfold, kfold_compare, spatial_blocks
from .metrics import accuracy, dice, expected_calibration_error, per_class_report
from .stats import paired_ttest, wilcoxon
from .tune import SearchSpace, TuneResult, run_tune_config, tune

__all__ = ["dice", "accuracy", "expected_calibration_error", "per_class_report", "paired_ttest", "wilcoxon",
           "kfold_compare", "group_kfold", "spatial_blocks", "Comparison",
           "tune", "run_tune_config", "SearchSpace", "TuneResult"]
