"""An answer of the agent to an API call, apart from aiohttp: an HTTP status and a JSON body."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Result:
    status: int
    body: dict[str, object]

    @classmethod
    def error(cls, status: int, message: str, **extra: object) -> Result:
        return cls(status, {"error": message, **extra})
