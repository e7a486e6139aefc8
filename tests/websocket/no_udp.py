"""A network namespace without a UDP path, for browsers that must do without one.

``Bridge(port).wrap(command)`` runs ``command`` (a browser driver) in a fresh
network namespace whose only interface is loopback, where TCP to
``127.0.0.1:port`` is carried over a Unix socket (sockets on the file system
cross namespaces) to the server on the real ``127.0.0.1:port``. Nothing else
leaves the namespace: no UDP datagram of the browser reaches the SFU, as on
Binder, where only the hub's HTTP proxy reaches a pod.

Run inside the namespace as ``python no_udp.py --port P --socket S -- command...``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest


def _namespaces_allowed() -> bool:
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return False
    try:
        return subprocess.run(["unshare", "-n", "ip", "link", "set", "lo", "up"],
                              capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


requires_namespaces = pytest.mark.skipif(
    not _namespaces_allowed(),
    reason="needs unshare -n and ip (util-linux, iproute2) and CAP_SYS_ADMIN: run as root",
)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


async def _splice(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                  open_other: object) -> None:
    try:
        other_reader, other_writer = await open_other()  # type: ignore[operator]
    except OSError:
        writer.close()
        return
    await asyncio.gather(_pipe(reader, other_writer), _pipe(other_reader, writer))


class _LoopThread:
    """An asyncio loop of its own, serving one listener."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coroutine: object) -> object:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(30)  # type: ignore[arg-type]

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


class Bridge:
    """The outside end: the Unix socket that leads to ``127.0.0.1:port``."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._directory = tempfile.TemporaryDirectory(prefix="no-udp-")
        self.path = str(Path(self._directory.name) / "bridge.sock")
        self._loop = _LoopThread()

        async def serve() -> asyncio.AbstractServer:
            return await asyncio.start_unix_server(
                lambda r, w: _splice(r, w, lambda: asyncio.open_connection("127.0.0.1", port)),
                self.path)

        self._server = self._loop.run(serve())

    def wrap(self, command: list[str]) -> list[str]:
        """``command`` run in a namespace without UDP, TCP to the port bridged."""
        return ["unshare", "-n", sys.executable, str(Path(__file__).resolve()),
                "--port", str(self.port), "--socket", self.path, "--", *command]

    def close(self) -> None:
        self._server.close()  # type: ignore[attr-defined]
        self._loop.stop()
        self._directory.cleanup()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--socket", required=True)
    parser.add_argument("command", nargs="+")
    args = parser.parse_args()
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    loop = _LoopThread()

    async def serve() -> asyncio.AbstractServer:
        return await asyncio.start_server(
            lambda r, w: _splice(r, w, lambda: asyncio.open_unix_connection(args.socket)),
            "127.0.0.1", args.port)

    loop.run(serve())
    return subprocess.call(args.command)


if __name__ == "__main__":
    sys.exit(main())
