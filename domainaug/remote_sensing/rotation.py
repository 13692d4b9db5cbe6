"""Rotation policies for overhead imagery."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..core.kernels.affine import about_center, axis_frame
from ..core.maps import Stage
from ..core.params import as_axes, check_choice, resolve_axes
from ..core.sample import Sample
from ..core.space import Space
from ..core.transform import SpatialTransform
from ..errors import ParameterError
from ..spatial import Flip, Rot90

if TYPE_CHECKING:
    from ..testing import Case

__all__ = ["RotationPolicy", "POLICIES"]

POLICIES = ("none", "dihedral", "rot90", "small", "any")


class RotationPolicy(SpatialTransform):
    """How a tile may be turned, in the plane of two axes (default: the last two).

    - ``"none"``: never (e.g. when shadows, slopes or sun-lit faces carry the class).
    - ``"rot90"``: a random quarter turn. ``"dihedral"``: one of the 8 symmetries of the square (a
      quarter turn after an optional mirror). Both are exact voxel permutations, no interpolation.
    - ``"small"``: any angle in ``[-max_degrees, max_degrees]``. ``"any"``: any angle.
      These interpolate and fill the corners on a fixed grid; the corners are marked invalid (a
      VALID layer is added when the sample has none).

    What happens to the grid and the footprint (the world area the raster covers):

    - ``"rot90"``/``"dihedral"`` on a square grid with equal spacing: the grid stays the same (a
      warp); the content turns inside the same footprint.
    - on a non-square grid (or unequal spacing), an odd quarter turn rotates the *grid* with the
      content (``Rot90``): the output ``Space`` has rows and columns swapped (``(H, W) -> (W, H)``,
      and their spacings), its affine turns by 90 degrees about the grid centre, and the footprint is
      the input's, turned about its centre. Every pixel keeps its value and is placed at its
      rotated world position; nothing is cut off or filled. The grid is then no longer north-up, so
      such a tile cannot be written back into the source mosaic (``TileWriter`` refuses it), and
      tiles of one batch may differ in shape: use square tiles when that matters. Half turns and
      mirrors keep the grid (the content moves inside the same footprint), so on a non-square
      raster half of the eight ``"dihedral"`` draws keep the ``Space`` and half rotate it.
    - ``"small"``/``"any"`` keep the grid and the footprint: the content turns inside it, what
      leaves the footprint is lost and what comes in is nodata (marked invalid).

    Overhead scenes have no "up", so rotations are usually safe. They are harmful when the class
    depends on orientation: shadow direction (sun azimuth) in building or tree-height tasks, slope
    aspect, north-up map symbols or text, and wind or wave patterns. Mirroring (``"dihedral"``) also
    reverses chirality, e.g. river meanders, spiral patterns, or left-hand traffic.

    Args:
        policy: One of ``none``, ``dihedral``, ``rot90``, ``small``, ``any``.
        max_degrees: Largest angle for ``small``.
        axes: The two axes of the rotation plane.
        p: Probability of applying.

    Example:
        >>> out = RotationPolicy("dihedral")(raster, generator_for(0))      # exact: one of the 8 symmetries
    """

    def __init__(self, policy: str = "dihedral", max_degrees: float = 15.0, axes: Sequence[int] = (-2, -1),
                 p: float = 1.0) -> None:
        self.policy = check_choice("policy", policy, POLICIES)
        if isinstance(max_degrees, bool) or not isinstance(max_degrees, (int, float)) or not 0 <= max_degrees <= 180:
            raise ParameterError("max_degrees", max_degrees, "one angle in [0, 180]")
        self.max_degrees = float(max_degrees)
        chosen = as_axes("axes", axes)
        if chosen is None or len(chosen) != 2:
            raise ParameterError("axes", chosen, "two distinct axes")
        self.axes = chosen
        self._set_p(p)

    def sample_params(self, sample: Sample, generator: torch.Generator) -> dict[str, Any]:
        def draw(n: int) -> int:
            return int(torch.randint(0, n, (), generator=generator).item())

        limit = {"small": self.max_degrees, "any": 180.0}.get(self.policy, 0.0)
        degrees = (2 * torch.rand((), generator=generator, dtype=torch.float64).item() - 1) * limit if limit else 0.0
        return {"k": draw(4) if self.policy in ("rot90", "dihedral") else 0,
                "flip": bool(draw(2)) if self.policy == "dihedral" else False,
                "degrees": degrees, "axes": resolve_axes("axes", self.axes, sample.space.ndim)}

    def lazy(self, sample: Sample, params: dict[str, Any]) -> Sample:
        if (at := self.for_record(params)) is not self:       # a record of another epoch
            return at.lazy(sample, params)
        if params.get("degrees"):            # corners come from outside the tile: mark them as nodata
            sample = sample.with_valid()
        return super().lazy(sample, params)

    def spatial_map(self, space: Space, params: dict[str, Any]) -> tuple[Space, list[Stage]]:
        a, b = resolve_axes("params['axes']", params["axes"], space.ndim)
        stages: list[Stage] = []
        if params["flip"]:
            space, step = Flip().spatial_map(space, {"axes": [b]})
            stages = step + stages
        if params["k"] % 4:
            space, step = Rot90().spatial_map(space, {"k": params["k"], "axes": [a, b]})
            stages = step + stages
        if params["degrees"]:
            theta = np.radians(params["degrees"])            # in the (a, b) plane, from a towards b
            plane = np.eye(space.ndim)
            plane[a, a] = plane[b, b] = np.cos(theta)
            plane[b, a], plane[a, b] = np.sin(theta), -np.sin(theta)
            forward = about_center(axis_frame(plane, space.direction), space.center_world())
            stages = [np.linalg.inv(forward), *stages]
        return space, stages

    @classmethod
    def contract_case(cls) -> Case:
        from ..testing import Case
        return Case(
            random=lambda s: RotationPolicy("dihedral"), identity=lambda s: RotationPolicy("none"),
            bad=[("policy", lambda: RotationPolicy("sometimes")), ("axes", lambda: RotationPolicy(axes=(0,)))])
