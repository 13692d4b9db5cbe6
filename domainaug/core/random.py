"""Explicit generators derived from ``(seed, epoch, index)``; no global random state anywhere."""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["generator_for", "child_seed"]


def generator_for(seed: int, epoch: int = 0, index: int = 0) -> torch.Generator:
    """A CPU ``torch.Generator`` for one sample of one epoch. Different ``(seed, epoch, index)``
    triples give independent streams (numpy's ``SeedSequence`` hashing), so DataLoader workers never
    repeat each other and the output does not depend on worker count or order."""
    for name, v in (("seed", seed), ("epoch", epoch), ("index", index)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
            raise ValueError(f"{name}={v!r} is invalid: expected a non-negative integer")
    state = np.random.SeedSequence([int(seed), int(epoch), int(index)]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


def child_seed(generator: torch.Generator) -> int:
    """A seed for a transform that needs many random numbers (noise): recorded in params, and
    expanded in ``apply`` on the CPU so that the result does not depend on the device."""
    return int(torch.randint(0, 2**62, (), generator=generator).item())
