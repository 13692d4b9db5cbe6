"""RandAugment / TrivialAugment over domain op sets.

Magnitude runs from 0 (no change) to 10 (the strongest setting below). Each op is built from the
magnitude ``m`` (and the sample's space, for lengths) and draws its own random sign or value inside
its range, so the records hold both the chosen ops and their drawn params:

- ``rotate``: Affine degrees in ``[-3m, 3m]``. ``scale``: Affine scales in ``[1 - 0.02m, 1 + 0.02m]``.
  ``shear``: Affine shear in ``[-0.03m, 0.03m]``. ``flip``: Flip axis 0 (magnitude-free).
- ``gamma``: in ``[1 / (1 + 0.05m), 1 + 0.05m]``. ``contrast``: BrightnessContrast brightness
  ``[-0.02m, 0.02m]``, contrast ``[1 - 0.05m, 1 + 0.05m]``. ``noise``: GaussianNoise std ``[0, 0.02m]``
  (relative). ``blur``: GaussianBlur sigma ``[0, 0.1m]`` voxels of the finest axis (in world units).
- medical: ``bias`` BiasField coefficients ``[-0.03m, 0.03m]``; ``rician`` RicianNoise ``[0, 0.01m]``;
  ``ghosting`` intensity ``0.05m``; ``spike`` intensity ``0.02m``; ``motion`` degrees and mm ``[-0.5m, 0.5m]``.
- remote sensing: ``dihedral`` (exact); ``jitter`` SpectralJitter gain ``[1 - 0.02m, 1 + 0.02m]``, bias
  ``[-0.005m, 0.005m]``; ``haze`` strength ``[0, 0.01m]``; ``dropout`` BandDropout; ``clouds``
  CloudShadow coverage ``[0, 0.03m]``.
- ``identity`` is in every set.

The vision ops of the detection pipelines (2D only, so not in ``generic``, which also serves
volumes; the colour ops need red, green and blue bands, so they form the ``rgb`` set on top of
``remote_sensing``):

======================  ==========================================================  ===============
op                      transform at magnitude ``m`` (0..10)                        sets
======================  ==========================================================  ===============
``jpeg``                ``Compression`` quality ``[100 - 9m, 100]`` (JPEG)          remote_sensing, rgb
``resized_crop``        ``RandomResizedCrop`` to the input size, area fraction      remote_sensing, rgb
                        ``[1 - 0.05m, 1]``, ratio ``a / (1 + 0.03m) .. a (1 + 0.03m)``
                        about the grid's own world aspect ``a``
``color``               ``ColorJitter`` brightness and contrast                     rgb
                        ``[1 - 0.03m, 1 + 0.03m]``, saturation ``[1 - 0.05m, 1 + 0.05m]``,
                        hue ``[-3m, 3m]`` degrees
``hsv``                 ``HueSaturation`` hue ``[-3m, 3m]`` degrees, saturation     rgb
                        ``[-0.02m, 0.02m]``, value ``[-0.01m, 0.01m]``
======================  ==========================================================  ===============
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import torch

from .core.params import check_choice
from .core.sample import Sample
from .core.space import Space
from .core.transform import Compose, Composite, Transform
from .errors import ParameterError
from .intensity import BrightnessContrast, Gamma, GaussianBlur, GaussianNoise
from .spatial import Affine, Flip, RandomResizedCrop

if TYPE_CHECKING:
    from .testing import Case

__all__ = ["RandAugment", "TrivialAugment", "OPS", "OP_SETS"]

MAX_MAGNITUDE = 10.0


def _medical(name: str) -> Callable[[float, Space], Transform]:
    def build(m: float, space: Space) -> Transform:
        from . import medical as md
        return {"bias": lambda: md.BiasField((-0.03 * m, 0.03 * m)), "rician": lambda: md.RicianNoise((0.0, 0.01 * m)),
                "ghosting": lambda: md.Ghosting(intensity=0.05 * m), "spike": lambda: md.Spike(intensity=0.02 * m),
                "motion": lambda: md.Motion((-0.5 * m, 0.5 * m), (-0.5 * m, 0.5 * m))}[name]()
    return build


def _remote(name: str) -> Callable[[float, Space], Transform]:
    def build(m: float, space: Space) -> Transform:
        from . import remote_sensing as rs
        return {"dihedral": lambda: rs.RotationPolicy("dihedral"),
                "jitter": lambda: rs.SpectralJitter((1 - 0.02 * m, 1 + 0.02 * m), (-0.005 * m, 0.005 * m)),
                "haze": lambda: rs.Haze((0.0, 0.01 * m)), "dropout": lambda: rs.BandDropout(),
                "clouds": lambda: rs.CloudShadow((0.0, 0.03 * m)),
                "jpeg": lambda: rs.Compression((100 - 9 * m, 100)),
                "resized_crop": lambda: _resized_crop(m, space),
                "color": lambda: rs.ColorJitter((1 - 0.03 * m, 1 + 0.03 * m), (1 - 0.03 * m, 1 + 0.03 * m),
                                                (1 - 0.05 * m, 1 + 0.05 * m), (-3 * m, 3 * m)),
                "hsv": lambda: rs.HueSaturation((-3 * m, 3 * m), (-0.02 * m, 0.02 * m), (-0.01 * m, 0.01 * m))}[name]()
    return build


def _resized_crop(m: float, space: Space) -> Transform:
    """A random resized crop back to the input size, about the grid's own world aspect ratio."""
    (h, w), (sy, sx) = space.shape[-2:], space.spacing[-2:]
    aspect = float(w * sx / (h * sy))
    return RandomResizedCrop(space.shape, scale=(1 - 0.05 * m, 1.0), ratio=(aspect / (1 + 0.03 * m),
                                                                             aspect * (1 + 0.03 * m)))


