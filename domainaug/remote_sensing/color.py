"""Colour and codec ops on the red, green and blue bands of a raster, found by their common band names.

``ColorJitter`` and ``HueSaturation`` change the RGB triplet (the other bands, e.g. NIR, are left
alone unless asked); a layer without red, green and blue bands is a ``ParameterError`` naming it,
never a silent pass. ``Compression`` codes the RGB triplet as one colour JPEG/WebP image and every
other band as a grey image of its own.

**Value range.** The formulas work on values scaled to [0, 1] from a *value range* ``(low, high)``:
``value_range`` when given; else ``(0, 255)`` for 8-bit data (a uint8/int8 layer, or a layer read from
a uint8/int8 file: ``sample.meta["layers"][name]["on_disk_dtype"]``); else the range of the changed
bands over the valid pixels of the sample (pass ``value_range=(0, 10000)`` for Sentinel-2 digital
numbers, ``(0, 1)`` for reflectance, so that every tile uses the same one). The output is mapped back
to the same range: float in, float out; integer layers come back in their dtype (rounded). Invalid
(nodata) pixels keep their values and never enter a statistic.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..core.kernels.color import from_bytes, jitter, to_bytes
from ..core.kernels.memory import empty_like
from ..core.params import as_uniform, check_choice
from ..core.sample import Sample
from ..errors import ParameterError, ShapeError
from .bands import is_unnamed
from .bands import sensor as sensor_table
from .spectral import RasterTransform, layer_bands

if TYPE_CHECKING:
    from ..testing import Case

__all__ = ["ColorJitter", "HueSaturation", "Compression", "rgb_bands", "value_range_of"]

#: ITU-R 601 luma weights (torchvision's ``rgb_to_grayscale``, OpenCV, Pillow ``L``).
LUMA = (0.299, 0.587, 0.114)
_8BIT = ("uint8", "int8")


def rgb_bands(sample: Sample, layer: str, sensor: str | None, who: str) -> list[int]:
    """Channel indices of the red, green and blue bands of ``layer`` (by common band name).

    Raises:
        ParameterError: The layer's bands are unnamed, do not resolve, or lack red, green or blue
            (the message names the layer, its bands and ``who``).
    """
    bands = layer_bands(sample, layer, sensor)
    commons = [b.common for b in bands]
    missing = [c for c in ("red", "green", "blue") if c not in commons]
    if missing:
        raise ParameterError("bands", list(sample.layer_info(layer).channels or ()),
                             f"red, green and blue bands in layer {layer!r} for {who}; its bands are "
                             f"{[f'{b.name} ({b.common})' for b in bands]}, without {', '.join(missing)}")
    return [commons.index(c) for c in ("red", "green", "blue")]


def value_range_of(sample: Sample, name: str, data: torch.Tensor, valid: torch.Tensor | None,
                   bands: Sequence[int], value_range: tuple[float, float] | None) -> tuple[float, float]:
    """The ``(low, high)`` that maps ``bands`` of layer ``name`` to [0, 1] (module docstring)."""
    if value_range is not None:
        return value_range
    disk = sample.meta.get("layers", {}).get(name, {}).get("on_disk_dtype")
    dtype = sample.layer_info(name).data.dtype
    if dtype in (torch.uint8, torch.int8) or disk in _8BIT:
        return (0.0, 255.0) if dtype == torch.uint8 or disk == "uint8" else (-128.0, 127.0)
    x = data[list(bands)]
    x = x[:, valid[0]] if valid is not None else x.reshape(len(bands), -1)
    low, high = float(x.min()), float(x.max())
    return low, (high if high > low else low + 1.0)


def _check_range(value: Any) -> tuple[float, float] | None:
    if value is None:
        return None
    ok = isinstance(value, (list, tuple)) and len(value) == 2 and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value)
    if not ok or not value[0] < value[1]:
        raise ParameterError("value_range", value, "None (8-bit range, or the valid range of the sample) or "
                             "(low, high) data values with low < high")
    return float(value[0]), float(value[1])


def _fast(data: torch.Tensor) -> bool:
    """Whether the float32 CPU kernels (``core.kernels.color``) take ``data``."""
    return data.device.type == "cpu" and data.dtype == torch.float32 and data.is_contiguous() and \
        not data.requires_grad


def _check_2d(data: torch.Tensor, name: str, who: str) -> None:
    if data.dim() != 3:
        raise ShapeError(f"{who} works on 2D rasters; layer {name!r} has spatial shape {tuple(data.shape[1:])}")


def _gray(rgb: torch.Tensor) -> torch.Tensor:
    return LUMA[0] * rgb[0] + LUMA[1] * rgb[1] + LUMA[2] * rgb[2]


def _hue_of(rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Hue in turns [0, 1), max and min per pixel (the HSV hexcone, as torchvision's ``_rgb2hsv``)."""
    r, g, b = rgb[0], rgb[1], rgb[2]
    top, bottom = rgb.max(dim=0).values, rgb.min(dim=0).values
    chroma = top - bottom
    safe = torch.where(chroma == 0, torch.ones_like(chroma), chroma)
    rc, gc, bc = (top - r) / safe, (top - g) / safe, (top - b) / safe
    h = torch.where(top == r, bc - gc, torch.where(top == g, 2.0 + rc - bc, 4.0 + gc - rc))
    h = torch.where(chroma == 0, torch.zeros_like(h), h)
    return torch.remainder(h / 6.0, 1.0), top, bottom


