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
            if old is not None and old is not obj and _identity(old) != _identity(obj):
                raise ValueError(f"{self.kind} {name!r} is already registered to {old!r}")
            self._entries[name] = obj  # the same definition again (a re-run notebook cell) replaces the old one
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


def _identity(obj: object) -> tuple[str, str] | None:
    """Where a function or class is defined: a re-executed definition (a notebook cell run twice) has the same
    module and qualified name, a different object with the same name has not."""
    module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    return (module, qualname) if module and qualname else None
