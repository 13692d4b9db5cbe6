"""The errors domainaug raises. Each names the argument or layer, the value, and what was allowed."""

from __future__ import annotations

from typing import Any

__all__ = ["DomainaugError", "ParameterError", "ShapeError", "SpaceMismatchError", "NoDataError", "SampleError",
           "MissingDependencyError"]


class DomainaugError(ValueError):
    """Base class: every domainaug error is also a ``ValueError``."""


class ParameterError(DomainaugError):
    """A constructor or function argument is out of its allowed range or of the wrong kind."""

    def __init__(self, name: str, value: Any, expected: str) -> None:
        self.name, self.value, self.expected = name, value, expected
        super().__init__(f"{name}={value!r} is invalid: expected {expected}")


class ShapeError(DomainaugError):
    """An array has the wrong number of dimensions or the wrong shape."""


class SpaceMismatchError(DomainaugError):
    """Two grids (image and label, layer and space) that must agree do not."""


class NoDataError(DomainaugError):
    """A layer, file or region holds no valid pixel."""


class SampleError(DomainaugError):
    """Loading or augmenting one item of a dataset failed; the message names the item's index and
    path and the original error, which is chained as ``__cause__`` (one string argument, so that a
    DataLoader worker can re-raise it in the main process)."""


class MissingDependencyError(ImportError):
    """A feature needs an optional dependency that is not installed; the message names the extra
    that installs it (``pip install 'domainaug[plot]'``). An ``ImportError``, not a ``ValueError``."""

    def __init__(self, module: str, extra: str, feature: str) -> None:
        self.module, self.extra, self.feature = module, extra, feature
        super().__init__(f"{feature} needs {module}, which is not installed: pip install 'domainaug[{extra}]'",
                         name=module)