def _from_hue(h: torch.Tensor, top: torch.Tensor, bottom: torch.Tensor) -> torch.Tensor:
    """RGB of hue ``h`` (turns) with per-pixel max ``top`` and min ``bottom`` (torchvision's
    ``_hsv2rgb`` with p = min, q = max - chroma f, t = min + chroma f)."""
    hp = h * 6.0
    sector = torch.floor(hp).clamp(0, 5)
    f = hp - sector
    chroma = top - bottom
    q, t = top - chroma * f, bottom + chroma * f
    s = sector.long()
    table = {0: (top, t, bottom), 1: (q, top, bottom), 2: (bottom, top, t), 3: (bottom, q, top),
             4: (t, bottom, top), 5: (top, bottom, q)}
    out = []
    for c in range(3):
        v = table[5][c]
        for k in range(4, -1, -1):
            v = torch.where(s == k, table[k][c], v)
        out.append(v)
    return torch.stack(out)


class _ColorOp(RasterTransform):
    """Shared plumbing: the RGB bands (``rgb_bands``), the value range and the layer loop."""

    value_range: tuple[float, float] | None = None
    sensor: str | None = None

    def _rgb(self, sample: Sample, name: str) -> list[int]:
        return rgb_bands(sample, name, self.sensor, type(self).__name__)

    def _check_layers(self, sample: Sample) -> None:
        for name in self.target_layers(sample):
            self._rgb(sample, name)                     # the named error before any draw is used


