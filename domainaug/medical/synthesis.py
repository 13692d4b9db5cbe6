"""Synthesis for rare classes: images from label maps (SynthSeg-style), lesions copied from donor
samples (TumorCP, CarveMix), and a hook for a user's trained generator.

Lengths are in mm; statistics are over valid voxels; invalid voxels are never changed.

- ``LabelsToImage`` (a transform): a Gaussian intensity per label, then partial-volume blur,
  low resolution and a bias field, as a new or replaced intensity layer, or pasted over the real
  image for chosen labels only (Billot et al., "SynthSeg", Medical Image Analysis 2023).
- ``LesionPaste`` (a batch op, like ``MixUp``): a lesion of a donor sample, resampled onto the
  recipient's voxels, placed inside a region, intensity-matched to the tissue around it and
  blended over a few mm (``mode="copy"``: TumorCP, Yang et al., MICCAI 2021; ``mode="carve"``:
  CarveMix, Zhang et al., MICCAI 2021). Its record names the donor index: replay needs the same
  donors.
- ``GenerativeSynthesis`` (a transform): a user's trained generator ``model(condition, noise) ->
  image`` run on a region's bounding box, with the noise drawn from the sample's generator.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..core.kernels.affine import about_center, n_rotations, rotation_matrix
from ..core.kernels.resample import resample_layers
from ..core.kernels.spec import LayerSpec
from ..core.maps import PendingMap
from ..core.params import Uniform, as_layer_name, as_uniform, check_choice, check_positive_int, to_json
from ..core.random import child_seed
from ..core.record import ParamRecord
from ..core.sample import Layer, Role, Sample, resolve_fill
from ..core.space import Space
from ..core.transform import Transform
from ..core.values import cast, channel_stats, label_values, normalized_smooth, seeded_noise
from ..errors import NoDataError, ParameterError, SampleError, ShapeError, SpaceMismatchError
from .contrast import SimulateLowResolution, robust_range
from .physics import BiasField

if TYPE_CHECKING:
    from ..testing import Case

__all__ = ["LabelsToImage", "LesionPaste", "GenerativeSynthesis", "region_mask"]

#: Label values up to this use a lookup table (one gather); larger ones go through ``torch.unique``.
_LUT_MAX = 1 << 16


def _label_values(name: str, value: Any) -> list[int] | None:
    """``None`` or a list of distinct integer label values (one integer is a list of one)."""
    if value is None:
        return None
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, (list, tuple)) or len(set(value)) != len(value) or not all(
            isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in value):
        raise ParameterError(name, value, "None, a label value or a list of distinct integer label values")
    return [int(v) for v in value]


def _per_label(name: str, value: Any, low: float | None = None) -> Uniform | dict[int, Uniform]:
    """A number or range shared by every label, or a mapping label value -> number or range (keys may
    be strings, as a JSON config has them)."""
    if not isinstance(value, dict):
        return as_uniform(name, value, low=low)
    out = {}
    for key, v in value.items():
        try:
            label = int(key)
        except (TypeError, ValueError):
            raise ParameterError(name, value, "a number, a (min, max) pair, or a mapping of integer label "
                                 "values to them") from None
        if isinstance(key, bool) or (isinstance(key, float) and key != label):
            raise ParameterError(name, value, "integer label values as keys")
        out[label] = as_uniform(f"{name}[{label}]", v, low=low)
    return out


def _for_label(name: str, spec: Uniform | dict[int, Uniform], value: int) -> Uniform:
    if isinstance(spec, Uniform):
        return spec
    if value not in spec:
        raise ParameterError(name, {str(k): u.to_json() for k, u in spec.items()},
                             f"a range for label {value} too (it is in the label map or in labels=)")
    return spec[value]


def _length(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ParameterError(name, value, "a length in mm >= 0")
    return float(value)


def _label_layer(sample: Sample, name: str, what: str) -> torch.Tensor:
    """The one-channel LABEL layer ``name`` of ``sample``, or a named error."""
    if name not in sample.layer_names() or sample.layer_info(name).role is not Role.LABEL:
        raise ParameterError("label", name, f"a LABEL layer of the sample for {what} "
                             f"({sample.layer_names(Role.LABEL)})")
    data = sample[name]
    if data.shape[0] != 1:
        raise ShapeError(f"{what} reads one label map, and layer {name!r} has {data.shape[0]} channels; "
                         "split it into one LABEL layer per channel")
    return data


def region_mask(sample: Sample, region: str | None, values: Sequence[int] | None = None) -> torch.Tensor:
    """Where a region is, ``(1, *spatial)`` bool on the sample's device: voxels of layer ``region``
    whose value is in ``values`` (any value > 0 when ``values`` is None; every voxel of a VALID
    layer that is true), and valid. ``region=None``: every valid voxel."""
    valid = sample[sample.valid_name] if sample.valid_name else None
    if region is None:
        mask = torch.ones((1,) + sample.space.shape, dtype=torch.bool, device=sample.device)
    else:
        if region not in sample.layer_names():
            raise ParameterError("region", region, f"a layer of the sample ({sample.layer_names()})")
        data = sample[region]
        if data.shape[0] != 1:
            raise ShapeError(f"region layer {region!r} has {data.shape[0]} channels; a region is one mask "
                             "or label map")
        if values is not None:
            mask = torch.isin(data, torch.tensor(list(values), device=data.device).to(data.dtype)) \
                if not data.dtype.is_floating_point else torch.isin(data, torch.tensor(list(values), dtype=data.dtype,
                                                                                        device=data.device))
        else:
            mask = data if data.dtype == torch.bool else data > 0
    return mask if valid is None else mask & valid


def _falloff(zone: np.ndarray, spacing: Sequence[float] | np.ndarray, blend: float) -> np.ndarray:
    """Blend weight: 1 on ``zone``, falling to 0 over ``blend`` mm outside it along a raised cosine
    of the Euclidean distance (in mm, from ``spacing``)."""
    from scipy import ndimage  # only when a paste runs
    weight = zone.astype(np.float64)
    if blend <= 0 or zone.all() or not zone.any():
        return weight
    distance = ndimage.distance_transform_edt(~zone, sampling=list(spacing))
    ramp = np.where(distance < blend, 0.5 * (1 + np.cos(np.pi * distance / blend)), 0.0)
    return np.where(zone, 1.0, ramp)


# ---------------------------------------------------------------------------------------------
# LabelsToImage
# ---------------------------------------------------------------------------------------------
class LabelsToImage(Transform):
    """A synthetic image from a label map, SynthSeg-style (Billot et al. 2023): each label gets an
    intensity drawn from a Gaussian whose mean and std are drawn per label (and per channel), then
    the image gets a partial-volume blur, low resolution and a bias field, all in mm.

    The output is the INTENSITY layer ``image``: a new layer (TorchIO's ``image_key``, default
    ``"image_from_labels"``), or an existing one replaced (``paste=False``), or an existing one with
    only the voxels of ``labels`` replaced (``paste=True``: e.g. a synthetic lesion over the real
    scan; the blur then mixes it with the real tissue around it, as partial volume does). The
    label layer is never changed. Invalid voxels keep their values (a new layer: its fill).

    Order of the steps: Gaussian intensities, blur (``blur`` mm), low resolution (``resolution``
    mm, as ``SimulateLowResolution`` on every axis), bias field (``bias``, as ``BiasField``).
    With ``blur=0``, ``resolution=None`` and ``bias=0`` each label's mean is its drawn mean.

    Args:
        label: The LABEL layer (one channel) that drives the synthesis (TorchIO ``label_key``).
        image: The INTENSITY layer written (TorchIO ``image_key``).
        mean: Range of each label's mean, per channel; in ``units``. A number is fixed; a
            ``(min, max)`` pair is drawn uniformly per label and channel; a mapping
            ``{label: number or (min, max)}`` gives each label its own (TorchIO's per-label
            ``mean``, SynthSeg's priors; every synthesised label needs an entry).
        std: Range of each label's standard deviation, >= 0, in ``units``. Same conventions.
        labels: Label values to synthesise (default: every value present). With ``paste=False``
            voxels of other labels are 0; with ``paste=True`` they keep the image.
        paste: Replace only the voxels of ``labels`` in the existing layer ``image``.
        units: ``"percentile"`` (default): ``mean`` and ``std`` are fractions of the 1st-99th
            percentile range of the layer being replaced or pasted over (of [0, 1] for a new
            layer), so ``mean=0.5`` is mid-grey on any scanner; ``"raw"``: intensity units.
        blur: Partial-volume Gaussian sigma in mm, >= 0; a number or a range.
        resolution: Simulated voxel size in mm (slab averaging on every axis, drawn per axis),
            or ``None`` for none; a number or a range.
        bias: Bias-field coefficient range (log scale, order 3; see ``BiasField``); 0 for none.
        p: Probability of applying.

    Example:
        >>> import torch
        >>> from domainaug.testing import make_volume
        >>> synth = LabelsToImage(mean=(0.1, 0.9), std=(0.01, 0.05), blur=(0.0, 1.0))
        >>> out = synth(make_volume(), torch.Generator().manual_seed(0))
        >>> out["image_from_labels"].shape == out["image"].shape
        True
    """

    def __init__(self, label: str = "label", image: str = "image_from_labels",
                 mean: float | tuple[float, float] = (0.1, 0.9), std: float | tuple[float, float] = (0.01, 0.1),
                 labels: int | Sequence[int] | None = None, paste: bool = False, units: str = "percentile",
                 blur: float | tuple[float, float] = (0.0, 1.0), resolution: float | tuple[float, float] | None = None,
                 bias: float | tuple[float, float] = (-0.15, 0.15), p: float = 1.0) -> None:
        self.label, self.image = as_layer_name("label", label), as_layer_name("image", image)
        self.mean = _per_label("mean", mean)
        self.std = _per_label("std", std, low=0.0)
        self.labels = _label_values("labels", labels)
        self.paste = bool(paste)
        if self.paste and self.labels is None:
            raise ParameterError("labels", None, "the label values to paste (paste=True replaces only those)")
        if not self.paste and self.labels == []:
            raise ParameterError("labels", [], "at least one label value (an empty list only with paste=True)")
        self.units = check_choice("units", units, ("percentile", "raw"))
        self.blur = as_uniform("blur", blur, low=0.0)
        self.resolution = None if resolution is None else as_uniform("resolution", resolution, low=1e-6)
        self.bias = as_uniform("bias", bias, low=-5.0, high=5.0)
        self._set_p(p)

    def _steps(self) -> tuple[SimulateLowResolution | None, BiasField]:
        low = None if self.resolution is None else \
            SimulateLowResolution((self.resolution.low, self.resolution.high), axes=None)
        return low, BiasField((self.bias.low, self.bias.high), order=3)

    def _check(self, sample: Sample) -> torch.Tensor:
        label = _label_layer(sample, self.label, "LabelsToImage")
        names = sample.layer_names()
        if self.image in names and sample.layer_info(self.image).role is not Role.INTENSITY:
            raise ParameterError("image", self.image, f"an INTENSITY layer to write (or a new name); it is a "
                                 f"{sample.layer_info(self.image).role.value} layer")
        if self.paste and self.image not in names:
            raise ParameterError("image", self.image, f"an existing INTENSITY layer to paste over ({names})")
        return label

    def sample_params(self, sample: Sample, generator: torch.Generator) -> dict[str, Any]:
        label = self._check(sample)
        values = self.labels if self.labels is not None else [int(v) for v in label_values(label).tolist()]
        channels = sample.layer_info(self.image).data.shape[0] if self.image in sample.layer_names() else 1
        mean = {str(v): [_for_label("mean", self.mean, v).draw(generator) for _ in range(channels)] for v in values}
        std = {str(v): [_for_label("std", self.std, v).draw(generator) for _ in range(channels)] for v in values}
        low, bias = self._steps()
        return {"mean": mean, "std": std, "seed": child_seed(generator), "blur": self.blur.draw(generator),
                "resolution": None if low is None else low.sample_params(sample, generator),
                "bias": bias.sample_params(sample, generator)}

    def apply(self, sample: Sample, params: dict[str, Any]) -> Sample:
        label = self._check(sample)
        exists = self.image in sample.layer_names()
        valid = sample[sample.valid_name] if sample.valid_name else None
        values = [int(v) for v in params["mean"]]
        if not values:
            return sample.replace()
        device = label.device
        base = sample[self.image] if exists else None
        work_dtype = torch.float64 if base is not None and base.dtype == torch.float64 else torch.float32
        channels = base.shape[0] if base is not None else 1
        lo = torch.zeros((channels,) + (1,) * sample.space.ndim, dtype=work_dtype, device=device)
        span = torch.ones_like(lo)
        if self.units == "percentile" and base is not None and (valid is None or bool(valid.any())):
            low_q, high_q = robust_range(base.to(work_dtype), valid)
            lo, span = low_q, (high_q - low_q).clamp(min=torch.finfo(work_dtype).tiny)
        # per-label tables, one column per label value plus one for "not synthesised" (NaN)
        table_mean = torch.full((channels, len(values) + 1), math.nan, dtype=work_dtype, device=device)
        table_std = torch.zeros_like(table_mean)
        for k, v in enumerate(values):
            m, s = params["mean"][str(v)], params["std"][str(v)]
            if len(m) != channels or len(s) != channels:
                raise ParameterError("params['mean']", len(m), f"{channels} values per label (one per channel)")
            table_mean[:, k] = torch.tensor(m, dtype=work_dtype)
            table_std[:, k] = torch.tensor(s, dtype=work_dtype)
        flat = self._index(label[0], values).reshape(-1)
        # index_select, not advanced indexing: a gather with an int64 index tensor is ~3x slower
        mean_map = torch.index_select(table_mean, 1, flat).reshape((channels,) + label.shape[1:])
        std_map = torch.index_select(table_std, 1, flat).reshape(mean_map.shape)
        noise = seeded_noise(params["seed"], mean_map.shape, device, work_dtype, "normal")
        synth = (mean_map + std_map * noise) * span + lo
        # no voxel left out (index len(values)): no mask needed (the default, every label present)
        everywhere = not bool((flat == len(values)).any())
        synthesised = torch.ones_like(mean_map[:1], dtype=torch.bool) if everywhere else ~torch.isnan(mean_map[:1])
        if not everywhere:
            other = base.to(work_dtype) if base is not None and self.paste else torch.zeros_like(synth)
            synth = torch.where(synthesised, synth, other)
        weight = torch.ones_like(synth[:1]) if valid is None else valid.to(work_dtype)
        if params["blur"] > 0:
            sigmas = [params["blur"] / float(s) for s in sample.space.spacing]
            synth = normalized_smooth(synth, weight, sigmas)
        low, bias = self._steps()
        if params["resolution"] is not None and low is not None:
            synth = low.transform_layer(synth, valid, params["resolution"], sample, self.image)
        synth = bias.transform_layer(synth, valid, params["bias"], sample, self.image)
        if base is not None and self.paste and not everywhere:
            synth = torch.where(synthesised, synth, base.to(work_dtype))
        if base is not None:
            keep = base.to(work_dtype)
            if valid is not None:
                synth = torch.where(valid, synth, keep)
            layer = replace(sample.layer_info(self.image), data=cast(synth, base.dtype))
        else:
            fill = resolve_fill(synth, valid, "minimum")
            if valid is not None:
                synth = torch.where(valid, synth, torch.full_like(synth, fill))
            layer = Layer(synth.to(torch.float32), Role.INTENSITY, fill)
        return sample.with_layers(**{self.image: layer})

    @staticmethod
    def _index(label: torch.Tensor, values: list[int]) -> torch.Tensor:
        """Per voxel, the column of its label in ``values`` (``len(values)`` for the others)."""
        n = len(values)
        lo, hi = int(label.min()), int(label.max())
        if lo >= 0 and hi < _LUT_MAX:                 # one gather through a lookup table
            lut = torch.full((hi + 1,), n, dtype=torch.long, device=label.device)
            for k, v in enumerate(values):
                if 0 <= v <= hi:
                    lut[v] = k
            return torch.take(lut, label.long())    # take: ~5x faster than lut[index] here
        present, inverse = torch.unique(label, return_inverse=True)
        column = torch.full((len(present),), n, dtype=torch.long, device=label.device)
        for k, v in enumerate(values):
            column[present == v] = k
        return column[inverse]

    @classmethod
    def contract_case(cls) -> Case:
        from ..testing import Case
        return Case(
            random=lambda s: LabelsToImage(image="image", mean=(0.1, 0.9), std=(0.01, 0.1), blur=(0.0, 2.0),
                                           resolution=(1.0, 4.0), bias=(-0.3, 0.3)),
            identity=lambda s: LabelsToImage(image="image", labels=[], paste=True),
            bad=[("mean", lambda: LabelsToImage(mean=(1.0, 0.0))), ("std", lambda: LabelsToImage(std=-1.0)),
                 ("units", lambda: LabelsToImage(units="hu")), ("labels", lambda: LabelsToImage(paste=True)),
                 ("blur", lambda: LabelsToImage(blur=-1.0))])


# ---------------------------------------------------------------------------------------------
# LesionPaste
# ---------------------------------------------------------------------------------------------
class LesionPaste:
    """Copy a lesion (image and label) from a donor sample into each recipient, at a plausible place.

    A batch op like ``MixUp``/``CutMix``: ``paste(samples, generator, donors=None)`` returns the new
    samples; each gets a ``ParamRecord`` naming its donor (an index into ``donors``, or into the
    batch itself when ``donors`` is None) and ``paste.replay(samples, params, donors)`` rebuilds the
    outputs, so replay needs the same donors (a donor whose chosen lesion has another voxel count
    is refused by name). It is not a pipeline ``Transform``: a record holds no donor data.

    For each recipient: one donor with a lesion (label values ``lesion``) is drawn, then one
    connected lesion component of it, a rotation and scale (jitter, about the lesion's centre), and
    a target centre inside the region (``region``/``region_values``: e.g. a brain mask or an organ
    label; up to ``tries`` centres are drawn and the first that holds the whole lesion is kept,
    else the one that holds most of it). The lesion is resampled with its surroundings onto the
    recipient's voxels by the one resampler, so a donor of another voxel size or orientation keeps
    its size in mm (resampled, not refused: lesions of multi-site data come on every grid; only a
    donor of another dimension or CRS is refused, ``SpaceMismatchError``).

    Modes:
    - ``"copy"`` (TumorCP, Yang et al. 2021): the lesion's voxels are pasted; the image blends
      into the recipient over ``blend`` mm outside the lesion.
    - ``"carve"`` (CarveMix, Zhang et al. 2021): a region carved around the lesion by its signed
      distance, ``{d <= margin}`` (``margin`` mm drawn per paste; negative carves inside the lesion
      boundary), is pasted: image and label, the donor's lesion where it is lesion and the
      recipient's labels elsewhere (a recipient lesion voxel covered by the donor's non-lesion
      tissue becomes 0, so the label follows the image).

    Intensity (``match``): the donor's values are shifted (``"mean"``) or shifted and scaled
    (``"mean_std"``) per channel so that its ring of tissue ``ring`` mm around the lesion has the
    mean (and std) of the recipient's ring at the target (valid voxels inside the region); with
    fewer than 8 ring voxels on either side the values are pasted as they are. ``"none"``: as they are.

    Labels: outside the pasted zone the recipient's labels are untouched; the lesion's values
    (the donor's) are set only inside it, and only inside the region; LABEL layers other than
    ``label`` are not changed. Every INTENSITY layer of the recipient is pasted (the donor must have
    each, with as many channels); invalid voxels are untouched.

    Args:
        mode: ``"copy"`` or ``"carve"``.
        lesion: Label value(s) that make a lesion (> 0), e.g. ``1`` or ``[1, 2, 4]``.
        label: The LABEL layer, in donors and recipients.
        region: Layer of the recipient where lesions may go (``None``: every valid voxel).
        region_values: Values of ``region`` that count (default: any value > 0).
        match: ``"mean"``, ``"mean_std"`` or ``"none"``.
        ring: Width of the tissue ring used for matching, mm (> 0).
        blend: Width of the blend outside the pasted zone, mm (>= 0; 0 is a hard paste).
        margin: CarveMix distance threshold in mm (``mode="carve"``); a number or a range.
        degrees: Rotation jitter of the lesion in degrees (one angle in 2D, three in 3D); a number
            or a range, drawn per angle.
        scales: Isotropic scale jitter of the lesion (> 0); a number or a range.
        tries: Target centres drawn before keeping the best.
        p: Probability of pasting into each recipient.

    Params per sample: ``{"donor": j, "component": k, "lesion_voxels": n, "centre": [index in the
    recipient], "degrees": [...], "scale": s, "margin": m}`` (``{"applied": false}`` when skipped).

    Example:
        >>> import torch
        >>> from domainaug.testing import make_volume
        >>> donor, recipient = make_volume(seed=1), make_volume(seed=2, labels=(0, 3, 5))
        >>> paste = LesionPaste(lesion=7, region="label", region_values=[3], blend=2.0)
        >>> out = paste([recipient], torch.Generator().manual_seed(0), donors=[donor])[0]
        >>> bool((out["label"] == 7).any())
        True
    """

    def __init__(self, mode: str = "copy", lesion: int | Sequence[int] = 1, label: str = "label",
                 region: str | None = None, region_values: int | Sequence[int] | None = None, match: str = "mean",
                 ring: float = 3.0, blend: float = 2.0, margin: float | tuple[float, float] = (0.0, 4.0),
                 degrees: float | tuple[float, float] = 0.0, scales: float | tuple[float, float] = 1.0,
                 tries: int = 20, p: float = 1.0) -> None:
        self.mode = check_choice("mode", mode, ("copy", "carve"))
        values = _label_values("lesion", lesion)
        if not values or any(v <= 0 for v in values):
            raise ParameterError("lesion", lesion, "one or more label values > 0 (0 is background)")
        self.lesion = values
        self.label = as_layer_name("label", label)
        self.region = as_layer_name("region", region, optional=True)
        self.region_values = _label_values("region_values", region_values)
        if region is None and self.region_values is not None:
            raise ParameterError("region_values", region_values, "None without a region layer (name it in region=)")
        self.match = check_choice("match", match, ("mean", "mean_std", "none"))
        self.ring = _length("ring", ring)
        if self.ring <= 0:
            raise ParameterError("ring", ring, "a width in mm > 0")
        self.blend = _length("blend", blend)
        self.margin = as_uniform("margin", margin)
        self.degrees = as_uniform("degrees", degrees, low=-180.0, high=180.0)
        self.scales = as_uniform("scales", scales, low=1e-2, high=100.0)
        self.tries = check_positive_int("tries", tries)
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
            raise ParameterError("p", p, "a probability in [0, 1]")
        self.p = float(p)

    def config(self) -> dict[str, Any]:
        return {"mode": self.mode, "lesion": list(self.lesion), "label": self.label, "region": self.region,
                "region_values": self.region_values, "match": self.match, "ring": self.ring, "blend": self.blend,
                "margin": to_json(self.margin), "degrees": to_json(self.degrees), "scales": to_json(self.scales),
                "tries": self.tries, "p": self.p}

    def __repr__(self) -> str:
        return f"LesionPaste({', '.join(f'{k}={v!r}' for k, v in self.config().items())})"

    # --- checks --------------------------------------------------------------------------------
    def _check(self, samples: Sequence[Sample], what: str) -> list[Sample]:
        samples = list(samples)
        if not samples or not all(isinstance(s, Sample) for s in samples):
            raise ParameterError(what, type(samples).__name__, "a non-empty list of Samples")
        for i, s in enumerate(samples):
            if s.grids:
                raise SampleError(f"LesionPaste works on one grid, and layers {sorted(s.grids)} of {what}[{i}] are "
                                  "on grids of their own; put ResampleToMatch(target=...) before it")
            _label_layer(s, self.label, f"LesionPaste ({what}[{i}])")
        return samples

    def _lesion_mask(self, sample: Sample) -> np.ndarray:
        label = sample[self.label][0].cpu().numpy()
        return np.isin(label, self.lesion)

    # --- drawing -------------------------------------------------------------------------------
    def sample_params(self, samples: Sequence[Sample], generator: torch.Generator,
                      donors: Sequence[Sample] | None = None) -> list[dict[str, Any]]:
        """One params dict per recipient (the donor index, lesion component, jitter and target centre)."""
        from scipy import ndimage
        pool = list(samples) if donors is None else list(donors)
        has = [bool(self._lesion_mask(d).any()) for d in pool]
        if not any(has):
            raise NoDataError(f"LesionPaste: no donor has a lesion (values {self.lesion} in layer {self.label!r})")
        out: list[dict[str, Any]] = []
        for i, recipient in enumerate(samples):
            if self.p < 1.0 and torch.rand((), generator=generator, dtype=torch.float64).item() >= self.p:
                out.append({"applied": False})
                continue
            candidates = [j for j, ok in enumerate(has) if ok and not (donors is None and j == i)] or \
                [j for j, ok in enumerate(has) if ok]
            j = candidates[int(torch.randint(0, len(candidates), (), generator=generator).item())]
            donor = pool[j]
            components, count = ndimage.label(self._lesion_mask(donor))
            k = 1 + int(torch.randint(0, count, (), generator=generator).item())
            voxels = np.argwhere(components == k)
            degrees = [self.degrees.draw(generator) for _ in range(n_rotations(donor.space.ndim))]
            scale = self.scales.draw(generator)
            margin = self.margin.draw(generator) if self.mode == "carve" else 0.0
            centre = self._place(recipient, donor, voxels, degrees, scale, generator)
            out.append({"donor": j, "component": k, "lesion_voxels": int(len(voxels)), "centre": centre,
                        "degrees": degrees, "scale": scale, "margin": margin})
        return out

    def _jitter(self, donor: Sample, degrees: list[float], scale: float) -> np.ndarray:
        """The lesion's forward linear map in world coordinates (rotation and scale)."""
        return rotation_matrix(degrees) * scale

    def _place(self, recipient: Sample, donor: Sample, voxels: np.ndarray, degrees: list[float], scale: float,
               generator: torch.Generator) -> list[int]:
        """A target voxel of the recipient: drawn in the region, the first of ``tries`` that holds the
        whole (jittered) lesion, else the one that holds most of it."""
        region = region_mask(recipient, self.region, self.region_values)[0].cpu().numpy()
        where = np.flatnonzero(region)
        if where.size == 0:
            raise NoDataError(f"LesionPaste: the recipient's region ({self.region!r}, values {self.region_values}) "
                              "has no valid voxel")
        step = max(1, len(voxels) // 2000)           # a subsample of the lesion is enough to test a place
        world = donor.space.index_to_world(voxels[::step].astype(np.float64))
        centroid = donor.space.index_to_world(voxels.mean(0))
        moved = (world - centroid) @ self._jitter(donor, degrees, scale).T
        offsets = moved @ np.linalg.inv(recipient.space.affine[:-1, :-1]).T     # in recipient voxels
        shape = np.array(recipient.space.shape)
        best, best_share = None, -1.0
        for _ in range(self.tries):
            c = np.array(np.unravel_index(where[int(torch.randint(0, where.size, (), generator=generator).item())],
                                          region.shape))
            pos = np.round(c + offsets).astype(int)
            inside = np.all((pos >= 0) & (pos < shape), axis=1)
            hits = np.zeros(len(pos), dtype=bool)
            hits[inside] = region[tuple(pos[inside].T)]
            share = float(hits.mean())
            if share > best_share:
                best, best_share = c, share
            if share >= 1.0:
                break
        assert best is not None
        return [int(v) for v in best]

    # --- driving -------------------------------------------------------------------------------
    def __call__(self, samples: Sequence[Sample], generator: torch.Generator | None = None,
                 donors: Sequence[Sample] | None = None) -> list[Sample]:
        samples = self._check(samples, "samples")
        pool = None if donors is None else self._check(donors, "donors")
        if generator is None:
            generator = torch.Generator().manual_seed(int(np.random.SeedSequence().generate_state(1)[0]))
        return self.replay(samples, self.sample_params(samples, generator, pool), pool)

    def replay(self, samples: Sequence[Sample], params: Sequence[dict[str, Any]],
               donors: Sequence[Sample] | None = None) -> list[Sample]:
        """The outputs from the recipients, one params dict each (e.g. from records), and the same donors."""
        samples = self._check(samples, "samples")
        pool = samples if donors is None else self._check(donors, "donors")
        if len(params) != len(samples):
            raise ParameterError("params", f"{len(params)} dicts", f"{len(samples)} (one per sample)")
        outs = []
        for i, p in enumerate(params):
            p = dict(p)
            if p.get("applied", True) is False:
                out = samples[i].replace()
            else:
                j = p.get("donor")
                if isinstance(j, bool) or not isinstance(j, int) or not 0 <= j < len(pool):
                    raise ParameterError(f"params[{i}]['donor']", j, f"a donor index in [0, {len(pool) - 1}]")
                out = self.paste(samples[i], pool[j], p)
            out.history = list(samples[i].history) + [ParamRecord("LesionPaste", self.config(), p)]
            outs.append(out)
        return outs

    # --- the paste -----------------------------------------------------------------------------
    def paste(self, recipient: Sample, donor: Sample, params: dict[str, Any]) -> Sample:
        """``recipient`` with the lesion of ``donor`` that ``params`` names pasted in (deterministic)."""
        from scipy import ndimage
        space, n = recipient.space, recipient.space.ndim
        if donor.space.ndim != n:
            raise SpaceMismatchError(f"LesionPaste: the donor is {donor.space.ndim}D and the recipient {n}D")
        if donor.space.crs != space.crs:
            raise SpaceMismatchError(f"LesionPaste: the donor's CRS ({donor.space.crs}) is not the recipient's "
                                     f"({space.crs}); reproject first")
        images = recipient.layer_names(Role.INTENSITY)
        missing = [name for name in images if name not in donor.layer_names()
                   or donor.layer_info(name).role is not Role.INTENSITY
                   or donor.layer_info(name).data.shape[0] != recipient.layer_info(name).data.shape[0]]
        if missing:
            raise ParameterError("donors", missing, "donors with every INTENSITY layer of the recipient (same "
                                 "channels): LesionPaste pastes each")
        components, _ = ndimage.label(self._lesion_mask(donor))
        mask = components == int(params["component"])
        if int(mask.sum()) != int(params["lesion_voxels"]):
            raise ParameterError("donors", f"lesion {params['component']} of donor {params.get('donor')} has "
                                 f"{int(mask.sum())} voxels", f"the donors of the record (it had "
                                 f"{params['lesion_voxels']}): replay needs the same donors")
        patch, pending = self._patch(recipient, donor, mask, params)
        device = recipient.device
        label_data = donor[self.label]
        lesion_values = torch.where(torch.from_numpy(mask)[None].to(label_data.device), label_data,
                                    torch.zeros_like(label_data))
        specs = [LayerSpec(lesion_values, "label", "nearest", 0.0)]
        specs += [LayerSpec(donor[name], "intensity", "linear", float(donor.layer_info(name).fill)) for name in images]
        dvalid = donor[donor.valid_name] if donor.valid_name else torch.ones((1,) + donor.space.shape, dtype=torch.bool,
                                                                               device=donor.device)
        specs.append(LayerSpec(dvalid, "valid", "valid", 0.0))
        outs = resample_layers(specs, pending)
        lesion_patch, donor_images, covered = outs[0].to(device), [o.to(device) for o in outs[1:-1]], outs[-1]
        # where the patch lands in the recipient (clipped to the grid)
        half = (np.array(patch.shape) - 1) // 2
        start = np.array(params["centre"]) - half
        lo, hi = np.maximum(start, 0), np.minimum(start + np.array(patch.shape), np.array(space.shape))
        if np.any(hi <= lo):
            return recipient.replace()
        into = (slice(None),) + tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
        local = (slice(None),) + tuple(slice(int(a - s), int(b - s)) for a, b, s in zip(lo, hi, start))
        region = region_mask(recipient, self.region, self.region_values)[into]
        usable = (region & covered[local].to(device))[0].cpu().numpy()
        lesion = (lesion_patch[local][0] > 0).cpu().numpy()
        spacing = space.spacing
        outside = ndimage.distance_transform_edt(~lesion, sampling=list(spacing)) if lesion.any() else \
            np.full(lesion.shape, np.inf)
        if self.mode == "carve":
            inside = ndimage.distance_transform_edt(lesion, sampling=list(spacing))
            zone = np.where(lesion, -inside, outside) <= float(params["margin"])
        else:
            zone = lesion
        zone &= usable
        pasted = lesion & zone
        weight = _falloff(zone, spacing, self.blend) * usable
        ring = (outside > 0) & (outside <= self.ring + max(float(params["margin"]), 0.0)) & usable & ~zone
        w = torch.from_numpy(weight).to(device)[None]
        layers: dict[str, Layer] = {}
        for name, donor_image in zip(images, donor_images):
            info = recipient.layer_info(name)
            base = recipient[name]
            work = base.to(torch.float64)
            part = work[into]
            values = self._matched(donor_image[local].to(torch.float64), part, torch.from_numpy(ring).to(device)[None])
            new = work.clone()
            new[into] = part + w * (values - part)
            layers[name] = replace(info, data=cast(new, base.dtype))
        label = recipient[self.label]
        new_label = label.clone()
        target = new_label[into]
        zone_t = torch.from_numpy(zone).to(device)[None]
        pasted_t = torch.from_numpy(pasted).to(device)[None]
        lesion_values_t = torch.tensor(self.lesion, dtype=label.dtype, device=device)
        covered_lesion = zone_t & ~pasted_t & torch.isin(target, lesion_values_t)
        target = torch.where(covered_lesion, torch.zeros_like(target), target)
        new_label[into] = torch.where(pasted_t, lesion_patch[local].to(device=device, dtype=label.dtype), target)
        layers[self.label] = replace(recipient.layer_info(self.label), data=new_label)
        return recipient.with_layers(**layers)

    def _patch(self, recipient: Sample, donor: Sample, mask: np.ndarray,
               params: dict[str, Any]) -> tuple[Space, PendingMap]:
        """The recipient-voxel patch around the donor's lesion, and the map that pulls it from the donor."""
        n = recipient.space.ndim
        voxels = np.argwhere(mask)
        centre_index = np.round(voxels.mean(0))          # a donor voxel: no jitter on the same lattice is a copy
        centre = donor.space.index_to_world(centre_index)
        linear = self._jitter(donor, list(params["degrees"]), float(params["scale"]))
        moved = (donor.space.index_to_world(voxels.astype(np.float64)) - centre) @ linear.T
        extent = np.abs(moved @ np.linalg.inv(recipient.space.affine[:n, :n]).T).max(0)     # recipient voxels
        pad = max(float(params.get("margin", 0.0)), 0.0) + self.blend + self.ring                 # mm around it
        half = np.ceil(extent + pad / recipient.space.spacing + 1).astype(int)
        half = np.minimum(half, np.array(recipient.space.shape))    # what lies farther never lands on the grid
        shape = tuple(int(v) for v in 2 * half + 1)
        affine = np.eye(n + 1)
        affine[:n, :n] = recipient.space.affine[:n, :n]
        affine[:n, n] = centre - affine[:n, :n] @ half          # patch centre voxel -> the lesion's centre
        patch = Space(shape, affine, donor.space.crs)
        pull = np.linalg.inv(about_center(linear, centre))      # patch world -> donor world
        return patch, PendingMap(donor.space, patch, [] if np.allclose(linear, np.eye(n)) else [pull])

    def _matched(self, donor: torch.Tensor, recipient: torch.Tensor, ring: torch.Tensor) -> torch.Tensor:
        """The donor's values shifted (and scaled) so its ring matches the recipient's, per channel."""
        if self.match == "none" or int(ring.sum()) < 8:
            return donor
        d = channel_stats(donor, ring, ("mean", "std"))
        r = channel_stats(recipient, ring, ("mean", "std"))
        if self.match == "mean":
            return donor + (r["mean"] - d["mean"])
        gain = r["std"] / d["std"].clamp(min=1e-12)
        return (donor - d["mean"]) * gain + r["mean"]


# ---------------------------------------------------------------------------------------------
# GenerativeSynthesis
# ---------------------------------------------------------------------------------------------
_LIVE = "live:"
_SCRIPTS: dict[tuple[str, int, str], torch.nn.Module] = {}
_SCRIPTS_LOCK = threading.Lock()


def _load_script(path: str, device: torch.device) -> torch.nn.Module:
    """A TorchScript file loaded onto ``device``, once per (file version, device)."""
    key = (path, os.stat(path).st_mtime_ns, str(device))
    with _SCRIPTS_LOCK:
        if key not in _SCRIPTS:
            if len(_SCRIPTS) >= 8:
                _SCRIPTS.pop(next(iter(_SCRIPTS)))
            _SCRIPTS[key] = torch.jit.load(path, map_location=device).eval()
        return _SCRIPTS[key]


class GenerativeSynthesis(Transform):
    """The hook for a trained generator: ``model(condition, noise) -> image`` fills a region.

    On the bounding box of the region (plus ``context`` mm), domainaug calls ``model`` under
    ``torch.no_grad()`` on the sample's device with ``condition``, the layer ``condition`` as float32
    ``(1, C_cond, *box)`` (a label map or a mask), and ``noise``, standard normal
    ``(1, noise_channels, *box)`` drawn from a seed that the sample's generator gives (so replay is
    exact for a deterministic model: put it in eval mode). The model returns ``(1, C, *box)``, C
    the channels of ``layer``; that is blended into the region: ``x + strength * w * (g - x)``, ``w``
    1 in the region, falling to 0 over ``blend`` mm outside it. Labels are not changed (the
    condition is what the generator is asked to draw). An empty region changes nothing.

    Serialisation: ``model`` is a TorchScript file path (``torch.jit.save``): the config holds the
    path, and records replay anywhere the file is. A live ``torch.nn.Module`` works the same, but
    its config says only ``"live:<class name>"``: rebuilding the transform from a record or YAML
    (``replay``, ``transform_from_dict``) raises a ``ParameterError`` naming it (replay with
    ``GenerativeSynthesis(model=the_module, ...).apply(sample, record.params)``, or save it as
    TorchScript). No model is ever downloaded.

    Args:
        model: A TorchScript file path, or a ``torch.nn.Module`` on the samples' device.
        condition: The layer given to the model (LABEL, VALID or INTENSITY).
        region: The layer whose voxels (> 0, or in ``region_values``) are synthesised (default: the
            ``condition`` layer).
        region_values: Values of ``region`` that count (default: any value > 0).
        layer: The INTENSITY layer written.
        noise_channels: Channels of the noise input (>= 1).
        context: Margin around the region's bounding box given to the model, mm (>= 0).
        blend: Blend width outside the region, mm (>= 0).
        strength: Weight of the generated image, in [0, 1]; a number or a range.
        p: Probability of applying.

    Example:
        >>> import torch
        >>> from domainaug.testing import make_volume
        >>> class Tiny(torch.nn.Module):
        ...     def forward(self, condition, noise):
        ...         return 100.0 + 10.0 * condition + noise
        >>> out = GenerativeSynthesis(Tiny(), region_values=[7])(make_volume(), torch.Generator().manual_seed(0))
        >>> out["image"].shape
        torch.Size([1, 14, 16, 12])
    """

    def __init__(self, model: str | os.PathLike[str] | torch.nn.Module, condition: str = "label",
                 region: str | None = None, region_values: int | Sequence[int] | None = None, layer: str = "image",
                 noise_channels: int = 1, context: float = 4.0, blend: float = 0.0,
                 strength: float | tuple[float, float] = 1.0, p: float = 1.0) -> None:
        if isinstance(model, torch.nn.Module):
            self.model: str | torch.nn.Module = model
        elif isinstance(model, (str, os.PathLike)):
            path = os.fspath(model)
            if path.startswith(_LIVE):
                raise ParameterError("model", path, "a TorchScript file path or a torch.nn.Module: this record was "
                                     "made with a live module, which a record cannot hold; replay with "
                                     "GenerativeSynthesis(model=<that module>, ...).apply(sample, params), or save "
                                     "the module with torch.jit.save and pass its path")
            if not Path(path).is_file():
                raise ParameterError("model", path, "an existing TorchScript file (torch.jit.save) or a "
                                     "torch.nn.Module")
            self.model = str(Path(path).absolute())
        else:
            raise ParameterError("model", type(model).__name__, "a TorchScript file path or a torch.nn.Module")
        self.condition, self.layer = as_layer_name("condition", condition), as_layer_name("layer", layer)
        self.region = as_layer_name("region", region, optional=True)
        self.region_values = _label_values("region_values", region_values)
        self.noise_channels = check_positive_int("noise_channels", noise_channels)
        self.context = _length("context", context)
        self.blend = _length("blend", blend)
        self.strength = as_uniform("strength", strength, low=0.0, high=1.0)
        self._set_p(p)

    def arguments(self) -> dict[str, Any]:
        out = super().arguments()
        if isinstance(self.model, torch.nn.Module):
            out["model"] = _LIVE + type(self.model).__qualname__
        return out

    def sample_params(self, sample: Sample, generator: torch.Generator) -> dict[str, Any]:
        self._check(sample)
        return {"seed": child_seed(generator), "strength": self.strength.draw(generator)}

    def _check(self, sample: Sample) -> None:
        names = sample.layer_names()
        if self.condition not in names:
            raise ParameterError("condition", self.condition, f"a layer of the sample ({names})")
        if self.layer not in names or sample.layer_info(self.layer).role is not Role.INTENSITY:
            raise ParameterError("layer", self.layer, f"an INTENSITY layer of the sample "
                                 f"({sample.layer_names(Role.INTENSITY)})")

    def _module(self, device: torch.device) -> torch.nn.Module:
        if isinstance(self.model, str):
            return _load_script(self.model, device)
        where = next((t.device for t in list(self.model.parameters()) + list(self.model.buffers())), None)
        if where is not None and where != device:
            raise SampleError(f"GenerativeSynthesis: the model is on {where} and the sample on {device}; move one "
                              "of them (model.to(device) or sample.to(device))")
        return self.model

    def apply(self, sample: Sample, params: dict[str, Any]) -> Sample:
        self._check(sample)
        region = region_mask(sample, self.region or self.condition, self.region_values)
        if params["strength"] == 0 or not bool(region.any()):
            return sample.replace()
        space, device = sample.space, sample.device
        where = torch.nonzero(region[0]).cpu().numpy()
        pad = np.ceil(self.context / space.spacing).astype(int)
        lo = np.maximum(where.min(0) - pad, 0)
        hi = np.minimum(where.max(0) + 1 + pad, np.array(space.shape))
        box = (slice(None),) + tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
        shape = tuple(int(b - a) for a, b in zip(lo, hi))
        condition = sample[self.condition][box].to(torch.float32)[None]
        noise = seeded_noise(params["seed"], (1, self.noise_channels) + shape, device, torch.float32, "normal")
        base = sample[self.layer]
        with torch.no_grad():
            made = self._module(device)(condition, noise)
        expected = (1, base.shape[0]) + shape
        if not isinstance(made, torch.Tensor) or tuple(made.shape) != expected:
            raise ShapeError(f"GenerativeSynthesis: the model returned {tuple(getattr(made, 'shape', ()))} for a "
                             f"box of {shape}; expected {expected} (one channel per channel of layer {self.layer!r})")
        inside = region[box][0]
        if not bool(torch.isfinite(made[0][:, inside]).all()):
            raise SampleError("GenerativeSynthesis: the model returned NaN or Inf inside the region")
        weight = _falloff(inside.cpu().numpy(), space.spacing, self.blend)
        w = torch.from_numpy(weight).to(device=device, dtype=torch.float64)[None] * float(params["strength"])
        if sample.valid_name:
            w = w * sample[sample.valid_name][box].to(torch.float64)
        work = base.to(torch.float64)
        part = work[box]
        new = work.clone()
        new[box] = part + w * (torch.nan_to_num(made[0].to(torch.float64)) - part)
        return sample.with_layers(**{self.layer: replace(sample.layer_info(self.layer), data=cast(new, base.dtype))})

    @classmethod
    def contract_case(cls) -> Case:
        from ..testing import Case
        return Case(
            random=lambda s: GenerativeSynthesis(_contract_script(), noise_channels=s.layer_info("image").data.shape[0],
                                                 strength=(0.5, 1.0), blend=2.0),
            identity=lambda s: GenerativeSynthesis(_contract_script(), strength=0.0),
            bad=[("model", lambda: GenerativeSynthesis(3)),  # type: ignore[arg-type]  # (wrong on purpose)
                 ("strength", lambda: GenerativeSynthesis(_contract_script(), strength=2.0)),
                 ("noise_channels", lambda: GenerativeSynthesis(_contract_script(), noise_channels=0))])


class _ContractGenerator(torch.nn.Module):
    """A stand-in generator for the contract suite: a fixed point-wise mix of condition and noise,
    with as many output channels as noise channels (any dimension)."""

    def forward(self, condition: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return 150.0 + 5.0 * condition[:, :1] + 20.0 * noise


def _contract_script() -> str:
    """The contract suite's generator as a TorchScript file (written once per process)."""
    import tempfile
    path = Path(tempfile.gettempdir()) / f"domainaug-contract-generator-v2-{os.getpid()}.pt"
    if not path.is_file():
        torch.jit.save(torch.jit.script(_ContractGenerator()), str(path))
    return str(path)