#: Every op: name -> builder(magnitude, space) -> Transform.
OPS: dict[str, Callable[[float, Space], Transform]] = {
    "identity": lambda m, space: Compose([]),
    "rotate": lambda m, space: Affine(degrees=(-3 * m, 3 * m)),
    "scale": lambda m, space: Affine(scales=(1 - 0.02 * m, 1 + 0.02 * m)),
    "shear": lambda m, space: Affine(shear=(-0.03 * m, 0.03 * m)),
    "flip": lambda m, space: Flip(axes=(0,)),
    "gamma": lambda m, space: Gamma((1 / (1 + 0.05 * m), 1 + 0.05 * m)),
    "contrast": lambda m, space: BrightnessContrast((-0.02 * m, 0.02 * m), (1 - 0.05 * m, 1 + 0.05 * m)),
    "noise": lambda m, space: GaussianNoise((0.0, 0.02 * m)),
    "blur": lambda m, space: GaussianBlur((0.0, 0.1 * m * float(space.spacing.min()))),
    **{name: _medical(name) for name in ("bias", "rician", "ghosting", "spike", "motion")},
    **{name: _remote(name) for name in ("dihedral", "jitter", "haze", "dropout", "clouds", "jpeg", "resized_crop",
                                        "color", "hsv")},
}

_GENERIC = ["identity", "rotate", "scale", "shear", "flip", "gamma", "contrast", "noise", "blur"]
_REMOTE = [o for o in _GENERIC if o != "flip"] + ["dihedral", "jitter", "haze", "dropout", "clouds", "jpeg",
                                                  "resized_crop"]
#: Named op sets.
OP_SETS: dict[str, list[str]] = {
    "generic": _GENERIC,
    "medical": _GENERIC + ["bias", "rician", "ghosting", "spike", "motion"],
    "remote_sensing": _REMOTE,
    "rgb": _REMOTE + ["color", "hsv"],
}


def _op_names(ops: str | Sequence[str]) -> list[str]:
    if isinstance(ops, str):
        return list(OP_SETS[check_choice("ops", ops, sorted(OP_SETS))])
    names = list(ops)
    unknown = [n for n in names if n not in OPS]
    if not names or unknown:
        raise ParameterError("ops", list(ops), f"an op set ({', '.join(sorted(OP_SETS))}) or op names from "
                             f"{', '.join(sorted(OPS))}")
    return names