class ColorJitter(_ColorOp):
    """Brightness, contrast, saturation and hue of the RGB bands, in a random order (torchvision's
    ``ColorJitter`` formulas on values scaled to [0, 1] by the value range, module docstring):

    - brightness ``x -> b x`` (towards black, the range's low end);
    - contrast ``x -> c x + (1 - c) mean(gray)``, the mean of the luma over the valid pixels;
    - saturation ``x -> s x + (1 - s) gray``, per pixel (``gray = 0.299 r + 0.587 g + 0.114 b``);
    - hue: rotate the HSV hue by ``h`` degrees, keeping each pixel's max and min.

    With ``clip`` every step clips to the value range, as torchvision and Albumentations do on
    images; without it values may leave the range (nothing is lost to clipping; the hue step is
    defined for any values). Agrees with kornia's ``ColorJitter`` on float RGB and Albumentations'
    ``ColorJitter`` on uint8 RGB within the 8-bit rounding the latter does per step
    (``tests/test_color.py``).

    Args:
        brightness: Factor ``b``, >= 0 (1: unchanged); a number is fixed, a ``(min, max)`` pair is
            drawn uniformly (torchvision's ``brightness=0.2`` is ``(0.8, 1.2)``).
        contrast: Factor ``c``, >= 0; same conventions.
        saturation: Factor ``s``, >= 0 (0: grey); same conventions.
        hue: Hue rotation in degrees, in [-180, 180] (torchvision's ``hue=0.1`` is ``(-36, 36)``).
        other_bands: Also apply brightness and contrast (about each band's own valid mean) to the
            bands that are not red, green or blue (e.g. NIR); by default they are left untouched.
        value_range: ``(low, high)`` data values of black and white, or ``None`` (module docstring).
        sensor: Sensor table for band names (default: ``sample.meta["sensor"]``).
        layer: The INTENSITY layer holding the bands, or its dates (``{layer}_t0``, ...).
        p: Probability of applying (per date when drawing per date).
        layers: Several INTENSITY layers instead of ``layer``.
        per_layer: ``None`` (default): one draw per date; ``True``/``False`` force it.
        clip: Clip to the value range after every step (keyword-only).

    Raises:
        ParameterError: The layer has no red, green and blue bands (named with its bands).
        ShapeError: A 3D layer.

    Example:
        >>> out = ColorJitter(brightness=(0.8, 1.2), hue=(-10, 10))(raster, torch.Generator().manual_seed(0))
    """

    fresh_output = True
    STEPS = ("brightness", "contrast", "saturation", "hue")

    def __init__(self, brightness: float | tuple[float, float] = (0.8, 1.2),
                 contrast: float | tuple[float, float] = (0.8, 1.2),
                 saturation: float | tuple[float, float] = (0.8, 1.2), hue: float | tuple[float, float] = (-10, 10),
                 other_bands: bool = False, value_range: tuple[float, float] | None = None,
                 sensor: str | None = None, layer: str = "image", p: float = 1.0, *,
                 layers: Sequence[str] | None = None, per_layer: bool | None = None, clip: bool = True) -> None:
        self.brightness = as_uniform("brightness", brightness, low=0.0)
        self.contrast = as_uniform("contrast", contrast, low=0.0)
        self.saturation = as_uniform("saturation", saturation, low=0.0)
        self.hue = as_uniform("hue", hue, low=-180.0, high=180.0)
        self.other_bands = bool(other_bands)
        self.value_range = _check_range(value_range)
        self.sensor = None if sensor is None else sensor_table(sensor).name
        self.clip = bool(clip)
        self._set_raster(None, layer, layers, per_layer, p)

    def sample_params(self, sample: Sample, generator: torch.Generator) -> dict[str, Any]:
        self._check_layers(sample)
        order = [self.STEPS[i] for i in torch.randperm(4, generator=generator).tolist()]
        return {"brightness": self.brightness.draw(generator), "contrast": self.contrast.draw(generator),
                "saturation": self.saturation.draw(generator), "hue": self.hue.draw(generator), "order": order}

    def transform_layer(self, data: torch.Tensor, valid: torch.Tensor | None, params: dict[str, Any],
                        sample: Sample, name: str) -> torch.Tensor:
        _check_2d(data, name, type(self).__name__)
        idx = self._rgb(sample, name)
        neutral = {"brightness": 1.0, "contrast": 1.0, "saturation": 1.0, "hue": 0.0}
        if all(params[k] == v for k, v in neutral.items()):
            return data.clone()                          # exactly unchanged (no scaling round trip)
        low, high = value_range_of(sample, name, data, valid, idx, self.value_range)
        span = high - low
        mask = None if valid is None else valid[0]
        for step in params["order"]:
            check_choice("params['order']", step, self.STEPS)
        if _fast(data):
            out = empty_like(data)                        # (a pooled buffer: no page faults)
            for i in range(data.shape[0]):
                if i not in idx:
                    out[i] = data[i]
            factors = {**{k: params[k] for k in ("brightness", "contrast", "saturation")}, "hue": params["hue"] / 360}
            jitter(data.reshape(data.shape[0], -1).numpy(), out.reshape(data.shape[0], -1).numpy(), idx,
                   None if mask is None else mask.reshape(-1).numpy(), low, span, list(params["order"]), factors,
                   self.clip)
        else:
            out = data.clone()
            out[idx] = self.torch_steps(data[idx], mask, low, span, params)
        if self.other_bands:
            rest = [i for i in range(data.shape[0]) if i not in idx]
            for i in rest:
                lo, hi = value_range_of(sample, name, data, valid, [i], self.value_range)
                x = (data[i] - lo) / (hi - lo) * params["brightness"]
                x = x.clamp(0.0, 1.0) if self.clip else x
                m = (x[mask] if mask is not None else x).mean()
                x = params["contrast"] * x + (1 - params["contrast"]) * m
                x = x.clamp(0.0, 1.0) if self.clip else x
                out[i] = x * (hi - lo) + lo
        return out

    def torch_steps(self, rgb: torch.Tensor, mask: torch.Tensor | None, low: float, span: float,
                    params: dict[str, Any]) -> torch.Tensor:
        """The steps as torch passes (other dtypes and devices than the float32 CPU kernel), on
        ``(3, H, W)`` red, green, blue; the same arithmetic as ``core.kernels.color.jitter``."""
        neutral = {"brightness": 1.0, "contrast": 1.0, "saturation": 1.0, "hue": 0.0}
        rgb = (rgb - low) / span
        for step in params["order"]:
            if params[step] == neutral[step]:
                continue
            if step == "brightness":
                rgb = rgb * params["brightness"]
            elif step == "contrast":
                gray = _gray(rgb)
                mean = (gray[mask] if mask is not None else gray).mean()
                c = params["contrast"]
                rgb = c * rgb + (1 - c) * mean
            elif step == "saturation":
                f = params["saturation"]
                rgb = f * rgb + (1 - f) * _gray(rgb)
            else:
                h, top, bottom = _hue_of(rgb)
                rgb = _from_hue(torch.remainder(h + params["hue"] / 360.0, 1.0), top, bottom)
            if self.clip:
                rgb = rgb.clamp(0.0, 1.0)
        return rgb * span + low

    @classmethod
    def contract_case(cls) -> Case:
        from ..testing import Case
        return Case(
            random=lambda s: ColorJitter((0.6, 1.4), (0.6, 1.4), (0.5, 1.5), (-30, 30), other_bands=True),
            identity=lambda s: ColorJitter(1.0, 1.0, 1.0, 0.0),
            bad=[("brightness", lambda: ColorJitter(brightness=-1)), ("hue", lambda: ColorJitter(hue=200)),
                 ("value_range", lambda: ColorJitter(value_range=(5, 1)))],
            kinds=("raster-nodata",))


