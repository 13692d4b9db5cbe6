"""Band-aware, nodata-aware spectral transforms and indices for multispectral rasters.

Bands are named by the layer's channel names: a sensor's band names (``"B04"``, with ``sensor=``
or ``sample.meta["sensor"]``) or common names (``"red"``, ``"nir"``; no sensor needed); band
descriptions such as ``B02_blue`` or ``SR_B4`` resolve by the rules in ``bands``. Params are keyed by
band name, so logs stay meaningful when bands are dropped or reordered. Every op leaves invalid
(nodata) pixels untouched and computes in float.

**Reflectance units.** The physical models (``Haze``, ``CloudShadow``) work in reflectance. With
``reflectance_scale`` a number, the data is ``reflectance * reflectance_scale`` (1 for reflectance,
10000 for Sentinel-2 or Landsat digital numbers scaled that way). With ``None`` (the default, for
uncalibrated DN such as 8-bit products) each band's valid range stands for reflectance 0..1: its
darkest valid value for 0 (the dark-object assumption, Chavez 1988) and its brightest for 1.

**Band statistics.** Ops that read band statistics (``SpectralJitter`` with a relative bias,
``Haze`` and ``CloudShadow`` without a ``reflectance_scale``, ``BandDropout(value="mean")``) take
``stats``: ``None`` (each sample's own valid pixels: tiles of a mosaic then differ at their seams),
``"scene"`` (``sample.meta["scene_stats"][layer]``, computed once per file by
``tiles(..., scene_stats=True)`` or ``scene_stats(path)``), or explicit values ``{band: {"min",
"max", "mean", "std"}}`` (JSON-ready, so records replay).

**Derived layers.** ``AppendIndex`` lists the layer it adds in ``sample.meta["derived_layers"]``;
``source_layers(sample)`` gives the INTENSITY layers that are not derived, for ``layers=`` of
generic intensity ops (the core skips derived layers once ``IntensityTransform.target_layers``
reads that key).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from ..core.params import as_uniform, check_choice, check_positive_int
from ..core.random import child_seed
from ..core.sample import Layer, Role, Sample
from ..core.transform import IntensityTransform, Transform, date_layers
from ..core.values import cast, channel_quantiles, channel_stats, per_element, seeded_noise
from ..errors import ParameterError, ShapeError
from .bands import Band, is_unnamed, resolve_bands
from .bands import sensor as sensor_table

if TYPE_CHECKING:
    from ..testing import Case

__all__ = ["set_bands", "layer_bands", "SpectralJitter", "Haze", "BandDropout", "CloudShadow", "INDICES",
           "spectral_index", "AppendIndex", "band_stats", "check_stats", "cloud_reflectance", "derived_layers",
           "source_layers", "REFERENCE_NM", "STAT_KEYS", "dates", "stack_dates", "date_layers", "check_distinct_bands",
           "raster_layers", "RasterTransform"]


def set_bands(sample: Sample, names: Sequence[str], sensor: str | None = None, layer: str = "image") -> Sample:
    """Name the channels of ``layer`` (e.g. a GeoTIFF without band descriptions) and record the sensor.

    With ``sensor``, every name must resolve to one of its bands (the rules in ``bands``: ``B02``,
    ``B2``, ``B02_blue``, ``SR_B2`` and ``blue`` all name Sentinel-2 B02). Scene statistics in
    ``sample.meta["scene_stats"][layer]`` are renamed with the channels, by position.
    """
    info = sample.layer_info(layer)
    names = [str(n) for n in names]
    if len(names) != info.data.shape[0]:
        raise ParameterError("names", names, f"{info.data.shape[0]} band names for layer {layer!r}")
    check_distinct_bands(names, layer)
    if sensor is not None:
        resolve_bands(names, sensor_table(sensor).name, layer)       # every name must be a band of the sensor
    meta = {**sample.meta, **({"sensor": sensor} if sensor else {})}
    scene = meta.get("scene_stats", {})
    if layer in scene and len(scene[layer]) == len(names):
        meta["scene_stats"] = {**scene, layer: dict(zip(names, scene[layer].values()))}
    return sample.replace(layers={**sample.layers, layer: replace(sample.layers[layer], channels=tuple(names))},
                          meta=meta)


def layer_bands(sample: Sample, layer: str, sensor: str | None) -> list[Band]:
    """The ``Band`` of every channel of ``layer`` (sensor from the argument or ``sample.meta``)."""
    check_distinct_bands(sample.layer_info(layer).channels, layer)
    return resolve_bands(sample.layer_info(layer).channels, sensor or sample.meta.get("sensor"), layer)


def check_distinct_bands(channels: Sequence[str] | None, layer: str) -> None:
    """Refuse a band name that appears twice in one layer (e.g. two dates stacked as bands): params
    keyed by band name would change only one of them. Dates are layers (``dates``)."""
    channels = list(channels or ())
    twice = sorted({c for c in channels if channels.count(c) > 1})
    if twice:
        raise ParameterError("channels", twice, f"distinct band names in layer {layer!r}, which repeats {twice}: "
                             f"for stacked dates, split them into one layer per date with "
                             f"remote_sensing.dates(sample, layer={layer!r}) ({layer}_t0, {layer}_t1, ...)")


def _check_named(sample: Sample, layer: str, sensor: str | None) -> list[str]:
    """The channel names of ``layer``; unnamed bands (``band1``...) are refused with how to name them."""
    info = sample.layer_info(layer)
    channels = list(info.channels or [None] * info.data.shape[0])
    check_distinct_bands(info.channels, layer)
    if any(is_unnamed(c) for c in channels):
        resolve_bands(channels, sensor or sample.meta.get("sensor"), layer)       # raises, with the hint
    return [str(c) for c in channels]


def _check_band_count(sample: Sample, layer: str, need: int, who: str) -> None:
    have = sample.layer_info(layer).data.shape[0]
    if have < need:
        raise ShapeError(f"{who} on layer {layer!r} needs at least {need} bands, got {have} (min_bands={need}: "
                         f"it is for multispectral input)")


def raster_layers(op: RasterTransform, sample: Sample) -> list[str]:
    """The layers a raster op changes: its ``layers``, else its ``layer`` or that layer's dates
    (``image_t0``, ``image_t1``, ... when the sample has no ``image``), with the layers of its band
    groups (``sample.meta["band_groups"]``: the 20 m and 60 m bands that ``load`` put on grids of
    their own beside the 10 m ``image``), which share the op's draw as bands of one acquisition."""
    if op.layers is not None:
        return op.resolve_layers(sample, op.layers)
    group = [n for n in sample.meta.get("band_groups", {}).get(op.layer, [op.layer]) if n in sample.layer_names()]
    return op.resolve_layers(sample, group or [op.layer])


