"""Preview pictures: an input next to augmented variants.

Volumes: three orthogonal mid-slices per column (in RAS, whatever the file's orientation), with the
label outline. Rasters: a colour
composite of three bands chosen by name, percentile-stretched on valid pixels, nodata in grey."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .core.sample import Role, Sample
from .extras import require
from .io import atomic_path

__all__ = ["preview"]


def _stretch(x: np.ndarray, valid: np.ndarray | None) -> np.ndarray:
    values = x[valid] if valid is not None and valid.any() else x.ravel()
    lo, hi = np.percentile(values, [1, 99]) if values.size else (0.0, 1.0)
    return np.clip((x - lo) / max(hi - lo, 1e-12), 0, 1)


def _volume_panels(sample: Sample) -> list[tuple[np.ndarray, np.ndarray | None, float]]:
    from .medical import Reorient
    sample = Reorient("RAS").apply(sample, {})             # display every volume the same way round
    image = sample["image"][0].float().cpu().numpy()
    label = sample["label"].cpu().numpy() if "label" in sample.layer_names() else None    # every channel
    panels = []
    for axis in range(3):
        mid = image.shape[axis] // 2
        sl = [slice(None)] * 3
        sl[axis] = mid
        img = np.rot90(_stretch(image[tuple(sl)], None))
        lab = np.rot90(label[(slice(None),) + tuple(sl)], axes=(1, 2)) if label is not None else None
        rows, cols = [sample.space.spacing[a] for a in range(3) if a != axis][::-1]
        panels.append((img, lab, float(rows / cols)))    # pixel aspect from the voxel size
    return panels


def _raster_panel(sample: Sample, bands: Sequence[str] | None) -> np.ndarray:
    layer = sample.layers["image"]
    data = layer.data.float().cpu().numpy()
    names = list(layer.channels or [])
    if bands and all(b in names for b in bands):
        index = [names.index(b) for b in bands]
    else:
        index = [min(2, data.shape[0] - 1), min(1, data.shape[0] - 1), 0]
    valid = sample["valid"][0].cpu().numpy() if sample.valid_name else None
    rgb = np.stack([_stretch(data[i], valid) for i in index], -1)
    if valid is not None:
        rgb[~valid] = 0.5
    return rgb


def preview(original: Sample, variants: Sequence[Sample], path: str | Path, title: str = "",
            bands: Sequence[str] | None = None) -> Path:
    """Write a PNG grid: the original first, then each variant."""
    matplotlib = require("matplotlib", "preview")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = [original, *variants]
    names = ["original"] + [f"augmented {i + 1}" for i in range(len(variants))]
    if original.space.ndim == 3:
        fig, axes = plt.subplots(3, len(samples), figsize=(2.6 * len(samples), 7.8), squeeze=False)
        for col, (s, name) in enumerate(zip(samples, names)):
            for row, (img, lab, aspect) in enumerate(_volume_panels(s)):
                ax = axes[row, col]
                ax.imshow(img, cmap="gray", interpolation="nearest", aspect=aspect)
                for channel in lab if lab is not None else ():
                    if (channel > 0).any():
                        ax.contour(channel, levels=np.unique(channel)[1:] - 0.5, colors="tab:red", linewidths=0.4,
                                   alpha=0.7)
                ax.set_axis_off()
            axes[0, col].set_title(name, fontsize=9)
    else:
        fig, axes = plt.subplots(1, len(samples), figsize=(3.2 * len(samples), 3.4), squeeze=False)
        for col, (s, name) in enumerate(zip(samples, names)):
            axes[0, col].imshow(_raster_panel(s, bands), interpolation="nearest")
            if "label" in s.layer_names() and s.layer_info("label").role is Role.LABEL:
                for channel in s["label"].cpu().numpy():          # every channel of the label map
                    axes[0, col].contour(channel, colors="tab:red", linewidths=0.4)
            axes[0, col].set_title(name, fontsize=9)
            axes[0, col].set_axis_off()
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path
