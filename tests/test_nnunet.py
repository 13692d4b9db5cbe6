"""nnU-Net v2: a tiny dataset cut from the shipped T1, planned and preprocessed by nnU-Net, trained
for 2 iterations on the CPU with nnUNetTrainerDomainaug; each augmented case equals the pipeline
applied to that case with its seed."""

import importlib
import json
import multiprocessing
import sys

import nibabel as nib
import numpy as np
import pytest
import torch

import domainaug as da
from domainaug import data
from domainaug.errors import MissingDependencyError

pytest.importorskip("nnunetv2")
from nnunetv2.experiment_planning.plan_and_preprocess_api import (  # noqa: E402
    extract_fingerprints,
    plan_experiments,
    preprocess,
)
from nnunetv2.utilities.find_class_by_name import recursive_find_python_class  # noqa: E402
from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name  # noqa: E402

from domainaug.training import nnunet  # noqa: E402
from domainaug.training.nnunet import TRAINER_PATH, DomainaugTransform, nnUNetTrainerDomainaug  # noqa: E402

DATASET = 987
NAME = f"Dataset{DATASET}_Domainaug"
PATCH = [16, 24, 24]          # nnU-Net's transposed order: the 3 mm axis first


_ORIGINAL_GET_CONTEXT = multiprocessing.get_context


def pipeline():
    # mm parameters: a 6 mm shift is 2 voxels on the 3 mm axis and 3 on the 2 mm ones
    return da.Compose([da.Affine(degrees=(-15, 15), scales=(0.9, 1.1), translation=(-6, 6)),
                       da.Flip(axes=(0,), p=0.5), da.Gamma((0.8, 1.25))])


@pytest.fixture(scope="module")
def nnunet_env(tmp_path_factory):
    """The dataset in nnU-Net's raw format, fingerprinted, planned (then shrunk: a tiny network and
    patch) and preprocessed by nnU-Net's own API; the environment points nnU-Net at it."""
    tmp_path = tmp_path_factory.mktemp("nnunet")
    with pytest.MonkeyPatch.context() as mp:
        for key in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
            (tmp_path / key).mkdir()
            mp.setenv(key, str(tmp_path / key))
        mp.setenv("nnUNet_n_proc_DA", "1")           # (the planner sets its torch threads to it)
        mp.setenv("nnUNet_compile", "f")
        # nnU-Net's fingerprint and preprocessing pools are "spawn" pools: each worker imports nnU-Net
        # again (10 s here). Forked workers run the same code without that import.
        fork = multiprocessing.get_context("fork")
        mp.setattr(multiprocessing, "get_context", lambda method=None: fork)
        raw = tmp_path / "nnUNet_raw" / NAME
        (raw / "imagesTr").mkdir(parents=True)
        (raw / "labelsTr").mkdir()
        t1 = nib.load(data.path(data.T1))
        seg = nib.load(data.path(data.T1_LABELS))
        for i, (x, y) in enumerate([(30, 30), (60, 40), (40, 66), (70, 70)]):    # 32 x 32 x 24 voxel crops
            box = (slice(x, x + 32), slice(y, y + 32), slice(20, 44))
            nib.save(t1.slicer[box], raw / "imagesTr" / f"case{i}_0000.nii.gz")
            nib.save(seg.slicer[box], raw / "labelsTr" / f"case{i}.nii.gz")
        (raw / "dataset.json").write_text(json.dumps({
            "channel_names": {"0": "T1"}, "labels": {"background": 0, **{f"class{k}": k for k in range(1, 7)}},
            "numTraining": 4, "file_ending": ".nii.gz"}), encoding="utf-8")
        extract_fingerprints([DATASET], num_processes=1, check_dataset_integrity=True, verbose=False,
                             show_progress_bar=False)
        plan_experiments([DATASET])
        plans_file = tmp_path / "nnUNet_preprocessed" / NAME / "nnUNetPlans.json"
        plans = json.loads(plans_file.read_text(encoding="utf-8"))
        full = plans["configurations"]["3d_fullres"]
        # a tiny network: 3 stages of 4, 8, 16 features, one conv per stage, batch of 2
        full.update(patch_size=PATCH, batch_size=2)
        full["architecture"]["arch_kwargs"].update(
            n_stages=3, features_per_stage=[4, 8, 16], kernel_sizes=[[3, 3, 3]] * 3,
            strides=[[1, 1, 1], [2, 2, 2], [2, 2, 2]], n_conv_per_stage=[1, 1, 1], n_conv_per_stage_decoder=[1, 1])
        plans_file.write_text(json.dumps(plans), encoding="utf-8")
        preprocess([DATASET], configurations=("3d_fullres",), num_processes=(1,), show_progress_bar=False)
        mp.setattr(multiprocessing, "get_context", _ORIGINAL_GET_CONTEXT)
        mp.setenv("nnUNet_n_proc_DA", "0")           # augment in this process: the test sees every call
        yield tmp_path