class RasterTransform(IntensityTransform):
    """Base of the intensity ops on the bands of a raster layer: they change ``layer`` (with its
    dates and band groups, ``raster_layers``) unless ``layers`` names others, one draw per date by
    default, with band statistics from ``stats`` (``check_stats``)."""

    layer: str = "image"
    per_layer: bool | None = None

    def _set_raster(self, stats: Any, layer: str, layers: Sequence[str] | None, per_layer: bool | None,
                    p: float) -> None:
        self.stats = check_stats(stats)
        self.layer = layer
        self._set_layers(layers, per_layer=per_layer)
        self._set_p(p)

    def target_layers(self, sample: Sample) -> list[str]:
        return raster_layers(self, sample)


# --- statistics ----------------------------------------------------------------------------------
STAT_KEYS = ("min", "max", "mean", "std")


def check_stats(stats: Any) -> None | str | dict[str, dict[str, float]]:
    """``stats`` argument: ``None``, ``"scene"`` or ``{band: {"min", "max", "mean", "std"}}`` (numbers)."""
    if stats is None or stats == "scene":
        return stats
    expected = 'None, "scene", or {band name: {"min", "max", "mean", "std"}} with finite numbers'
    if not isinstance(stats, dict) or not stats:
        raise ParameterError("stats", stats, expected)
    out: dict[str, dict[str, float]] = {}
    for band, values in stats.items():
        if not isinstance(values, dict) or not all(k in values for k in STAT_KEYS):
            raise ParameterError("stats", stats, expected + f"; band {band!r} has {values!r}")
        try:
            out[str(band)] = {k: float(values[k]) for k in STAT_KEYS}
        except (TypeError, ValueError):
            raise ParameterError("stats", stats, expected + f"; band {band!r} has {values!r}") from None
        if not all(math.isfinite(v) for v in out[str(band)].values()):
            raise ParameterError("stats", stats, expected + f"; band {band!r} has {values!r}")
    return out


def band_stats(sample: Sample, layer: str, data: torch.Tensor, valid: torch.Tensor | None, stats: Any,
               which: tuple[str, ...] = STAT_KEYS) -> dict[str, torch.Tensor]:
    """Per-band statistics ``(C, 1, ..., 1)`` of ``layer``: of ``data`` over ``valid`` (``stats``
    ``None``), from ``sample.meta["scene_stats"][layer]`` (``"scene"``), or from a given table."""
    if stats is None:
        return channel_stats(data, valid, which)
    if stats == "scene":
        scene = sample.meta.get("scene_stats", {})
        if layer not in scene:
            raise ParameterError("stats", "scene", f"scene statistics of layer {layer!r} in sample.meta['scene_stats'] "
                                 "(remote_sensing.tiles(..., scene_stats=True) puts them there; or pass "
                                 "stats=remote_sensing.scene_stats(path))")
        table = scene[layer]
    else:
        table = stats
    channels = list(sample.layer_info(layer).channels or ())
    missing = [c for c in channels if c not in table]
    if missing or not channels:
        raise ParameterError("stats", sorted(table), f"statistics for every band of layer {layer!r} "
                             f"({channels}); missing {missing}")
    shape = (-1,) + (1,) * (data.dim() - 1)
    return {k: torch.tensor([float(table[c][k]) for c in channels], dtype=data.dtype, device=data.device).view(shape)
            for k in which}


