"""A small typed registry for user-facing choices (advantage estimators, losses, corrections, rewards, tasks).

Registration is a decorator; re-registering a name with a different object raises; an unknown name raises
with the list of valid ones. Use it only where users truly choose among interchangeable entries with one
signature; models, trainers, optimizers and samplers use plain constructors.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")

__all__ = ["Registry"]


class Registry(Generic[T]):
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        if name != name.lower() or " " in name:
            raise ValueError(f"{self.kind} name {name!r} must be lowercase with no spaces")

        def deco(obj: T) -> T:
            old = self._entries.get(name)
            if old is not None and old is not obj:
                raise ValueError(f"{self.kind} {name!r} is already registered to {old!r}")
            self._entries[name] = obj
            return obj

        return deco

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            raise KeyError(f"unknown {self.kind} {name!r}; expected one of {self.names()}") from None

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names()})"
