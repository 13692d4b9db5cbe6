"""Canonical orientation: a regrid that relabels axes, so every voxel keeps its world coordinate."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..core.maps import Stage
from ..core.sample import Sample
from ..core.space import Space
from ..core.transform import SpatialTransform
from ..errors import ParameterError, ShapeError

if TYPE_CHECKING:
    from ..testing import Case

__all__ = ["Reorient"]


class Reorient(SpatialTransform):
    """Permute and flip array axes so they point along ``orientation`` (NIfTI axis codes: ``"RAS"``,
    ``"LPS"``, ``"PIR"`` ...; the letters name where each array axis increases). A regrid: the content
    stays where it is in the world and is copied, never interpolated.

    Args:
        orientation: Three distinct axis codes, one of R/L, A/P, S/I each.
        p: Probability of applying.

    Example:
        >>> out = Reorient("LPS")(sample, generator_for(0))        # an exact regrid: voxels move, world stays
    """

    deterministic = True

    def __init__(self, orientation: str = "RAS", p: float = 1.0) -> None:
        codes = str(orientation).upper()
        groups = {"R": 0, "L": 0, "A": 1, "P": 1, "S": 2, "I": 2}
        if len(codes) != 3 or any(c not in groups for c in codes) or sorted(groups[c] for c in codes) != [0, 1, 2]:
            raise ParameterError("orientation", orientation, "three axis codes, one of R/L, A/P, S/I each, e.g. 'RAS'")
        self.orientation = codes
        self._set_p(p)

    def sample_params(self, sample: Sample, generator: torch.Generator) -> dict[str, Any]:
        return {}


    def layer_grid(self, grid: Space, space: Space, out: Space, stages: list[Stage], params: dict[str, Any]) -> Space:
        """A layer on a grid of its own is reoriented on that grid."""
        return self.spatial_map(grid, params)[0]

    def spatial_map(self, space: Space, params: dict[str, Any]) -> tuple[Space, list[Stage]]:
        if space.ndim != 3:
            raise ShapeError(f"Reorient needs a 3D sample (scan axes in RAS mm); got {space.ndim}D {space.shape}")
        import nibabel.orientations as nio  # (imported when used: `import domainaug` needs no nibabel)
        start = nio.io_orientation(space.affine)
        transform = nio.ornt_transform(start, nio.axcodes2ornt(tuple(self.orientation)))
        new_affine = space.affine @ nio.inv_ornt_aff(transform, space.shape)
        shape = [space.shape[int(i)] for i in np.argsort(transform[:, 0])]
        return space.with_grid(shape, new_affine), []

    @classmethod
    def contract_case(cls) -> Case:
        import nibabel.orientations as nio

        from ..testing import Case
        return Case(
            random=lambda s: Reorient("PIR"), identity=lambda s: Reorient("".join(nio.aff2axcodes(s.space.affine))),
            bad=[("orientation", lambda: Reorient("RAX")), ("orientation", lambda: Reorient("RRS"))],
            kinds=("volume", "oblique-int16"))
