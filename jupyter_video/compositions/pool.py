"""A pool of composer processes: at most ``concurrency`` compositions run at once, each in
a process of its own (``python -m jupyter_video.compositions``), at lower priority.

A process per composition, not a long-lived worker: a composition's memory goes back
when it ends, and one that crashes the decoder takes nothing else with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from .composer import CompositionError, Job, Result

log = logging.getLogger(__name__)


class ComposerPool:
    """Runs composition jobs in child processes, ``concurrency`` at a time."""

    def __init__(self, concurrency: int = 1) -> None:
        if concurrency < 1:
            raise ValueError("composition concurrency must be at least 1")
        self.concurrency = concurrency
        self._slots = asyncio.Semaphore(concurrency)
        self._running: set[asyncio.subprocess.Process] = set()

    async def run(self, job: Job, progress: Callable[[float], None] | None = None,
                  started: Callable[[], None] | None = None) -> Result:
        """Compose ``job`` once a slot is free (``started`` is called then); raises
        :class:`CompositionError` saying why it failed."""
        async with self._slots:
            if started is not None:
                started()
            with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as spec:
                spec.write(job.to_json())
            try:
                return await self._run(Path(spec.name), progress)
            finally:
                Path(spec.name).unlink(missing_ok=True)

    async def _run(self, spec: Path, progress: Callable[[float], None] | None) -> Result:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "jupyter_video.compositions", str(spec),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        self._running.add(process)
        outcome: dict[str, object] = {}
        try:
            assert process.stdout is not None and process.stderr is not None
            errors = asyncio.ensure_future(process.stderr.read())
            async for line in process.stdout:
                message = json.loads(line)
                if "progress" in message and progress is not None:
                    progress(float(message["progress"]))
                outcome.update(message)
            await process.wait()
            stderr = (await errors).decode(errors="replace")
        finally:
            self._running.discard(process)
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        result = outcome.get("result")
        if process.returncode == 0 and isinstance(result, dict):
            return Result(float(result["duration"]), int(result["size"]))
        reason = outcome.get("error") or stderr.strip()[-500:] or f"exit {process.returncode}"
        raise CompositionError(str(reason))

    async def close(self) -> None:
        """Stop every running composer (the server is stopping)."""
        for process in list(self._running):
            with contextlib.suppress(ProcessLookupError):
                process.kill()
        for process in list(self._running):
            await process.wait()