def _magnitude(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= MAX_MAGNITUDE:
        raise ParameterError(name, value, f"a magnitude in [0, {MAX_MAGNITUDE:g}]")
    return float(value)


class RandAugment(Composite):
    """Apply ``n`` ops drawn uniformly (with replacement) from ``ops``, all at ``magnitude``.

    Params: ``{"ops": [names], "children": [params of each op]}``.

    Args:
        n: Number of ops per call, an integer >= 0 (drawn with replacement).
        magnitude: Strength of every op, in [0, 10] (0 changes nothing).
        ops: An op set (``"generic"``, ``"medical"``, ``"remote_sensing"``, ``"rgb"``) or a list of
            op names from ``domainaug.policy.OPS``.
        p: Probability of applying.

    Example:
        >>> out = RandAugment(n=2, magnitude=5, ops="medical")(sample, generator_for(0))
        >>> len(out.history[-1].params["ops"])
        2
    """

    def __init__(self, n: int = 2, magnitude: float = 9.0, ops: str | Sequence[str] = "generic",
                 p: float = 1.0) -> None:
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ParameterError("n", n, "an integer >= 0")
        self.n, self.magnitude = n, _magnitude("magnitude", magnitude)
        self.ops = ops if isinstance(ops, str) else list(ops)
        self.names = _op_names(ops)
        self.transforms = []
        self._set_p(p)

    def arguments(self) -> dict[str, Any]:
        return {"n": self.n, "magnitude": self.magnitude, "ops": self.ops, "p": self.p}

    def _draw_and_run(self, sample: Sample, generator: torch.Generator, lazy: bool) -> tuple[Sample, dict[str, Any]]:
        picks = [self.names[int(torch.randint(0, len(self.names), (), generator=generator).item())]
                 for _ in range(self.n)]
        out, children = sample, []
        for name in picks:
            out, params = OPS[name](self.magnitude, out.space).step(out, generator, lazy=True)
            children.append(params)
        return self.finish(out, sample, lazy), {"ops": picks, "children": children}

    def walk(self, state: Any, params: dict[str, Any], step: Callable[[Transform, dict[str, Any], Any], Any]) -> Any:
        for name, child in zip(params["ops"], params["children"]):
            state = step(OPS[check_choice("params['ops']", name, self.names)](self.magnitude, state.space),
                         child, state)
        return state

    @classmethod
    def contract_case(cls) -> Case:
        from .testing import Case
        return Case(
            random=lambda s: RandAugment(n=3, magnitude=8, ops="remote_sensing" if s.space.ndim == 2 else "medical"),
            identity=lambda s: RandAugment(n=2, magnitude=0, ops=["identity"]),
            bad=[("magnitude", lambda: RandAugment(magnitude=11)), ("ops", lambda: RandAugment(ops=["warp"])),
                 ("n", lambda: RandAugment(n=-1))])


class TrivialAugment(Composite):
    """Apply one op drawn uniformly from ``ops`` at a magnitude drawn uniformly in ``[0, max_magnitude]``.

    Params: ``{"op": name, "magnitude": m, "params": params of the op}``.

    Args:
        ops: An op set (``"generic"``, ``"medical"``, ``"remote_sensing"``, ``"rgb"``) or a list of
            op names from ``domainaug.policy.OPS``.
        max_magnitude: The magnitude is drawn uniformly in ``[0, max_magnitude]``, at most 10.
        p: Probability of applying.

    Example:
        >>> out = TrivialAugment(ops="remote_sensing")(raster, generator_for(0))
    """

    def __init__(self, ops: str | Sequence[str] = "generic", max_magnitude: float = MAX_MAGNITUDE,
                 p: float = 1.0) -> None:
        self.ops = ops if isinstance(ops, str) else list(ops)
        self.names = _op_names(ops)
        self.max_magnitude = _magnitude("max_magnitude", max_magnitude)
        self.transforms = []
        self._set_p(p)

    def arguments(self) -> dict[str, Any]:
        return {"ops": self.ops, "max_magnitude": self.max_magnitude, "p": self.p}

    def _draw_and_run(self, sample: Sample, generator: torch.Generator, lazy: bool) -> tuple[Sample, dict[str, Any]]:
        name = self.names[int(torch.randint(0, len(self.names), (), generator=generator).item())]
        m = self.max_magnitude * torch.rand((), generator=generator, dtype=torch.float64).item()
        out, params = OPS[name](m, sample.space).step(sample, generator, lazy=True)
        return self.finish(out, sample, lazy), {"op": name, "magnitude": m, "params": params}

    def walk(self, state: Any, params: dict[str, Any], step: Callable[[Transform, dict[str, Any], Any], Any]) -> Any:
        name = check_choice("params['op']", params["op"], self.names)
        return step(OPS[name](_magnitude("params['magnitude']", params["magnitude"]), state.space),
                    params["params"], state)

    @classmethod
    def contract_case(cls) -> Case:
        from .testing import Case
        return Case(
            random=lambda s: TrivialAugment(ops="remote_sensing" if s.space.ndim == 2 else "medical"),
            identity=lambda s: TrivialAugment(ops=["identity"]),
            bad=[("max_magnitude", lambda: TrivialAugment(max_magnitude=-1)), ("ops", lambda: TrivialAugment(ops="x"))])
