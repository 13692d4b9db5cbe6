"""What every path of the resampler shares: the layer description, the interpolation modes, and
the layer's value stage (the cast back to its dtype is ``core.values.cast``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["LayerSpec", "INTENSITY_MODES", "LABEL_MODES", "apply_values", "shape3"]

INTENSITY_MODES = {"linear": 0, "cubic": 1, "nearest": 2}
LABEL_MODES = {"nearest": 0, "argmax": 1}


@dataclass(frozen=True)
class LayerSpec:
    """What the resampler needs to know about one layer."""

    data: torch.Tensor          # (C, *spatial)
    kind: str                   # "intensity" | "label" | "valid"
    mode: str                   # an INTENSITY_MODES or LABEL_MODES key ("valid" for VALID)
    fill: float
    gain: np.ndarray | None = None   # a value stage (C,): x -> gain * x + bias on valid voxels
    bias: np.ndarray | None = None   # (a batch's spec: data (B, C, *spatial), gain and bias (B, C))


def shape3(shape: tuple[int, ...]) -> tuple[int, int, int]:
    return (1,) + tuple(shape) if len(shape) == 2 else tuple(shape)  # type: ignore[return-value]


def apply_values(out: torch.Tensor, spec: LayerSpec, valid: torch.Tensor | None) -> torch.Tensor:
    """The layer's value stage applied after resampling (paths other than the CPU exact copy).

    ``spec.gain``/``spec.bias`` are ``(C,)`` for one sample's ``out`` (C, *spatial), or ``(B, C)``
    for a batch's ``out`` (B, C, *spatial); ``valid`` broadcasts against ``out``."""
    if spec.gain is None or spec.bias is None:        # (a value stage sets both)
        return out
    shape = tuple(np.shape(spec.gain)) + (1,) * (out.dim() - np.ndim(spec.gain))
    # (a copy: value stages are often read-only broadcasts, which torch warns about and will not share)
    gain = torch.as_tensor(np.array(spec.gain, dtype=np.float64), dtype=out.dtype, device=out.device).view(shape)
    bias = torch.as_tensor(np.array(spec.bias, dtype=np.float64), dtype=out.dtype, device=out.device).view(shape)
    new = out * gain + bias
    return new if valid is None else torch.where(valid, new, out)
