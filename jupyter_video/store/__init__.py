"""Stores for the object model: in memory, SQLite (default), Redis (several nodes)."""

from __future__ import annotations

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
        return SQLiteStore(Path(url[len("sqlite:///") :]))
    raise ValueError(f"store_url {url!r} is not memory:// or sqlite:///<absolute path>")
