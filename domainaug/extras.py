"""Optional dependencies, imported where a feature first needs them. Each belongs to an extra of
the package: ``pip install 'domainaug[NAME]'`` installs it, and ``domainaug[all]`` installs every one.

- ``monai``: ``training.adapters.MonaiTransform``, ``io.interop.to_monai``, the ``t1-segmentation``
  experiment.
- ``torchio``: ``training.adapters.TorchioTransform``, ``io.interop.to_torchio``/``from_torchio``.
- ``dask``: ``offline.run`` on a Dask cluster (``scheduler=``, ``domainaug augment --scheduler``);
  the local default runs on threads without Dask.
- ``plot``: matplotlib, for ``preview``, the demo's PNG previews and ``evaluate`` report plots.
- ``itk``: SimpleITK, for MHA/MHD/NRRD files and DICOM folders (NIfTI and GeoTIFF need none).
- ``xarray``: xarray and rioxarray, for ``Sample.from_xarray``/``Sample.to_xarray``.
- ``tune``: Optuna, for ``evaluate.tune`` and ``domainaug tune`` (the policy search).
- ``torchgeo``: TorchGeo, whose datasets ``training.torchgeo.TorchGeoTransform`` augments. The
  adapter itself reads TorchGeo's sample dicts without importing TorchGeo; the extra is kept out
  of ``all`` (TorchGeo pulls torchvision, whose wheels must match the installed torch build).
- ``nnunet``: nnU-Net v2 (``nnunetv2``, with batchgeneratorsv2), for ``training.nnunet``.
- ``lightning``: Lightning 2 (``lightning``), for ``training.lightning.DomainaugEpochs``.
- ``hydra``: hydra-core and OmegaConf. The library imports neither: every transform argument takes
  OmegaConf's ``ListConfig``/``DictConfig`` (``core.params.as_builtin``); the extra is for users'
  configs and the tests.
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

from .errors import MissingDependencyError, ParameterError

__all__ = ["EXTRAS", "require", "available"]

EXTRAS = {"monai": "monai", "torchio": "torchio", "distributed": "dask", "matplotlib": "plot", "SimpleITK": "itk",
          "xarray": "xarray", "rioxarray": "xarray", "torchgeo": "torchgeo", "optuna": "tune", "nnunetv2": "nnunet",
          "lightning": "lightning", "hydra": "hydra"}


def require(module: str, feature: str) -> ModuleType:
    """Import ``module`` (an optional dependency, a key of ``EXTRAS``) for ``feature``.

    Args:
        module: The module to import, e.g. ``"monai"``.
        feature: What needs it, for the message (``"MonaiTransform"``).

    Returns:
        The imported module.

    Raises:
        MissingDependencyError: The module is not installed; the one-line message names the extra.
    """
    extra = _extra_of(module)
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name != module:         # installed, but something it imports is missing: not ours to rename
            raise
        raise MissingDependencyError(module, extra, feature) from None


def available(module: str) -> bool:
    """Whether an optional dependency (a key of ``EXTRAS``) is installed, without importing it."""
    _extra_of(module)
    return importlib.util.find_spec(module) is not None


def _extra_of(module: str) -> str:
    if module not in EXTRAS:
        raise ParameterError("module", module, "an optional dependency: " + ", ".join(EXTRAS))
    return EXTRAS[module]