class HueSaturation(_ColorOp):
    """Shift the HSV hue, saturation and value of the RGB bands (Albumentations'
    ``HueSaturationValue``), on values scaled to [0, 1] by the value range (module docstring).

    Each pixel's HSV (``v`` = max, ``s`` = (max - min) / max) becomes ``h + hue``, ``s + saturation``
    and ``v + value``, with ``s`` and ``v`` clipped to [0, 1] (the HSV cone lives in the range).

    Args:
        hue: Hue shift in degrees, in [-180, 180]; a number is fixed, a ``(min, max)`` pair is
            drawn uniformly (Albumentations' ``hue_shift_limit=20`` on uint8 is 40 degrees, OpenCV's
            8-bit hue being in units of 2 degrees).
        saturation: Additive saturation shift, a fraction in [-1, 1] (Albumentations'
            ``sat_shift_limit=30`` on uint8 is ``30 / 255``); same conventions.
        value: Additive value (brightness) shift as a fraction of the value range, in [-1, 1].
        value_range: ``(low, high)`` data values of black and white, or ``None`` (module docstring).
        sensor: Sensor table for band names (default: ``sample.meta["sensor"]``).
        layer: The INTENSITY layer holding the bands, or its dates.
        p: Probability of applying (per date when drawing per date).
        layers: Several INTENSITY layers instead of ``layer``.
        per_layer: ``None`` (default): one draw per date; ``True``/``False`` force it.

    Raises:
        ParameterError: The layer has no red, green and blue bands (named with its bands).
        ShapeError: A 3D layer.

    Example:
        >>> out = HueSaturation(hue=(-20, 20), saturation=(-0.1, 0.1))(raster, torch.Generator().manual_seed(0))
    """

    fresh_output = True

    def __init__(self, hue: float | tuple[float, float] = (-20, 20),
                 saturation: float | tuple[float, float] = (-0.12, 0.12),
                 value: float | tuple[float, float] = (-0.08, 0.08), value_range: tuple[float, float] | None = None,
                 sensor: str | None = None, layer: str = "image", p: float = 1.0, *,
                 layers: Sequence[str] | None = None, per_layer: bool | None = None) -> None:
        self.hue = as_uniform("hue", hue, low=-180.0, high=180.0)
        self.saturation = as_uniform("saturation", saturation, low=-1.0, high=1.0)
        self.value = as_uniform("value", value, low=-1.0, high=1.0)
        self.value_range = _check_range(value_range)
        self.sensor = None if sensor is None else sensor_table(sensor).name
        self._set_raster(None, layer, layers, per_layer, p)

    def sample_params(self, sample: Sample, generator: torch.Generator) -> dict[str, Any]:
        self._check_layers(sample)
        return {"hue": self.hue.draw(generator), "saturation": self.saturation.draw(generator),
                "value": self.value.draw(generator)}

    def transform_layer(self, data: torch.Tensor, valid: torch.Tensor | None, params: dict[str, Any],
                        sample: Sample, name: str) -> torch.Tensor:
        _check_2d(data, name, type(self).__name__)
        idx = self._rgb(sample, name)
        if params["hue"] == 0 and params["saturation"] == 0 and params["value"] == 0:
            return data.clone()                          # exactly unchanged (no scaling round trip)
        low, high = value_range_of(sample, name, data, valid, idx, self.value_range)
        rgb = ((data[idx] - low) / (high - low)).clamp(0.0, 1.0)
        h, top, bottom = _hue_of(rgb)
        safe = torch.where(top > 0, top, torch.ones_like(top))
        s = torch.where(top > 0, (top - bottom) / safe, torch.zeros_like(top))
        s = (s + params["saturation"]).clamp(0.0, 1.0)
        v = (top + params["value"]).clamp(0.0, 1.0)
        rgb = _from_hue(torch.remainder(h + params["hue"] / 360.0, 1.0), v, v * (1 - s))
        out = data.clone()
        out[idx] = rgb * (high - low) + low
        return out

    @classmethod
    def contract_case(cls) -> Case:
        from ..testing import Case
        return Case(
            random=lambda s: HueSaturation((-60, 60), (-0.3, 0.3), (-0.2, 0.2)),
            identity=lambda s: HueSaturation(0.0, 0.0, 0.0),
            bad=[("hue", lambda: HueSaturation(hue=(-200, 0))), ("saturation", lambda: HueSaturation(saturation=2))],
            kinds=("raster-nodata",))


