"""Waiting in async tests for what the system under test makes true."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any


async def wait_until(predicate: Callable[[], Any], timeout: float = 30.0, what: str = "",
                     every: float = 0.1) -> Any:
    """The first true value of ``predicate()``, polled every ``every`` seconds on the
    running loop (so peers on it live on); AssertionError naming ``what`` (else the
    predicate) when ``timeout`` seconds pass without one. ``predicate`` must not block:
    run blocking checks with asyncio.to_thread inside it."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout}s: {what or predicate}")
        await asyncio.sleep(every)
