"""Test-time augmentation: predict on N replayable augmentations of an input, map every prediction
back onto the input grid through the inverse of its spatial record, and aggregate.

The inverse needs no data: ``domainaug.Invert`` rebuilds the spatial map from the records and turns
it around (affines exactly; elastic fields by a fixed point on their lattice). Predictions go back
through the one resampler: probabilities with linear interpolation, label maps
with the LABEL rule (never a new label). Voxels that an augmentation did not see (cropped away,
rotated out of view) do not vote: ``count`` says how many views covered each voxel.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from ..core.params import check_choice, check_positive_int
from ..core.random import generator_for
from ..core.sample import Sample
from ..core.transform import Transform
from ..errors import ParameterError
from ..invert import Invert

__all__ = ["TestTimeAugmentation"]


class TestTimeAugmentation:
    """``n`` augmentations of an input, each drawn from ``generator_for(seed, 0, i)``.

    Args:
        pipeline: The augmentation (usually mild: flips, small rotations, intensity jitter).
        n: Number of augmented views.
        seed: Seed of the views; the records of view ``i`` are in the result, so it replays.
        kind: ``"probabilities"`` (predictions ``(K, *spatial)`` floats, mapped back linearly) or
            ``"labels"`` (``(1, *spatial)`` integer maps, mapped back with the LABEL rule).

    Calling it with ``(sample, predict)``, where ``predict(augmented_sample) -> tensor`` on the
    augmented grid, returns a dict on the input grid:
    ``"mean"`` (K, ...) mean probability (or ``"vote"`` (1, ...) the majority label), ``"std"``
    (K, ...) the spread across views (or ``"agreement"`` (1, ...) the share of views voting for the
    majority), ``"count"`` (1, ...) views covering each voxel, and ``"records"`` per view.
    """

    __test__ = False   # not a pytest class

    def __init__(self, pipeline: Transform, n: int = 8, seed: int = 0, kind: str = "probabilities") -> None:
        if not isinstance(pipeline, Transform):
            raise ParameterError("pipeline", type(pipeline).__name__, "a domainaug Transform")
        self.pipeline, self.n = pipeline, check_positive_int("n", n)
        self.seed = check_positive_int("seed", seed, 0)
        self.kind = check_choice("kind", kind, ("probabilities", "labels"))

    def view(self, sample: Sample, i: int) -> Sample:
        """The ``i``-th augmented view of ``sample``."""
        return self.pipeline(sample, generator_for(self.seed, 0, i))

    def back(self, prediction: torch.Tensor, sample: Sample, records: list,
             valid: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """A prediction on the grid of the view made by ``records`` from ``sample``, resampled onto
        ``sample``'s grid; returns it and the bool map of input voxels the view covered (where the
        view's ``valid`` (1, ...) map, all true by default, was true)."""
        if self.kind == "labels" and (prediction.dtype.is_floating_point or prediction.dim() < 1
                                      or prediction.shape[0] != 1):
            raise ParameterError("prediction", f"{tuple(prediction.shape)} {prediction.dtype}",
                                 "a (1, *spatial) integer label map for kind='labels'")
        data = prediction if self.kind == "labels" else prediction.to(torch.float32)
        return Invert(records, sample.space).with_coverage(
            data, mode="nearest" if self.kind == "labels" else "linear", valid=valid)

    def __call__(self, sample: Sample, predict: Callable[[Sample], torch.Tensor]) -> dict[str, Any]:
        backs, covers, records = [], [], []
        sample = sample.with_valid()     # so that every view marks what it brought in from outside
        for i in range(self.n):
            view = self.view(sample, i)
            new = view.history[len(sample.history):]
            seen = view[view.valid_name] if view.valid_name is not None else None
            back, covered = self.back(torch.as_tensor(predict(view)), sample, new, seen)
            backs.append(back)
            covers.append(covered)
            records.append([r.to_dict() for r in new])
        cover = torch.stack(covers)                          # (n, 1, *spatial)
        count = cover.sum(0)
        result: dict[str, Any] = {"count": count, "records": records}
        if self.kind == "probabilities":
            stack = torch.stack(backs).to(torch.float64)
            w = cover.to(torch.float64)
            denom = count.clamp(min=1).to(torch.float64)
            mean = (stack * w).sum(0) / denom
            var = (((stack - mean) ** 2) * w).sum(0) / denom
            result["mean"], result["std"] = mean.float(), var.sqrt().float()
        else:
            stack = torch.stack(backs)[:, 0].long()          # (n, *spatial)
            k = int(stack.max()) + 1
            votes = torch.zeros((k,) + tuple(stack.shape[1:]), dtype=torch.int64, device=stack.device)
            votes.scatter_add_(0, stack, cover[:, 0].long())
            best = votes.max(0)
            result["vote"] = best.indices[None].to(backs[0].dtype)
            result["agreement"] = (best.values.double() / count[0].clamp(min=1).double())[None].float()
        return result