class Compression(RasterTransform):
    """Lossy JPEG or WebP coding at a random quality (Pillow's libjpeg-turbo and libwebp codecs), as
    Albumentations' ``ImageCompression``: the red, green and blue bands (by common band name) are
    coded as one colour image (YCbCr, 4:2:0 chroma subsampling: the codec's default), every other
    band, or every band of a layer without named red, green and blue bands, as a grey image.

    The data is scaled to 8 bits from the value range (module docstring: 8-bit data is coded as it
    is; other data from ``value_range`` or its valid range, so the round trip also quantises to 256
    levels of that range, and values outside a given range are clipped to it) and back, float in,
    float out. Nodata pixels keep their values and are coded as their band's valid mean, so that
    they do not ring into the valid pixels of their 8x8 blocks. The codecs are deterministic, so a
    record replays bit for bit.

    Args:
        quality: Codec quality, integers in [1, 100] (100: least loss); a number is fixed, a
            ``(min, max)`` pair is drawn uniformly among the integers.
        format: ``"jpeg"`` or ``"webp"``.
        bands: Band names to code (default: every band).
        value_range: ``(low, high)`` data values mapped to 0 and 255, or ``None`` (module docstring).
        sensor: Sensor table for band names (default: ``sample.meta["sensor"]``).
        layer: The INTENSITY layer holding the bands, or its dates.
        p: Probability of applying (per date when drawing per date).
        layers: Several INTENSITY layers instead of ``layer``.
        per_layer: ``None`` (default): one draw per date; ``True``/``False`` force it.

    Raises:
        ShapeError: A 3D layer (JPEG and WebP are 2D codecs).
        ParameterError: ``bands`` names a band the layer does not have.

    Example:
        >>> out = Compression(quality=(30, 90))(raster, torch.Generator().manual_seed(0))
    """

    fresh_output = True

    def __init__(self, quality: float | tuple[float, float] = (50, 95), format: str = "jpeg",
                 bands: Sequence[str] | None = None, value_range: tuple[float, float] | None = None,
                 sensor: str | None = None, layer: str = "image", p: float = 1.0, *,
                 layers: Sequence[str] | None = None, per_layer: bool | None = None) -> None:
        self.quality = as_uniform("quality", quality, low=1, high=100)
        self.format = check_choice("format", format, ("jpeg", "webp"))
        if bands is not None and (isinstance(bands, str) or not bands):
            raise ParameterError("bands", bands, "None or a non-empty list of band names")
        self.bands = None if bands is None else [str(b) for b in bands]
        self.value_range = _check_range(value_range)
        self.sensor = None if sensor is None else sensor_table(sensor).name
        self._set_raster(None, layer, layers, per_layer, p)

    def sample_params(self, sample: Sample, generator: torch.Generator) -> dict[str, Any]:
        lo, hi = math.ceil(self.quality.low), math.floor(self.quality.high)
        if lo > hi:
            raise ParameterError("quality", self.quality.to_json(), "a range holding an integer quality")
        return {"quality": lo + int(torch.randint(0, hi - lo + 1, (), generator=generator).item())}

    def _groups(self, sample: Sample, name: str) -> list[list[int]]:
        """The images to code: ``[r, g, b]`` when the layer names them, then one per other band."""
        channels = list(sample.layer_info(name).channels or [None] * sample.layer_info(name).data.shape[0])
        chosen = list(range(len(channels)))
        if self.bands is not None:
            missing = [b for b in self.bands if b not in channels]
            if missing:
                raise ParameterError("bands", missing, f"bands of layer {name!r}, which has {channels}")
            chosen = [channels.index(b) for b in self.bands]
        rgb: list[int] = []
        if not any(is_unnamed(c) for c in channels):
            try:
                commons = [b.common for b in layer_bands(sample, name, self.sensor)]
                if all(c in commons for c in ("red", "green", "blue")):
                    rgb = [commons.index(c) for c in ("red", "green", "blue")]
            except ParameterError:                   # names that are no band of a table: coded band by band
                rgb = []
        if rgb and all(i in chosen for i in rgb):
            return [rgb] + [[i] for i in chosen if i not in rgb]
        return [[i] for i in chosen]

    def transform_layer(self, data: torch.Tensor, valid: torch.Tensor | None, params: dict[str, Any],
                        sample: Sample, name: str) -> torch.Tensor:
        _check_2d(data, name, type(self).__name__)
        quality = int(params["quality"])
        if not 1 <= quality <= 100:
            raise ParameterError("params['quality']", quality, "an integer in [1, 100]")
        groups = self._groups(sample, name)
        fast = _fast(data)
        out = empty_like(data) if fast else data.clone()           # (a pooled buffer: no page faults)
        if fast:
            coded = {i for g in groups for i in g}
            for i in range(data.shape[0]):
                if i not in coded:
                    out[i] = data[i]
        mask = None if valid is None or bool(valid.all()) else valid[0]
        h, w = data.shape[1:]
        flat, flat_out = data.reshape(data.shape[0], -1), out.reshape(data.shape[0], -1)
        for group in groups:
            low, high = value_range_of(sample, name, data, valid, group, self.value_range)
            scale = 255.0 / (high - low)
            # nodata is coded as the band's valid mean: it must not ring into the valid pixels of its block
            fill = flat[group][:, mask.reshape(-1)].mean(dim=1) if mask is not None else torch.zeros(len(group))
            if fast:
                eight = to_bytes(flat.numpy(), group, None if mask is None else mask.reshape(-1).numpy(),
                                 fill.numpy(), low, scale)
                arr = eight.reshape(h, w, len(group)) if len(group) == 3 else eight.reshape(h, w)
            else:
                x = torch.where(mask, data[group], fill.view(-1, 1, 1).to(data)) if mask is not None else data[group]
                x8 = ((x - low) * scale).clamp(0, 255).add(0.5).floor().to(torch.uint8)    # half up, as the kernel
                x8 = x8.cpu()                                   # (the codec runs on the CPU)
                arr = x8.permute(1, 2, 0).contiguous().numpy() if len(group) == 3 else x8[0].numpy()
            back = self._code(arr, quality)
            if fast:
                from_bytes(back.reshape(h * w, len(group)), group, low, 1.0 / scale, flat_out.numpy())
            else:
                decoded = torch.from_numpy(np.array(back)).to(data)
                decoded = decoded.permute(2, 0, 1) if decoded.dim() == 3 else decoded[None]
                out[group] = decoded / scale + low
        return out

    def _code(self, arr: np.ndarray, quality: int) -> np.ndarray:
        """Encode and decode an ``(H, W, 3)`` or ``(H, W)`` uint8 image with the chosen codec."""
        from PIL import Image
        grey = arr.ndim == 2
        if self.format == "webp" and grey:
            arr = np.repeat(arr[:, :, None], 3, axis=2)            # libwebp codes colour images only
        buffer = io.BytesIO()
        Image.fromarray(arr).save(buffer, format=self.format.upper(), quality=quality)
        buffer.seek(0)
        with Image.open(buffer) as coded:
            back = np.asarray(coded)
        return back[:, :, 0] if self.format == "webp" and grey else back

    @classmethod
    def contract_case(cls) -> Case:
        from ..testing import Case
        return Case(
            random=lambda s: Compression((5, 60)), identity=lambda s: Compression(p=0.0),   # no lossless setting
            bad=[("quality", lambda: Compression(quality=0)), ("format", lambda: Compression(format="png")),
                 ("bands", lambda: Compression(bands="B1"))],
            kinds=("raster-nodata",))
