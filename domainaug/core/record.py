"""``ParamRecord``: what a transform did, enough to replay it without the original object."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["ParamRecord"]


@dataclass(frozen=True)
class ParamRecord:
    """``transform`` (registered class name), its ``config`` (constructor arguments) and the drawn
    ``params``; all JSON-ready."""

    transform: str
    config: dict[str, Any]
    params: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"transform": self.transform, "config": self.config, "params": self.params}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ParamRecord:
        return cls(d["transform"], dict(d["config"]), dict(d["params"]))
