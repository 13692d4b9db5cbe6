"""Composition of spatial maps: one pending coordinate map per sample.

A spatial op is a *pull-back*: for every output world position it says where in the input world
the content comes from. It is a list of stages, applied in order from the output side:

- an affine stage is an ``(n+1)x(n+1)`` world -> world matrix;
- a :class:`Field` stage adds a smooth displacement: ``x <- x + d(x)``.

Consecutive ops compose by concatenating their stages (the newest op's stages come first, since
they act on the newest output), and consecutive affine stages are multiplied into one matrix. The
layers are resampled once, from the source grid, when the data is needed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union

import numpy as np

from ..space import Space

__all__ = ["Field", "Stage", "PendingMap", "fuse_stages"]


@dataclass(frozen=True, eq=False)
class Field:
    """A smooth displacement field ``d(x)`` in world units, stored on a coarse lattice.

    ``lattice`` is float32 ``(n, *lattice_shape)``: world displacement vectors at lattice points.
    ``to_lattice`` is the ``(n+1)x(n+1)`` world -> lattice-index affine. Between lattice points the
    field is interpolated linearly; outside the lattice it is clamped to the border value.
    """

    lattice: np.ndarray
    to_lattice: np.ndarray

    @property
    def ndim(self) -> int:
        return self.lattice.shape[0]


Stage = Union[np.ndarray, Field]


def fuse_stages(stages: list[Stage]) -> list[Stage]:
    """Multiply runs of consecutive affine stages into one matrix (order kept)."""
    out: list[Stage] = []
    for stage in stages:
        if isinstance(stage, np.ndarray) and out and isinstance(out[-1], np.ndarray):
            # Both pull back from the output side: x -> prev(x) -> stage(prev(x)).
            out[-1] = stage @ out[-1]
        else:
            out.append(stage)
    return out


@dataclass(frozen=True, eq=False)
class PendingMap:
    """Everything needed to resample layers that live on ``source`` onto ``space`` in one pass.

    ``values`` holds per-layer *value stages* for maps that are exact voxel permutations: a
    per-channel affine ``x -> gain * x + bias`` on valid voxels (``(C,)`` float64 arrays), applied
    while the data is copied (spectral jitter after a dihedral flip costs one pass, not three).
    """

    source: Space
    space: Space
    stages: list[Stage] = field(default_factory=list)
    values: dict = field(default_factory=dict)

    def then(self, space: Space, stages: list[Stage]) -> "PendingMap":
        """Compose with a further op whose output is ``space`` and whose pull-back is ``stages``."""
        if self.values:
            raise ValueError("value stages are pending: resample before adding a spatial map")
        return PendingMap(self.source, space, fuse_stages(list(stages) + list(self.stages)))

    def with_values(self, name: str, gain: np.ndarray, bias: np.ndarray) -> "PendingMap":
        """Add ``x -> gain * x + bias`` (after any earlier value stage of the layer)."""
        values = dict(self.values)
        if name in values:
            g0, b0 = values[name]
            gain, bias = gain * g0, gain * b0 + bias
        values[name] = (np.asarray(gain, np.float64), np.asarray(bias, np.float64))
        return PendingMap(self.source, self.space, self.stages, values)

    @property
    def n_fields(self) -> int:
        return sum(isinstance(s, Field) for s in self.stages)