def make(cls, plans, dataset_json):
    return cls({**plans, "continue_training": False}, "3d_fullres", "all", dataset_json, device=torch.device("cpu"))


class Recording(nnUNetTrainerDomainaug):
    """Records every call of the augmentation (its input and draw) and every training batch."""

    domainaug_pipeline = pipeline()
    domainaug_seed = 11

    def get_training_transforms(self, *args, **kwargs):
        compose = super().get_training_transforms(*args, **kwargs)
        self.calls = []
        get_parameters = self.augmentation.get_parameters

        def recording(**data_dict):
            params = get_parameters(**data_dict)
            self.calls.append((data_dict["image"].clone(), data_dict["segmentation"].clone(), params["draw"]))
            return params

        self.augmentation.get_parameters = recording
        return compose

    def train_step(self, batch):
        self.batches.append(batch)
        return super().train_step(batch)


def test_two_iterations_train_on_the_augmented_batches_the_pipeline_gives(nnunet_env):
    torch.set_num_threads(1)
    plans = json.loads((nnunet_env / "nnUNet_preprocessed" / NAME / "nnUNetPlans.json").read_text(encoding="utf-8"))
    spacing = plans["configurations"]["3d_fullres"]["spacing"]
    assert spacing == [3.0, 2.0, 2.0]                      # transposed: the thick axis first
    dataset_json = json.loads((nnunet_env / "nnUNet_preprocessed" / NAME / "dataset.json").read_text(encoding="utf-8"))
    trainer = make(Recording, plans, dataset_json)
    trainer.num_iterations_per_epoch, trainer.num_val_iterations_per_epoch, trainer.num_epochs = 2, 1, 1
    trainer.batches = []
    np.random.seed(0)
    trainer.on_train_start()                               # builds the loaders; draws one warm-up batch
    trainer.on_train_epoch_start()
    losses = [trainer.train_step(next(trainer.dataloader_train))["loss"] for _ in range(2)]
    assert all(np.isfinite(v) for v in losses)
    assert len(trainer.batches) == 2 and len(trainer.calls) == 6             # warm-up batch + 2 batches of 2
    assert trainer.augmentation.spacing == (3.0, 2.0, 2.0)
    # the augmentation replaced; nnU-Net's -1 -> 0 and deep-supervision targets kept
    steps = [type(t).__name__ for t in trainer.dataloader_train.data_loader.transforms.transforms]
    assert steps == ["DomainaugTransform", "RemoveLabelTransform", "DownsampleSegForDSTransform"]
    aug = DomainaugTransform(pipeline(), spacing, PATCH, seed=11)            # the same pipeline, on its own
    for b, batch in enumerate(trainer.batches):
        assert tuple(batch["data"].shape) == (2, 1, *PATCH)
        for j in range(2):
            image, seg, draw = trainer.calls[2 + 2 * b + j]
            assert draw[:2] == [11, 0]
            sample = aug.sample(image, seg)
            assert sample.space.spacing.tolist() == [3.0, 2.0, 2.0]
            out = aug.pipeline(sample, da.generator_for(*draw))
            assert torch.equal(batch["data"][j], out["image"])
            # nnU-Net's own tail: -1 (outside the image) becomes 0, then deep-supervision targets
            target = torch.where(out["label"] < 0, 0, out["label"]).to(torch.int16)
            full_res = batch["target"][0] if isinstance(batch["target"], list) else batch["target"]
            assert torch.equal(full_res[j], target.float() if full_res.dtype.is_floating_point else target)
            plain_crop = da.Crop(PATCH, mode="center")(sample, torch.Generator())["image"]
            assert not torch.equal(batch["data"][j], plain_crop)               # augmented, not only cut
    assert isinstance(batch["target"], list) and len(batch["target"]) == 2    # deep-supervision targets kept
    assert tuple(batch["target"][1].shape[2:]) == tuple(p // 2 for p in PATCH)
    assert len({tuple(c[2]) for c in trainer.calls}) == 6                     # every case its own draw
    trainer.current_epoch = 1                                                 # the next epoch reaches the draws
    trainer.on_train_epoch_start()
    next(trainer.dataloader_train)
    assert [c[2][1] for c in trainer.calls[6:]] == [1, 1]


def test_the_trainer_is_found_in_the_external_trainer_folder():
    """The search nnU-Net runs over each folder of ``nnUNet_extTrainer``, on ours."""
    found = recursive_find_python_class(TRAINER_PATH, "nnUNetTrainerDomainaug", None, base_folder=TRAINER_PATH,
                                        cleanup_imports_from_base_folder=True)
    assert found is nnUNetTrainerDomainaug


def test_nnunet_train_finds_the_trainer_by_name(monkeypatch):
    # nnU-Net imports every trainer variant of its own package first; some need timm
    pytest.importorskip("timm", reason="nnU-Net's trainer search imports its variants, some of which need timm")
    monkeypatch.setenv("nnUNet_extTrainer", TRAINER_PATH)
    assert recursive_find_trainer_class_by_name("nnUNetTrainerDomainaug") is nnUNetTrainerDomainaug


def test_the_pipeline_comes_from_the_environment(nnunet_env, monkeypatch, tmp_path):
    plans = json.loads((nnunet_env / "nnUNet_preprocessed" / NAME / "nnUNetPlans.json").read_text(encoding="utf-8"))
    dataset_json = json.loads((nnunet_env / "nnUNet_preprocessed" / NAME / "dataset.json").read_text(encoding="utf-8"))
    monkeypatch.delenv("DOMAINAUG_PIPELINE", raising=False)
    with pytest.raises(da.ParameterError, match="DOMAINAUG_PIPELINE"):
        make(nnUNetTrainerDomainaug, plans, dataset_json)
    monkeypatch.setenv("DOMAINAUG_PIPELINE", "brain-mri")
    trainer = make(nnUNetTrainerDomainaug, plans, dataset_json)
    assert trainer.pipeline.to_dict() == da.medical.preset("brain-mri").to_dict()
    path = tmp_path / "aug.yaml"
    path.write_text(pipeline().to_yaml(), encoding="utf-8")
    monkeypatch.setenv("DOMAINAUG_PIPELINE", str(path))
    monkeypatch.setenv("DOMAINAUG_SEED", "5")
    trainer = make(nnUNetTrainerDomainaug, plans, dataset_json)
    assert trainer.pipeline.to_dict() == pipeline().to_dict() and trainer.seed == 5


def test_the_missing_extra_is_named(monkeypatch):
    monkeypatch.setitem(sys.modules, "nnunetv2", None)
    monkeypatch.delitem(sys.modules, "domainaug.training.nnunet")
    with pytest.raises(MissingDependencyError, match=r"pip install 'domainaug\[nnunet\]'"):
        importlib.import_module("domainaug.training.nnunet")
    assert nnunet.TRAINER_PATH.endswith("nnunet_ext")


def _worker(aug, go, out):
    go.wait()
    out.put(aug.get_parameters()["draw"][1])


def test_the_epoch_reaches_a_background_worker_started_before_it():
    """nnU-Net's augmenter processes start once; set_epoch in the main process must reach them."""
    ctx = multiprocessing.get_context("fork")
    aug = DomainaugTransform(pipeline(), (3.0, 2.0, 2.0), PATCH)
    go, out = ctx.Event(), ctx.Queue()
    worker = ctx.Process(target=_worker, args=(aug, go, out))
    worker.start()
    aug.set_epoch(4)
    go.set()
    assert out.get(timeout=60) == 4
    worker.join(60)
