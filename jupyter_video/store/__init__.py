"""Stores for the object model: in memory, SQLite (default), Redis (several nodes)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from .base import Query, Store
from .memory import MemoryStore
from .sqlite import SQLiteStore

__all__ = ["MemoryStore", "Query", "SQLiteStore", "Store", "open_store"]


def open_store(url: str) -> Store:
    """A store for ``url``: ``memory://``, ``sqlite:///relative.sqlite`` or ``sqlite:////abs.sqlite``."""
    if url == "memory://":
        return MemoryStore()
    if url.startswith("sqlite:///"):
        path = Path(url[len("sqlite:///") :])
        try:
            return SQLiteStore(path)
        except (OSError, sqlite3.Error) as error:
            raise ValueError(
                f"store_url {url!r} cannot be opened ({error}): give a path in a directory "
                "this server may create and write"
            ) from None
    raise ValueError(f"store_url {url!r} is not memory:// or sqlite:///<absolute path>")
