"""Preview pictures: an input next to augmented variants.

Volumes: three orthogonal mid-slices per column (in RAS, whatever the file's orientation), with the
label outline. Rasters: a colour composite of three bands chosen by name (``rgb_channels``), nodata
in grey.

One stretch for every panel: the display range (the 1st and 99th percentiles, per band for
rasters) is computed on the ORIGINAL's valid voxels and applied to every augmented panel, so a
gain, a haze or a brightness change shows as it is (a stretch per panel would undo it)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .core.sample import Role, Sample
from .errors import ParameterError
from .extras import require
from .io import atomic_path

__all__ = ["preview", "rgb_channels"]

Range = tuple[float, float]


def _range(x: np.ndarray, valid: np.ndarray | None) -> Range:
    """The display range of ``x``: its 1st and 99th percentiles over valid voxels."""
    values = x[valid] if valid is not None and valid.any() else x.ravel()
    values = values[np.isfinite(values)]
    lo, hi = np.percentile(values, [1, 99]) if values.size else (0.0, 1.0)
    return float(lo), float(hi)


def _stretch(x: np.ndarray, limits: Range) -> np.ndarray:
    lo, hi = limits
    return np.clip((x - lo) / max(hi - lo, 1e-12), 0, 1)


def _shown_layer(sample: Sample) -> str:
    """The layer a volume preview shows: ``image``, else the first intensity layer (``image_0000``)."""
    names = sample.layer_names()
    return "image" if "image" in names else sample.layer_names(Role.INTENSITY)[0]


def _valid(sample: Sample) -> np.ndarray | None:
    return sample[sample.valid_name][0].cpu().numpy() if sample.valid_name else None


def _volume_range(sample: Sample) -> Range:
    return _range(sample[_shown_layer(sample)][0].float().cpu().numpy(), _valid(sample))


def _volume_panels(sample: Sample, limits: Range) -> list[tuple[np.ndarray, np.ndarray | None, float]]:
    from .medical import Reorient
    sample = Reorient("RAS").apply(sample, {})             # display every volume the same way round
    image = sample[_shown_layer(sample)][0].float().cpu().numpy()
    label = sample["label"].cpu().numpy() if "label" in sample.layer_names() else None    # every channel
    panels = []
    for axis in range(3):
        mid = image.shape[axis] // 2
        sl = [slice(None)] * 3
        sl[axis] = mid
        img = np.rot90(_stretch(image[tuple(sl)], limits))
        lab = np.rot90(label[(slice(None),) + tuple(sl)], axes=(1, 2)) if label is not None else None
        rows, cols = [sample.space.spacing[a] for a in range(3) if a != axis][::-1]
        panels.append((img, lab, float(rows / cols)))    # pixel aspect from the voxel size
    return panels


def rgb_channels(sample: Sample, bands: Sequence[str] | None = None, sensor: str | None = None) -> list[int]:
    """The channels of ``image`` shown as red, green and blue.

    ``bands``: three names, each a channel name as loaded (a band description, or ``band3`` for a
    band without one) or a name the band rules resolve (``domainaug.remote_sensing.bands``:
    ``red``, ``B04``, ``SR_B4``; with ``sensor``, or ``sample.meta["sensor"]``, ids such as ``B4``
    resolve through that sensor's table). Default: the bands whose names resolve to red, green and
    blue; else bands 3, 2, 1 (the usual order of an RGB(N) file).

    Raises:
        ParameterError: not three names, or a name that is none of the layer's bands (listed).
    """
    from .remote_sensing.bands import match_band, resolve_bands
    from .remote_sensing.bands import sensor as sensor_table
    channels = list(sample.layer_info("image").channels or [])
    count = sample.layer_info("image").data.shape[0]
    sensor = sensor or sample.meta.get("sensor")
    table = sensor_table(sensor) if sensor else None
    try:
        resolved: list[object] = list(resolve_bands(channels, sensor, "image"))
    except ParameterError:
        resolved = [None] * count
    if bands is None:
        commons = [getattr(b, "common", None) for b in resolved]
        if all(c in commons for c in ("red", "green", "blue")):
            return [commons.index(c) for c in ("red", "green", "blue")]
        return [min(2, count - 1), min(1, count - 1), 0]
    if len(bands) != 3:
        raise ParameterError("bands", list(bands), "three band names (red, green, blue of the composite)")
    index = []
    for name in bands:
        if name in channels:
            index.append(channels.index(name))
            continue
        try:
            band = match_band(name, table)
        except ParameterError:
            band = None
        if band is None or band not in resolved:
            raise ParameterError("bands", list(bands), f"bands of the raster ({', '.join(map(str, channels))}"
                                 f"{'' if sensor is None else ', sensor ' + sensor}); {name!r} is none of them")
        index.append(resolved.index(band))
    return index


def _raster_range(sample: Sample, index: Sequence[int]) -> list[Range]:
    data = sample.layers["image"].data.float().cpu().numpy()
    return [_range(data[i], _valid(sample)) for i in index]


def _raster_panel(sample: Sample, index: Sequence[int], limits: Sequence[Range]) -> np.ndarray:
    data = sample.layers["image"].data.float().cpu().numpy()
    valid = _valid(sample)
    rgb = np.stack([_stretch(data[i], lim) for i, lim in zip(index, limits)], -1)
    if valid is not None:
        rgb[~valid] = 0.5
    return rgb


def preview(original: Sample, variants: Sequence[Sample], path: str | Path, title: str = "",
            bands: Sequence[str] | None = None, sensor: str | None = None) -> Path:
    """Write a PNG grid: the original first, then each variant, all with the original's stretch.

    ``bands`` and ``sensor`` choose a raster's colour composite (``rgb_channels``)."""
    matplotlib = require("matplotlib", "preview")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = [original, *variants]
    names = ["original"] + [f"augmented {i + 1}" for i in range(len(variants))]
    if original.space.ndim == 3:
        fig, axes = plt.subplots(3, len(samples), figsize=(2.6 * len(samples), 7.8), squeeze=False)
        limits = _volume_range(original)
        for col, (s, name) in enumerate(zip(samples, names)):
            for row, (img, lab, aspect) in enumerate(_volume_panels(s, limits)):
                ax = axes[row, col]
                ax.imshow(img, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest", aspect=aspect)
                for channel in lab if lab is not None else ():
                    if (channel > 0).any():
                        ax.contour(channel, levels=np.unique(channel)[1:] - 0.5, colors="tab:red", linewidths=0.4,
                                   alpha=0.7)
                ax.set_axis_off()
            axes[0, col].set_title(name, fontsize=9)
    else:
        fig, axes = plt.subplots(1, len(samples), figsize=(3.2 * len(samples), 3.4), squeeze=False)
        index = rgb_channels(original, bands, sensor)
        band_limits = _raster_range(original, index)
        for col, (s, name) in enumerate(zip(samples, names)):
            axes[0, col].imshow(_raster_panel(s, index, band_limits), interpolation="nearest")
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