def _reflectance_units(sample: Sample, layer: str, data: torch.Tensor, valid: torch.Tensor | None, stats: Any,
                       reflectance_scale: float | None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(offset, unit)`` per band, ``(C, 1, ..., 1)``: data = offset + reflectance * unit."""
    shape = (data.shape[0],) + (1,) * (data.dim() - 1)
    if reflectance_scale is not None:
        return (torch.zeros(shape, dtype=data.dtype, device=data.device),
                torch.full(shape, reflectance_scale, dtype=data.dtype, device=data.device))
    st = band_stats(sample, layer, data, valid, stats, ("min", "max"))
    return st["min"], st["max"] - st["min"]


def _check_scale(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (value > 0 and math.isfinite(value)):
        raise ParameterError("reflectance_scale", value, "None (each band's valid range is reflectance 0..1) or "
                             "the data value of reflectance 1, > 0")
    return float(value)


# --- derived layers ------------------------------------------------------------------------------
def derived_layers(sample: Sample) -> list[str]:
    """Layers computed from others (``AppendIndex``), from ``sample.meta["derived_layers"]``."""
    return [n for n in sample.meta.get("derived_layers", ()) if n in sample.layer_names()]


def source_layers(sample: Sample) -> list[str]:
    """The INTENSITY layers that are not derived: ``layers=`` for a generic intensity op that must
    leave appended indices alone."""
    derived = set(derived_layers(sample))
    return [n for n in sample.layer_names(Role.INTENSITY) if n not in derived]


# --- dates ---------------------------------------------------------------------------------------
def dates(x: Sample | Any, count: int | None = None, layer: str = "image", **from_numpy: Any) -> Sample:
    """One layer per acquisition date: ``{layer}_t0``, ``{layer}_t1``, ... on the sample's one grid,
    so that every date follows the same spatial map and radiometric ops draw per date.

    ``x`` is a sample whose ``layer`` stacks the dates as bands (``T * C`` channels, e.g. names
    ``('B1', ..., 'B7') * 2``), or a ``(T, C, *spatial)`` array/tensor, made a sample by
    ``Sample.from_numpy(**from_numpy)`` (``channels`` then names one date's ``C`` bands; give
    ``affine`` or ``spacing``). ``count`` is the number of dates; by default it is read from the
    channel names, which must repeat.

    Returns:
        A sample with ``layer`` replaced by its dates (other layers, points, history and meta kept).

    Raises:
        ParameterError: ``count`` does not split the bands into dates with the same band names, the
            names do not repeat and no ``count`` is given, or a date layer's name is taken.
    """
    if not isinstance(x, Sample):
        stack = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
        if stack.dim() not in (4, 5):
            raise ShapeError(f"dates: a stack has shape {tuple(stack.shape)}; expected (T, C, H, W) or (T, C, D, H, W)")
        channels = from_numpy.pop("channels", None)
        if count is not None and count != stack.shape[0]:
            raise ParameterError("count", count, f"the stack's {stack.shape[0]} dates (or None)")
        x = Sample.from_numpy(stack.reshape((-1,) + tuple(stack.shape[2:])),
                              channels=None if channels is None else list(channels) * stack.shape[0], **from_numpy)
        count = stack.shape[0]
        if layer != "image":
            x = x.replace(layers={layer if n == "image" else n: info for n, info in x.layers.items()})
        if channels is None:
            return _split_dates(x, layer, count, None)
    return _split_dates(x, layer, count, x.layer_info(layer).channels)


def _split_dates(sample: Sample, layer: str, count: int | None, channels: tuple[str, ...] | None) -> Sample:
    if layer not in sample.layer_names() or sample.layer_info(layer).role is not Role.INTENSITY:
        raise ParameterError("layer", layer, f"an INTENSITY layer of the sample ({sample.layer_names(Role.INTENSITY)})")
    info = sample.layers[layer]
    total = info.data.shape[0]
    names = list(channels or ())
    if count is None:
        periods = [k for k in range(1, total) if total % k == 0 and names and names == names[:k] * (total // k)]
        if not periods:
            raise ParameterError("count", None, f"the number of dates: the band names of layer {layer!r} "
                                 f"({names or 'unnamed'}) do not repeat")
        count = total // periods[0]
    if isinstance(count, bool) or not isinstance(count, int) or count < 1 or total % count:
        raise ParameterError("count", count, f"a number of dates that divides the {total} bands of layer {layer!r}")
    per = total // count
    if names and any(names[t * per:(t + 1) * per] != names[:per] for t in range(count)):
        raise ParameterError("count", count, f"dates with the same bands: {count} dates of {per} bands of layer "
                             f"{layer!r} name {[names[t * per:(t + 1) * per] for t in range(count)]}")
    new = {f"{layer}_t{t}": replace(info, data=info.data[t * per:(t + 1) * per].clone(),
                                    channels=tuple(names[:per]) if names else None) for t in range(count)}
    taken = [n for n in new if n in sample.layer_names()]
    if taken:
        raise ParameterError("layer", layer, f"a layer whose date names are free; the sample already has {taken}")
    layers: dict[str, Layer] = {}
    for n, other in sample.layers.items():
        layers.update(new if n == layer else {n: other})
    meta = dict(sample.meta)
    if layer in meta.get("layers", {}):       # what the file was, per date (per-band lists cut to the date's bands)
        entry = meta["layers"][layer]
        cut = {t: {k: (v[t * per:(t + 1) * per] if isinstance(v, list) and len(v) == total else v)
                   for k, v in entry.items()} for t in range(count)}
        meta["layers"] = {**{k: v for k, v in meta["layers"].items() if k != layer},
                          **{f"{layer}_t{t}": cut[t] for t in range(count)}}
    if layer in meta.get("scene_stats", {}):   # keyed by band name: repeated names merged the dates' statistics
        meta["scene_stats"] = {k: v for k, v in meta["scene_stats"].items() if k != layer}
    return sample.replace(layers=layers, meta=meta)


def stack_dates(sample: Sample, layer: str = "image") -> torch.Tensor:
    """The dates of ``layer`` (``date_layers``) as one ``(T, C, *spatial)`` tensor, e.g. for a model."""
    names = date_layers(sample, layer)
    if not names:
        raise ParameterError("layer", layer, f"a layer with dates {layer}_t0, {layer}_t1, ... ({sample.layer_names()})")
    bands = {sample.layer_info(n).channels for n in names}
    if len(bands) > 1 or len({sample.layer_info(n).data.shape[0] for n in names}) > 1:
        raise ShapeError(f"stack_dates: the dates {names} of layer {layer!r} have different bands "
                         f"{sorted(map(str, bands))}")
    return torch.stack([sample[n] for n in names])


def _channel_index(layer: Layer, names: Sequence[str], layer_name: str) -> list[int]:
    channels = list(layer.channels or ())
    missing = [n for n in names if n not in channels]
    if missing:
        raise ParameterError("bands", missing, f"bands of layer {layer_name!r}, which has {channels}")
    return [channels.index(n) for n in names]


def _per_band(values: dict[str, float], layer: Layer, layer_name: str, default: float,
              like: torch.Tensor) -> torch.Tensor:
    """A (C, 1, ..., 1) tensor of per-band values, ``default`` for bands not named (values for bands of
    the op's other target layers are left to them: ``check_target_bands``)."""
    out = torch.full((like.shape[0],), default, dtype=like.dtype, device=like.device)
    own = {n: v for n, v in values.items() if n in (layer.channels or ())}
    for i, v in zip(_channel_index(layer, list(own), layer_name), own.values()):
        out[i] = v
    return out.view((-1,) + (1,) * (like.dim() - 1))


def check_target_bands(op: IntensityTransform, sample: Sample, pairs: list[tuple[str, dict[str, Any]]],
                       bands: Callable[[dict[str, Any]], Sequence[str]]) -> None:
    """``ParameterError`` unless every band that a draw names (``bands(params)``) is a band of a layer
    it changes: of its own layer for a per-layer draw, of one of the layers sharing a draw otherwise
    (the layers of a band group share one)."""
    groups: dict[int, tuple[dict[str, Any], list[str]]] = {}
    for layer, own in pairs:
        groups.setdefault(id(own), (own, []))[1].append(layer)
    for own, layers in groups.values():
        have = [c for layer in layers for c in (sample.layer_info(layer).channels or ())]
        missing = [n for n in bands(own) if n not in have]
        if missing:
            raise ParameterError("bands", missing, f"bands of layer(s) {layers}, which have {have}")


class SpectralJitter(RasterTransform):
    """Per-band gain and bias, optionally correlated across neighbouring wavelengths.

    ``x -> gain * x + bias``, with ``bias`` in units of each band's valid range when ``relative``
    (else in data units: reflectance or DN). With ``correlation_nm``, gains and biases are drawn at
    anchor wavelengths ``correlation_nm`` apart and interpolated linearly at each band's centre
    wavelength (a smooth random curve over the spectrum, as calibration drifts are), which needs the
    band table (``sensor`` or common band names).

    Args:
        gain: Multiplicative factor, > 0; a number or a ``(min, max)`` range.
        bias: Additive offset; a number or a range.
        correlation_nm: ``None`` (independent bands) or the anchor spacing in nm.
        relative: Bias as a fraction of the band's valid range.
        bands: Band names to jitter (default: every band of the layer).
        sensor: Sensor table for band names (default: ``sample.meta["sensor"]``); with a sensor every
            band must resolve to one of its bands.
        min_bands: Fewest bands the layer must have (presets use it to refuse 1-band input).
        stats: Band statistics for the relative bias: ``None`` (per sample), ``"scene"`` or a table
            (see the module docstring); fixed parameters with scene statistics leave no seams
            between tiles.
        layer: The INTENSITY layer holding the bands; when the sample has no such layer, its dates
            ``{layer}_t0``, ``{layer}_t1``, ... (``dates``).
        p: Probability of applying (per date when drawing per date).
        layers: Several INTENSITY layers instead of ``layer`` (e.g. dates named otherwise).
        per_layer: ``None`` (default): one draw per layer (per date) when there are several, else
            one; ``True``/``False`` force it (``IntensityTransform``). Params are keyed by band name,
            and per layer by layer name: ``{"layers": {"image_t0": {"gain": ..., "bias": ...}}}``.

    Raises:
        ShapeError: the layer has fewer than ``min_bands`` bands.
        ParameterError: unnamed bands (``band1``...), names that do not resolve, or a band name
            repeated in one layer (stacked dates: ``dates`` splits them).

    Example:
        >>> out = SpectralJitter(gain=(0.9, 1.1), bias=(-0.02, 0.02))(raster, generator_for(0))
    """

    fresh_output = True

    def __init__(self, gain: float | tuple[float, float] = (0.9, 1.1),
                 bias: float | tuple[float, float] = (-0.02, 0.02),
                 correlation_nm: float | None = None, relative: bool = True, bands: Sequence[str] | None = None,
                 sensor: str | None = None, min_bands: int = 1, stats: Any = None, layer: str = "image",
                 p: float = 1.0, *, layers: Sequence[str] | None = None, per_layer: bool | None = None) -> None:
        self.gain = as_uniform("gain", gain, low=1e-6)
        self.bias = as_uniform("bias", bias)
        if correlation_nm is not None and (isinstance(correlation_nm, bool)
                                           or not isinstance(correlation_nm, (int, float))
                                           or not correlation_nm > 0):
            raise ParameterError("correlation_nm", correlation_nm, "None or one wavelength spacing in nm > 0")
        self.correlation_nm = None if correlation_nm is None else float(correlation_nm)
        self.relative = bool(relative)
        if bands is not None and (isinstance(bands, str) or not bands):
            raise ParameterError("bands", bands, "None or a non-empty list of band names")
        self.bands = None if bands is None else [str(b) for b in bands]
        self.sensor = None if sensor is None else sensor_table(sensor).name
        self.min_bands = check_positive_int("min_bands", min_bands)
        self._set_raster(stats, layer, layers, per_layer, p)

    def _names(self, sample: Sample, layer: str) -> list[str]:
        info = sample.layer_info(layer)
        _check_band_count(sample, layer, self.min_bands, type(self).__name__)
        channels = _check_named(sample, layer, self.sensor)
        if self.sensor or sample.meta.get("sensor") or self.correlation_nm is not None:
            layer_bands(sample, layer, self.sensor)              # every band must be a band of the sensor
        names = self.bands or channels
        _channel_index(info, names, layer)
        return names

    def sample_params(self, sample: Sample, generator: torch.Generator) -> dict[str, Any]:
        targets = self.target_layers(sample)          # one layer, or several sharing one draw per band name
        names = list(dict.fromkeys(n for layer in targets for n in self._names(sample, layer)))
        if self.correlation_nm is None:
            return {"gain": {n: self.gain.draw(generator) for n in names},
                    "bias": {n: self.bias.draw(generator) for n in names}}
        wavelength = {ch: b.center_nm for layer in targets
                      for ch, b in zip(sample.layer_info(layer).channels or (),
                                       layer_bands(sample, layer, self.sensor))}
        lam = np.array([wavelength[n] for n in names])
        anchors = np.arange(lam.min() - self.correlation_nm, lam.max() + 2 * self.correlation_nm, self.correlation_nm)
        gains = np.interp(lam, anchors, [self.gain.draw(generator) for _ in anchors])
        biases = np.interp(lam, anchors, [self.bias.draw(generator) for _ in anchors])
        return {"gain": dict(zip(names, gains.tolist())), "bias": dict(zip(names, biases.tolist()))}

    def layer_params(self, sample: Sample, params: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        pairs = super().layer_params(sample, params)
        check_target_bands(self, sample, pairs, lambda own: list(own["gain"]) + list(own["bias"]))
        return pairs

    def channel_affine(self, data: torch.Tensor, valid: torch.Tensor | None, params: dict[str, Any],
                       sample: Sample, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        info = sample.layer_info(name)
        gain = _per_band(params["gain"], info, name, 1.0, data)
        bias = _per_band(params["bias"], info, name, 0.0, data)
        if self.relative:
            stats = band_stats(sample, name, data, valid, self.stats, ("min", "max"))
            bias = bias * (stats["max"] - stats["min"])
        return gain, bias

    @classmethod
    def contract_case(cls) -> Case:
        from ..testing import Case
        return Case(
            random=lambda s: SpectralJitter(gain=(0.8, 1.2), bias=(-0.05, 0.05), correlation_nm=150.0),
            identity=lambda s: SpectralJitter(gain=1.0, bias=0.0),
            bad=[("gain", lambda: SpectralJitter(gain=0)), ("bands", lambda: SpectralJitter(bands="B1")),
                 ("sensor", lambda: SpectralJitter(sensor="spot9"))], kinds=("raster-nodata",))


#: Reference wavelength of ``Haze`` strength, nm (green; a band's haze does not depend on the others).
REFERENCE_NM = 550.0


class Haze(RasterTransform):
    """Additive path radiance, stronger at short wavelengths (an Angstrom law):
    ``x + s * u * (550 nm / lambda) ** k`` per band, with ``lambda`` the band's centre wavelength,
    ``s`` the haze reflectance at 550 nm and ``u`` the band's reflectance unit (see the module
    docstring: ``reflectance_scale``, or the band's valid range). ``k`` is the Angstrom exponent:
    ~1-2 for aerosol haze, 4 for Rayleigh scattering (Angstrom 1929, Geogr. Ann. 11;
    Kaufman et al. 1997, J. Geophys. Res. 102(D14)). A band's change depends only on that band, never on which other
    bands the sample has.

    Args:
        strength: ``s``, reflectance at 550 nm, >= 0; a number or a range.
        exponent: ``k``, >= 0; a number or a range.
        sensor: Sensor table for band names (default: ``sample.meta["sensor"]``).
        reflectance_scale: Data value of reflectance 1 (``None``: each band's valid range).
        stats: Band statistics when ``reflectance_scale`` is ``None``: ``None``, ``"scene"`` or a table.
        layer: The INTENSITY layer holding the bands, or its dates (see ``SpectralJitter``).
        p: Probability of applying (per date when drawing per date).
        layers: Several INTENSITY layers instead of ``layer``.
        per_layer: ``None`` (default): one draw per layer (per date: the atmosphere differs between
            acquisitions) when there are several; ``True``/``False`` force it.

    Example:
        >>> out = Haze(strength=(0.0, 0.1))(raster, generator_for(0))
    """

    def __init__(self, strength: float | tuple[float, float] = (0.0, 0.1),
                 exponent: float | tuple[float, float] = (1.0, 2.0),
                 sensor: str | None = None, reflectance_scale: float | None = None, stats: Any = None,
                 layer: str = "image", p: float = 1.0, *, layers: Sequence[str] | None = None,
                 per_layer: bool | None = None) -> None:
        self.strength = as_uniform("strength", strength, low=0.0)
        self.exponent = as_uniform("exponent", exponent, low=0.0, high=8.0)
        self.sensor = None if sensor is None else sensor_table(sensor).name
        self.reflectance_scale = _check_scale(reflectance_scale)
        self._set_raster(stats, layer, layers, per_layer, p)

    def sample_params(self, sample: Sample, generator: torch.Generator) -> dict[str, Any]:
        for layer in self.target_layers(sample):
            layer_bands(sample, layer, self.sensor)            # fail early on unknown bands
        return {"strength": self.strength.draw(generator), "exponent": self.exponent.draw(generator)}

    def channel_affine(self, data: torch.Tensor, valid: torch.Tensor | None, params: dict[str, Any],
                       sample: Sample, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        lam = torch.tensor([b.center_nm for b in layer_bands(sample, name, self.sensor)], dtype=torch.float64)
        shape = ((REFERENCE_NM / lam) ** params["exponent"]).to(data.dtype).to(data.device)
        _, unit = _reflectance_units(sample, name, data, valid, self.stats, self.reflectance_scale)
        bias = params["strength"] * unit * shape.view(unit.shape)
        return torch.ones_like(bias), bias

    def transform_layer(self, data: torch.Tensor, valid: torch.Tensor | None, params: dict[str, Any],
                        sample: Sample, name: str) -> torch.Tensor:
        return data + self.channel_affine(data, valid, params, sample, name)[1]

    def transform_batch(self, data: torch.Tensor, valid: torch.Tensor | None, params: list[dict[str, Any]],
                        samples: list[Sample], name: str) -> torch.Tensor:
        return data + per_element([self.channel_affine(data[b], None if valid is None else valid[b], p, s, name)[1]
                                   for b, (p, s) in enumerate(zip(params, samples))], data)

    @classmethod
    def contract_case(cls) -> Case:
        from ..testing import Case
        return Case(
            random=lambda s: Haze(strength=(0.05, 0.2)), identity=lambda s: Haze(strength=0.0),
            bad=[("strength", lambda: Haze(strength=-1)), ("exponent", lambda: Haze(exponent=20))],
            kinds=("raster-nodata",))


class BandDropout(RasterTransform):
    """Replace up to ``max_bands`` randomly chosen bands by zero or by their valid mean.

    Args:
        max_bands: Most bands dropped per call (at least one is).
        bands: Candidate band names (default: every band).
        value: ``"zero"`` or ``"mean"``.
        stats: Band means for ``"mean"``: ``None`` (per sample), ``"scene"`` or a table.
        layer: The INTENSITY layer holding the bands, or its dates (see ``SpectralJitter``).
        p: Probability of applying (per date when drawing per date).
        layers: Several INTENSITY layers instead of ``layer``.
        per_layer: ``None`` (default): one draw per layer (per date) when there are several;
            ``True``/``False`` force it. Shared, the same band names are dropped in every layer.

    Example:
        >>> out = BandDropout(max_bands=2)(raster, generator_for(0))
        >>> out["image"].shape == raster["image"].shape
        True
    """

    def __init__(self, max_bands: int = 1, bands: Sequence[str] | None = None, value: str = "zero",
                 stats: Any = None, layer: str = "image", p: float = 1.0, *, layers: Sequence[str] | None = None,
                 per_layer: bool | None = None) -> None:
        self.max_bands = check_positive_int("max_bands", max_bands)
        if bands is not None and (isinstance(bands, str) or not bands):
            raise ParameterError("bands", bands, "None or a non-empty list of band names")
        self.bands = None if bands is None else [str(b) for b in bands]
        self.value = check_choice("value", value, ("zero", "mean"))
        self._set_raster(stats, layer, layers, per_layer, p)

    def sample_params(self, sample: Sample, generator: torch.Generator) -> dict[str, Any]:
        names: list[str] = []
        for layer in self.target_layers(sample):
            info = sample.layer_info(layer)
            check_distinct_bands(info.channels, layer)
            if not info.channels:
                raise ParameterError("bands", None, f"channel names on layer {layer!r} (remote_sensing.set_bands)")
            own = [n for n in self.bands if n in info.channels] if self.bands else list(info.channels)
            names += [n for n in own if n not in names]
        if self.bands:
            shared = {"bands": self.bands}                 # every target layer shares the candidates
            check_target_bands(self, sample, [(n, shared) for n in self.target_layers(sample)],
                               lambda own: own["bands"])
        k = 1 + int(torch.randint(0, min(self.max_bands, len(names)), (), generator=generator).item())
        chosen = torch.randperm(len(names), generator=generator)[:k].tolist()
        return {"bands": [names[i] for i in sorted(chosen)]}

    def layer_params(self, sample: Sample, params: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        pairs = super().layer_params(sample, params)
        check_target_bands(self, sample, pairs, lambda own: own["bands"])
        return pairs

    def transform_layer(self, data: torch.Tensor, valid: torch.Tensor | None, params: dict[str, Any],
                        sample: Sample, name: str) -> torch.Tensor:
        out = data.clone()
        self._drop(out, data, valid, params, sample, name)
        return out

    def transform_batch(self, data: torch.Tensor, valid: torch.Tensor | None, params: list[dict[str, Any]],
                        samples: list[Sample], name: str) -> torch.Tensor:
        out = data.clone()
        for b, (p, s) in enumerate(zip(params, samples)):
            self._drop(out[b], data[b], None if valid is None else valid[b], p, s, name)
        return out

    def _drop(self, out: torch.Tensor, data: torch.Tensor, valid: torch.Tensor | None, params: dict[str, Any],
              sample: Sample, name: str) -> None:
        """Fill the dropped bands of ``out`` (a copy of ``data``)."""
        info = sample.layer_info(name)
        index = _channel_index(info, [b for b in params["bands"] if b in (info.channels or ())], name)
        fill = band_stats(sample, name, data, valid, self.stats, ("mean",))["mean"] if self.value == "mean" \
            else torch.zeros_like(data[:, :1])
        for i in index:
            out[i] = fill[i].expand_as(out[i])

    @classmethod
    def contract_case(cls) -> Case:
        from ..testing import Case
        return Case(
            random=lambda s: BandDropout(max_bands=2), identity=lambda s: BandDropout(p=0.0),
            bad=[("max_bands", lambda: BandDropout(0)), ("value", lambda: BandDropout(value="nan"))],
            kinds=("raster-nodata",))


#: Reflectance of an optically thick water cloud at the top of the atmosphere, by wavelength (nm):
#: bright and flat over the visible and near infrared, falling in the SWIR where liquid water and
#: ice absorb (King et al. 1992, IEEE TGRS 30(1); the basis of Fmask's cloud tests, Zhu & Woodcock
#: 2012, Remote Sens. Environ. 118). Beyond ``THERMAL_NM`` clouds are cold, not bright.
CLOUD_REFLECTANCE = ((400.0, 0.80), (1000.0, 0.78), (1250.0, 0.72), (1650.0, 0.55), (2200.0, 0.35), (2500.0, 0.30))
THERMAL_NM = 3000.0


def cloud_reflectance(center_nm: float) -> float:
    """The reflectance of a thick cloud at a band centre (``CLOUD_REFLECTANCE``, linear in between,
    constant beyond its ends); ``nan`` for thermal bands (centre above ``THERMAL_NM``)."""
    if center_nm > THERMAL_NM:
        return math.nan
    lam, rho = zip(*CLOUD_REFLECTANCE)
    return float(np.interp(center_nm, lam, rho))


class CloudShadow(Transform):
    """Occlude the scene with smooth random clouds and their shadows, and mark what they hide.

    A physical blend per band, in reflectance units (module docstring: ``reflectance_scale``, or the
    band's valid range for uncalibrated DN):

    - cloud: ``x -> (1 - a) x + a * rho_c(lambda)``, ``a`` the cloud's opacity (a smooth field up to
      ``opacity``) and ``rho_c`` the reflectance of a thick cloud at the band's centre wavelength
      (``CLOUD_REFLECTANCE``: ~0.8 in VNIR, 0.55 at 1.6 um, 0.35 at 2.2 um). Clouds are therefore
      brighter than a clear scene in VNIR and less so in SWIR. Thermal bands are blended towards
      their valid minimum (cloud tops are cold).
    - shadow (the cloud field shifted by ``shadow_shift``, where no cloud is): reflectance scaled
      by ``darkness`` (the diffuse skylight left when the direct beam is blocked); thermal bands
      are left as they are.

    A LABEL layer ``mask`` records 0 clear, 1 cloud, 2 shadow; invalid pixels stay untouched and clear.

    Args:
        coverage: Fraction of valid pixels under cloud; a number or a range in [0, 1].
        scale: Size of cloud structures in world units (default: one eighth of the longest extent).
        shadow_shift: Largest shadow offset in world units per axis (default: ``scale``); 0 disables
            shadows.
        reflectance_scale: Data value of reflectance 1 (``None``: each band's valid range).
        stats: Band statistics when ``reflectance_scale`` is ``None`` (and for thermal bands):
            ``None`` (per sample), ``"scene"`` or a table.
        sensor: Sensor table for band names (default: ``sample.meta["sensor"]``).
        layer: The INTENSITY layer to occlude. When the sample has no such layer but its dates
            (``image_t0``, ``image_t1``, ...), each date gets its own clouds, drawn on its own, and its
            own mask (``occlusion_t0``, ...); params ``{"layers": {date: params of that date}}``.
        mask: Name of the LABEL layer that marks occlusions (created or overwritten).
        p: Probability of applying (once for every date).

    Example:
        >>> out = CloudShadow(coverage=(0.1, 0.3))(raster, generator_for(0))
        >>> "occlusion" in out.layer_names()
        True
    """

    def __init__(self, coverage: float | tuple[float, float] = (0.05, 0.3), scale: float | None = None,
                 shadow_shift: float | None = None, reflectance_scale: float | None = None, stats: Any = None,
                 sensor: str | None = None, layer: str = "image", mask: str = "occlusion", p: float = 1.0) -> None:
        self.coverage = as_uniform("coverage", coverage, low=0.0, high=1.0)
        if scale is not None and (isinstance(scale, bool) or not isinstance(scale, (int, float)) or not scale > 0):
            raise ParameterError("scale", scale, "None or one world length > 0")
        self.scale = None if scale is None else float(scale)
        if shadow_shift is not None and (isinstance(shadow_shift, bool) or not isinstance(shadow_shift, (int, float))
                                         or shadow_shift < 0):
            raise ParameterError("shadow_shift", shadow_shift, "None or a world length >= 0")
        self.shadow_shift = None if shadow_shift is None else float(shadow_shift)
        self.reflectance_scale = _check_scale(reflectance_scale)
        self.stats = check_stats(stats)
        self.sensor = None if sensor is None else sensor_table(sensor).name
        self.layer, self.mask = layer, mask
        self._set_p(p)

    def _scale(self, sample: Sample) -> float:
        extent = (np.array(sample.space.shape) - 1) * sample.space.spacing
        return self.scale if self.scale is not None else float(max(extent.max(), sample.space.spacing.max()) / 8)

    def _dates(self, sample: Sample) -> list[str]:
        names = date_layers(sample, self.layer)
        if not names:
            raise ParameterError("layer", self.layer, f"an INTENSITY layer of the sample or its dates "
                                 f"({self.layer}_t0, {self.layer}_t1, ...); the sample has {sample.layer_names()}")
        for n in names:
            if sample.layer_info(n).role is not Role.INTENSITY:
                raise ParameterError("layer", self.layer,
                                     f"an INTENSITY layer; {n!r} is {sample.layer_info(n).role.value}")
        return names

    def sample_params(self, sample: Sample, generator: torch.Generator) -> dict[str, Any]:
        names = self._dates(sample)
        if names == [self.layer]:
            return self._draw(sample, self.layer, generator)
        return {"layers": {n: self._draw(sample, n, generator) for n in names}}

    def _draw(self, sample: Sample, layer: str, generator: torch.Generator) -> dict[str, Any]:
        layer_bands(sample, layer, self.sensor)            # the model needs every band's wavelength
        scale = self._scale(sample)
        limit = scale if self.shadow_shift is None else self.shadow_shift
        shift = [(2 * torch.rand((), generator=generator, dtype=torch.float64).item() - 1) * limit
                 for _ in range(sample.space.ndim)]
        return {"coverage": self.coverage.draw(generator), "seed": child_seed(generator), "scale": scale,
                "shadow_shift": shift, "opacity": 0.6 + 0.4 * torch.rand((), generator=generator,
                                                                         dtype=torch.float64).item(),
                "darkness": 0.3 + 0.4 * torch.rand((), generator=generator, dtype=torch.float64).item()}

    def _field(self, sample: Sample, params: dict[str, Any]) -> torch.Tensor:
        """Smooth noise in [0, 1] on the grid: coarse random values (one per ``scale``) upsampled."""
        shape = sample.space.shape
        coarse = [max(2, math.ceil((n - 1) * s / params["scale"]) + 1) for n, s in zip(shape, sample.space.spacing)]
        noise = seeded_noise(params["seed"], [1, 1] + coarse, torch.device("cpu"), torch.float32, "uniform")
        mode = "bilinear" if len(shape) == 2 else "trilinear"
        return F.interpolate(noise, size=shape, mode=mode, align_corners=True)[0, 0]

    def apply(self, sample: Sample, params: dict[str, Any]) -> Sample:
        if (at := self.for_record(params)) is not self:       # a record of another epoch
            return at.apply(sample, params)
        names = self._dates(sample)
        if "layers" not in params:
            out = sample          # the layers of a band group (on one grid by now) share the clouds
            group = [n for n in sample.meta.get("band_groups", {}).get(self.layer, [self.layer])
                     if n in sample.layer_names()] or [self.layer]
            for n in group:
                out = self._occlude(out, n, self.mask, params)
            return out
        if sorted(params["layers"]) != sorted(names):
            raise ParameterError("params['layers']", sorted(params["layers"]), f"params for each date, {names}")
        out = sample
        for n in names:          # the mask of date image_t0 is occlusion_t0
            out = self._occlude(out, n, self.mask + n[len(self.layer):], params["layers"][n])
        return out

    def _occlude(self, sample: Sample, layer: str, mask: str, params: dict[str, Any]) -> Sample:
        image = sample.layers[layer]
        valid = sample[sample.valid_name][0] if sample.valid_name else torch.ones(sample.space.shape, dtype=torch.bool)
        valid = valid.to(image.data.device)
        field = self._field(sample, params).to(image.data.device)
        cloud = torch.zeros_like(field)
        if params["coverage"] > 0 and bool(valid.any()):
            threshold = channel_quantiles(field[None].double(), valid[None], [100 * (1 - params["coverage"])])[0]
            cloud = ((field - threshold[0].float()) / 0.05 + 0.5).clamp(0, 1) * valid   # soft edge centred on it
        shift = [int(round(d / s)) for d, s in zip(params["shadow_shift"], sample.space.spacing)]
        shadow = _shifted(cloud, shift) * (1 - cloud) * valid if any(shift) else torch.zeros_like(cloud)
        if not bool(cloud.any()) and not bool(shadow.any()):
            return sample.with_layers(**{layer: image, mask: Layer(
                torch.zeros((1,) + tuple(cloud.shape), dtype=torch.uint8, device=cloud.device), Role.LABEL, 0)})
        data = image.data.double()
        v = valid[None]
        offset, unit = _reflectance_units(sample, layer, data, v, self.stats, self.reflectance_scale)
        rho = torch.tensor([cloud_reflectance(b.center_nm) for b in layer_bands(sample, layer, self.sensor)],
                           dtype=data.dtype, device=data.device).view(offset.shape)
        thermal = torch.isnan(rho)
        if bool(thermal.any()):
            cold = band_stats(sample, layer, data, v, self.stats, ("min",))["min"]
            target = torch.where(thermal, cold, offset + torch.nan_to_num(rho) * unit)
        else:
            target = offset + rho * unit
        alpha = cloud.double() * params["opacity"]
        out = data * (1 - alpha) + target * alpha
        dim = 1 - shadow.double() * (1 - params["darkness"])
        out = torch.where(thermal, out, offset + (out - offset) * dim)
        marks = torch.where(cloud > 0.5, 1, torch.where(shadow > 0.5, 2, 0)).to(torch.uint8)[None]
        return sample.with_layers(**{layer: replace(image, data=cast(out, image.data.dtype)),
                                     mask: Layer(marks, Role.LABEL, 0)})

    @classmethod
    def contract_case(cls) -> Case:
        from ..testing import Case
        return Case(
            random=lambda s: CloudShadow(coverage=(0.1, 0.4)), identity=lambda s: CloudShadow(coverage=0.0),
            bad=[("coverage", lambda: CloudShadow(coverage=1.5)),
                 ("shadow_shift", lambda: CloudShadow(shadow_shift=-1))],
            kinds=("raster-nodata",))


def _shifted(x: torch.Tensor, shift: Sequence[int]) -> torch.Tensor:
    """``x`` translated by whole pixels, zero where nothing comes in."""
    out = torch.zeros_like(x)
    src, dst = [], []
    for d, n in zip(shift, x.shape):
        d = max(-n, min(n, d))
        src.append(slice(max(0, -d), n - max(0, d)))
        dst.append(slice(max(0, d), n - max(0, -d)))
    out[tuple(dst)] = x[tuple(src)]
    return out


#: Normalised-difference indices by common band names: ``(a - b) / (a + b)``.
INDICES: dict[str, tuple[str, str]] = {
    "NDVI": ("nir", "red"), "NDWI": ("green", "nir"), "MNDWI": ("green", "swir16"), "NDBI": ("swir16", "nir"),
    "NBR": ("nir", "swir22"), "NDSI": ("green", "swir16"), "NDRE": ("nir", "rededge1"),
}
_ALIASES = {"nir": ("nir", "nir08")}


def _find(bands: list[Band], common: str, layer: str) -> int:
    for wanted in _ALIASES.get(common, (common,)):
        for i, b in enumerate(bands):
            if b.common == wanted:
                return i
    raise ParameterError("bands", [b.name for b in bands], f"a {common!r} band in layer {layer!r}")


def spectral_index(sample: Sample, index: str, sensor: str | None = None, layer: str = "image") -> torch.Tensor:
    """A normalised-difference index ``(1, *spatial)`` float32 from band names; NaN where a pixel is
    invalid or both bands are 0."""
    check_choice("index", index, sorted(INDICES))
    bands = layer_bands(sample, layer, sensor)
    a, b = (_find(bands, name, layer) for name in INDICES[index])
    data = sample[layer].double()
    num, den = data[a] - data[b], data[a] + data[b]
    out = torch.where(den != 0, num / torch.where(den != 0, den, torch.ones_like(den)), torch.full_like(den, math.nan))
    if sample.valid_name:
        out = torch.where(sample[sample.valid_name][0], out, torch.full_like(out, math.nan))
    return out[None].float()


class AppendIndex(Transform):
    """Add a spectral index as a new one-channel float32 INTENSITY layer (named ``output``, default the
    index name); invalid pixels hold 0 (the layer's fill) and stay marked by the VALID layer. The
    layer is listed in ``sample.meta["derived_layers"]``, so intensity ops leave it alone unless
    ``layers=`` names it (``source_layers``).

    Args:
        index: One of ``INDICES`` (NDVI, NDWI, MNDWI, NDBI, NBR, NDSI, NDRE).
        sensor: Sensor table for band names (default: ``sample.meta["sensor"]``).
        layer: The layer holding the bands.
        output: Name of the new layer.
        p: Probability of applying.

    Example:
        >>> out = AppendIndex("NDVI")(raster, generator_for(0))
        >>> out["NDVI"].shape[0]
        1
    """

    deterministic = True

    def __init__(self, index: str = "NDVI", sensor: str | None = None, layer: str = "image", output: str | None = None,
                 p: float = 1.0) -> None:
        self.index = check_choice("index", index, sorted(INDICES))
        self.sensor = None if sensor is None else sensor_table(sensor).name
        self.layer, self.output = layer, output
        self._set_p(p)

    def sample_params(self, sample: Sample, generator: torch.Generator) -> dict[str, Any]:
        return {}


    def apply(self, sample: Sample, params: dict[str, Any]) -> Sample:
        if (at := self.for_record(params)) is not self:       # a record of another epoch
            return at.apply(sample, params)
        values = spectral_index(sample, self.index, self.sensor, self.layer)
        values = torch.nan_to_num(values, nan=0.0)
        name = self.output or self.index
        out = sample.with_layers(**{name: Layer(values, Role.INTENSITY, 0.0, (self.index,))})
        derived = [n for n in sample.meta.get("derived_layers", ()) if n != name]
        out.meta = {**out.meta, "derived_layers": derived + [name]}
        return out

    @classmethod
    def contract_case(cls) -> Case:
        from ..testing import Case
        return Case(
            random=lambda s: AppendIndex("NDVI"), identity=lambda s: AppendIndex("NDWI"),
            bad=[("index", lambda: AppendIndex("XYZ"))], kinds=("raster-nodata",))
