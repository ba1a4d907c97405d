"""A small named registry for task kinds and backends; lookups list the known names."""
from __future__ import annotations

import re
from typing import Generic, TypeVar

from perception.errors import RegistryError

__all__ = ["Registry"]

T = TypeVar("T")
_NAME = re.compile(r"[a-z][a-z0-9_]*")


class Registry(Generic[T]):
    """Maps lower_snake_case names to items; registration checks the name once."""

    def __init__(self, what: str) -> None:
        self._what = what
        self._items: dict[str, T] = {}

    def register(self, name: str, item: T) -> T:
        if not _NAME.fullmatch(name):
            raise RegistryError(f"{self._what} name {name!r} must be lower_snake_case")
        if name in self._items:
            raise RegistryError(f"{self._what} {name!r} is already registered")
        self._items[name] = item
        return item

    def get(self, name: str) -> T:
        if name not in self._items:
            raise RegistryError(
                f"unknown {self._what} {name!r}; known: {', '.join(self.names()) or '(none)'}"
            )
        return self._items[name]

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def names(self) -> list[str]:
        return sorted(self._items)
