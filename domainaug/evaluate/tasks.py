"""The two experiments' tasks and the YAML-driven runner behind ``domainaug evaluate``.

A task gives the data (samples and split groups) and a ``train(samples, pipeline, seed, options,
callback=None)`` that returns a model: ``model(samples) -> probabilities``, with a per-epoch
``history``. Both train small networks on CPU, through ``AugmentedDataset`` (``pipeline=None``: no augmentation).

- ``landsat-patches``: land-cover classification of 16x16 patches of the NC Landsat-7 scene, 7
  classes (majority of the dense map), spatial-block groups. The scene is not shipped (CC BY-SA
  3.0): ``options: {scene: ..., labels: ...}`` name the files (``experiments/landsat_patches.yaml``
  points at ``shared/data_real`` beside the repository).
- ``t1-segmentation``: tissue segmentation of the T1 shipped in ``domainaug.data`` (7 k-means classes) with a
  small MONAI 3D UNet; the volume (reoriented to RAS) is cut into slabs along its first axis, and each fold
  holds one slab out (a spatial split inside the one real volume there is).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import yaml

from .. import data as shipped
from ..core.params import check_choice
from ..core.sample import Sample
from ..core.transform import Compose, Transform, transform_from_dict
from ..errors import ParameterError
from ..extras import require
from .compare import Comparison, kfold_compare, spatial_blocks

if TYPE_CHECKING:
    from torch.utils.data import DataLoader

    from ..training import AugmentedDataset

__all__ = ["TASKS", "run_config", "load_config", "pipeline_from_config", "small_cnn", "EpochCallback"]

def small_cnn(bands: int, classes: int) -> torch.nn.Module:
    """Two conv blocks and global pooling: enough for 16x16 multispectral patches."""
    return torch.nn.Sequential(
        torch.nn.Conv2d(bands, 32, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(32, 64, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(), torch.nn.Linear(64, classes))


#: ``callback(step, model)`` after each epoch (``landsat-patches``) or each ``log_every`` iterations
#: (``t1-segmentation``), with the network in eval mode: ``model(samples)`` predicts as it stands
#: (``evaluate.tune`` scores the inner validation fold there, to prune). It may raise to stop training.
EpochCallback = Callable[[int, "Model"], None]


class Model:
    """A trained network as ``model(samples) -> probabilities`` (numpy), with its ``history``."""

    def __init__(self, predict: Callable[[list[Sample]], np.ndarray | list[np.ndarray]], history: list[dict]) -> None:
        self.predict, self.history = predict, history

    def __call__(self, samples: list[Sample]) -> Any:
        with torch.no_grad():
            return self.predict(samples)


def _loader(samples: list[Sample], pipeline: Transform | None, seed: int, batch: int,
            patches: int | None = None) -> tuple[AugmentedDataset, DataLoader]:
    from torch.utils.data import DataLoader

    from ..training import AugmentedDataset, collate
    dataset = AugmentedDataset(samples, pipeline if pipeline is not None else Compose([]), seed=seed, patches=patches)
    return dataset, DataLoader(dataset, batch_size=batch, shuffle=True, num_workers=0, collate_fn=collate,
                               generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------------------------------------
# Remote sensing: patch classification.
# ---------------------------------------------------------------------------------------------
class LandsatPatches:
    kind = "classification"
    defaults = {"scene": None, "labels": None,
                "bands": ["B1", "B2", "B3", "B4", "B5", "B7"], "sensor": "landsat7", "classes": 7,
                "patch": 16, "block_patches": 4, "epochs": 15, "batch": 32, "lr": 2e-3}
    quick = {"epochs": 1}
    paths = ("scene", "labels")
    requires: tuple[str, ...] = ()

    def data(self, o: dict[str, Any]) -> tuple[list[Sample], list[Any]]:
        from ..remote_sensing import classification_patches
        for key in ("scene", "labels"):
            if o[key] is None or not Path(o[key]).is_file():
                raise ParameterError(f"options.{key}", o[key], "an existing GeoTIFF (the NC Landsat scene is not "
                                     "shipped; experiments/landsat_patches.yaml names it in shared/data_real)")
        samples = classification_patches(o["scene"], o["labels"], o["patch"], bands=o["bands"], sensor=o["sensor"])
        size = float(samples[0].space.spacing.max()) * o["patch"] * o["block_patches"]
        return samples, spatial_blocks(samples, size)

    def train(self, samples: list[Sample], pipeline: Transform | None, seed: int, o: dict[str, Any],
              callback: EpochCallback | None = None) -> Model:
        torch.manual_seed(seed)
        pixels = torch.cat([s["image"].float()[:, s["valid"][0]] for s in samples], 1)
        mean, std = pixels.mean(1).view(1, -1, 1, 1), pixels.std(1).clamp(min=1e-6).view(1, -1, 1, 1)
        scale = lambda image, valid: (image.float() - mean) / std * valid  # noqa: E731 - nodata -> 0
        net = small_cnn(len(o["bands"]), o["classes"])
        optimiser = torch.optim.Adam(net.parameters(), lr=o["lr"])
        dataset, loader = _loader(samples, pipeline, seed, o["batch"])
        history: list[dict] = []

        def predict(items: list[Sample]) -> np.ndarray:
            image = torch.stack([s["image"] for s in items])
            valid = torch.stack([s["valid"] for s in items])
            return torch.softmax(net(scale(image, valid)).double(), 1).numpy()

        model = Model(predict, history)
        for epoch in range(o["epochs"]):
            dataset.set_epoch(epoch)
            net.train()
            total, n = 0.0, 0
            for batch in loader:
                loss = torch.nn.functional.cross_entropy(net(scale(batch["image"], batch["valid"])), batch["target"])
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                total, n = total + loss.item() * len(batch["target"]), n + len(batch["target"])
            history.append({"epoch": epoch + 1, "train_loss": total / n})
            if callback is not None:
                net.eval()
                callback(epoch + 1, model)
        net.eval()
        return model


# ---------------------------------------------------------------------------------------------
# Medical: 3D tissue segmentation.
# ---------------------------------------------------------------------------------------------
class T1Segmentation:
    kind = "segmentation"
    defaults = {"image": str(shipped.path(shipped.T1)), "labels": str(shipped.path(shipped.T1_LABELS)),
                "classes": 7, "slabs": 5, "patch": [24, 32, 32], "iterations": 150, "batch": 2, "lr": 3e-3,
                "log_every": 25, "channels": [8, 16, 32]}
    quick = {"iterations": 2, "log_every": 1}
    paths = ("image", "labels")
    requires = ("monai",)

    def data(self, o: dict[str, Any]) -> tuple[list[Sample], None]:
        from .. import io as dio
        from ..medical import Reorient
        from ..spatial import Crop
        volume = Reorient("RAS")(dio.load(o["image"], label=o["labels"]))
        n = volume.space.shape[0]
        edges = np.linspace(0, n, o["slabs"] + 1).round().astype(int)
        slabs = []
        for lo, hi in zip(edges[:-1], edges[1:]):
            size = [int(hi - lo)] + list(volume.space.shape[1:])
            slabs.append(Crop(size).apply(volume, {"start": [int(lo), 0, 0]}))
        return slabs, None

    @staticmethod
    def _normalise(image: torch.Tensor) -> torch.Tensor:
        x = image.float()
        dims = tuple(range(1, x.dim()))
        return (x - x.mean(dims, keepdim=True)) / x.std(dims, keepdim=True).clamp(min=1e-6)

    def train(self, samples: list[Sample], pipeline: Transform | None, seed: int, o: dict[str, Any],
              callback: EpochCallback | None = None) -> Model:
        require("monai", "the t1-segmentation task")
        from monai.losses import DiceCELoss
        from monai.networks.nets import UNet

        from ..spatial import Crop
        torch.manual_seed(seed)
        crop = Crop(list(o["patch"]), mode="label", ratios=[1.0] * o["classes"])
        augment = Compose([crop] if pipeline is None else [pipeline, crop])
        dataset, loader = _loader(samples, augment, seed, o["batch"], patches=2)
        net = UNet(spatial_dims=3, in_channels=1, out_channels=o["classes"], channels=tuple(o["channels"]),
                   strides=(2, 2), num_res_units=1)
        loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
        optimiser = torch.optim.Adam(net.parameters(), lr=o["lr"])
        history: list[dict] = []
        it, epoch, window = 0, 0, []

        def predict(items: list[Sample]) -> list[np.ndarray]:
            out = []
            for s in items:
                x = self._normalise(s["image"])[None]
                shape = x.shape[2:]
                pad = [p for n in reversed(shape) for p in (0, (-n) % 4)]
                logits = net(torch.nn.functional.pad(x, pad, mode="replicate"))
                logits = logits[(0, slice(None)) + tuple(slice(0, n) for n in shape)]
                out.append(torch.softmax(logits.double(), 0).numpy())
            return out

        model = Model(predict, history)
        while it < o["iterations"]:
            dataset.set_epoch(epoch)
            net.train()
            for batch in loader:
                image = torch.stack([self._normalise(x) for x in batch["image"]])
                loss = loss_fn(net(image), batch["label"].long())
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                window.append(loss.item())
                it += 1
                if it % o["log_every"] == 0:
                    history.append({"epoch": it, "train_loss": float(np.mean(window))})
                    window = []
                    if callback is not None:
                        net.eval()
                        callback(it, model)
                        net.train()
                if it >= o["iterations"]:
                    break
            epoch += 1
        net.eval()
        return model


TASKS: dict[str, Any] = {"landsat-patches": LandsatPatches, "t1-segmentation": T1Segmentation}


# ---------------------------------------------------------------------------------------------
# The YAML runner.
# ---------------------------------------------------------------------------------------------
def pipeline_from_config(name: str, value: Any) -> Transform | None:
    """``null`` (no augmentation), ``{"preset": NAME}`` (a medical or remote-sensing preset) or a
    transform dict (``{"transform": ..., "config": ...}``)."""
    if value is None:
        return None
    if isinstance(value, dict) and set(value) == {"preset"}:
        from .. import medical, remote_sensing
        for module in (medical, remote_sensing):
            if value["preset"] in module.presets():
                return module.preset(value["preset"])
        raise ParameterError(f"pipelines[{name!r}]", value, "a preset of domainaug.medical or domainaug.remote_sensing "
                             f"({', '.join(medical.presets() + remote_sensing.presets())})")
    if isinstance(value, dict) and "transform" in value:
        return transform_from_dict(value)
    raise ParameterError(f"pipelines[{name!r}]", value, "null, {preset: NAME} or {transform: ..., config: ...}")


def load_config(config: dict[str, Any] | str | Path, quick: bool = False, feature: str = "domainaug evaluate",
                extra_options: dict[str, Any] | None = None) -> tuple[dict[str, Any], Any, dict[str, Any]]:
    """A YAML config (or its dict), its task and the task's options: defaults, then ``options``
    (relative file paths in a YAML file are relative to its folder), then ``extra_options``, then
    the task's tiny settings when ``quick``. Checks the task's optional dependencies first."""
    base = Path.cwd()
    if not isinstance(config, dict):
        path = Path(config)
        if not path.is_file():
            raise ParameterError("config", str(config), "an existing YAML file")
        base = path.absolute().parent
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
        if not isinstance(config, dict):
            raise ParameterError("config", str(path), "a YAML mapping")
    task = TASKS[check_choice("task", config.get("task"), sorted(TASKS))]()
    for module in ("matplotlib", *task.requires):          # before any training, not after it
        require(module, f"{feature} ({config['task']})")
    given = dict(config.get("options") or {})
    for name, values in (("options", given), ("tune.options", extra_options or {})):
        unknown = set(values) - set(task.defaults)
        if unknown:
            raise ParameterError(name, sorted(unknown), f"settings of {config['task']} ({', '.join(task.defaults)})")
    for key in task.paths:
        if isinstance(given.get(key), str):
            given[key] = str(base / given[key])
    options = {**task.defaults, **given, **(extra_options or {}), **(task.quick if quick else {})}
    return config, task, options


def run_config(config: dict[str, Any] | str | Path, out: str | Path | None = None, quick: bool = False,
               log: Callable[[str], None] | None = print) -> tuple[Comparison, Path]:
    """Run the comparison a YAML config (or its dict) describes; write ``report.md``, ``results.json``
    and plots. ``quick``: two folds and the task's tiny training settings (for tests and CI).

    Keys: ``task`` (``landsat-patches`` | ``t1-segmentation``), ``title``, ``options`` (task
    settings; relative file paths in a YAML file are relative to its folder), ``pipelines`` (name ->
    pipeline, see ``pipeline_from_config``), ``baseline``, ``folds``, ``seeds``, ``shift`` (a
    transform dict or ``{preset: NAME}``), ``out``, ``notes``.
    """
    config, task, options = load_config(config, quick, "domainaug evaluate")
    raw = config.get("pipelines")
    if not isinstance(raw, dict) or not raw:
        raise ParameterError("pipelines", raw, "a mapping of names to pipelines (null = no augmentation)")
    pipelines = {name: pipeline_from_config(name, value) for name, value in raw.items()}
    shift = pipeline_from_config("shift", config["shift"]) if config.get("shift") is not None else None
    folds = 2 if quick else config.get("folds", 5)
    seeds = list(config.get("seeds", [0]))[:1] if quick else list(config.get("seeds", [0]))
    data, groups = task.data(options)
    if task.kind == "segmentation" and folds > len(data):
        raise ParameterError("folds", folds, f"at most the number of slabs ({len(data)})")
    start = time.perf_counter()
    result = kfold_compare(lambda train, pipeline, seed: task.train(train, pipeline, seed, options), data, pipelines,
                           folds=folds, seeds=seeds, groups=groups, shift=shift, baseline=config.get("baseline"),
                           log=log)
    minutes = (time.perf_counter() - start) / 60
    out = Path(out or config.get("out") or "evaluation")
    notes = (config.get("notes") or "") + (
        f"\n\nTask `{config['task']}`, {len(data)} samples, options: `{json_line(options)}`. "
        f"Shift: `{json_line(config.get('shift'))}`. Ran in {minutes:.1f} min"
        f"{' (quick mode)' if quick else ''} with torch {torch.__version__}, {torch.get_num_threads()} threads.")
    report = result.write(out, config.get("title", f"{config['task']}: augmentation comparison"), notes)
    return result, report


def json_line(value: Any) -> str:
    import json
    return json.dumps(value, default=str)[:400]

