"""Python side of page_driver.mjs: one headless Chromium page, driven command by command."""

from __future__ import annotations

import contextlib
import json
import queue
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


class DriverError(RuntimeError):
    """A command failed in the page (the message is Playwright's), or the driver died."""


class PageDriver:
    """``node page_driver.mjs``: ``call(op, **fields)`` waits for the command's answer.

    Console lines and page errors are kept in ``console`` for failure messages.
    The Node process stops by itself after ``timeout`` seconds. ``wrap`` changes the
    command that starts it (e.g. into a network namespace).
    """

    def __init__(self, timeout: float = 150.0, size: str = "1280x900",
                 wrap: Callable[[list[str]], list[str]] | None = None) -> None:
        command = ["node", str(HERE / "page_driver.mjs"), "--timeout", str(int(timeout * 1000)),
                   "--size", size]
        self.process = subprocess.Popen(
            wrap(command) if wrap is not None else command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.console: list[dict[str, Any]] = []
        self._answers: queue.Queue[dict[str, Any]] = queue.Queue()
        self._next_id = 0
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            try:
                message = json.loads(line)
            except ValueError:
                continue
            if "id" in message:
                self._answers.put(message)
            else:
                self.console.append(message)
        self._answers.put({"id": None, "ok": False, "error": "the page driver exited"})

    def call(self, op: str, wait: float = 60.0, **fields: Any) -> Any:
        """Run one command; its result, or DriverError with the page's console tail."""
        self._next_id += 1
        command = {"id": self._next_id, "op": op, **fields}
        assert self.process.stdin is not None
        try:
            self.process.stdin.write(json.dumps(command) + "\n")
            self.process.stdin.flush()
        except (BrokenPipeError, OSError) as exc:
            raise DriverError(f"the page driver is gone: {exc}\n{self.console_tail()}") from exc
        while True:
            try:
                answer = self._answers.get(timeout=wait)
            except queue.Empty:
                raise DriverError(f"{op}: no answer in {wait}s\n{self.console_tail()}") from None
            if answer["id"] in (self._next_id, None):
                break
        if not answer["ok"]:
            raise DriverError(f"{op} {fields}: {answer['error']}\n{self.console_tail()}")
        return answer.get("result")

    def eval(self, expression: str, arg: Any = None) -> Any:
        """Evaluate ``expression`` (a JS function taking ``arg``) in the page."""
        return self.call("eval", expression=expression, arg=arg)

    def wait_for(self, expression: str, arg: Any = None, timeout: float = 30.0) -> Any:
        """Wait until the JS function ``expression(arg)`` returns something truthy."""
        return self.call("waitFunction", wait=timeout + 10, expression=expression, arg=arg,
                         timeout=int(timeout * 1000))

    def console_tail(self, lines: int = 30) -> str:
        return "\n".join(json.dumps(line) for line in self.console[-lines:])

    def close(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(DriverError):
                self.call("quit", wait=10)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
