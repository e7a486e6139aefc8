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


UDP_HERE, UDP_THERE = "10.231.9.1", "10.231.9.2"
"""The veth pair's addresses (:meth:`Bridge.give_udp_path`): the SFU's, the browser's."""


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
        extra = ["--veth", self.veth] if self.veth else []
        return ["unshare", "-n", sys.executable, str(Path(__file__).resolve()),
                "--port", str(self.port), "--socket", self.path, *extra, "--", *command]

    veth: str | None = None

    def give_udp_path(self, name: str) -> None:
        """Also give the namespace a veth pair to this one (``name`` here, 10.231.9.1;
        10.231.9.2 there): a UDP path, which :meth:`cut_udp_path` takes away while the
        bridged TCP goes on. Call before :meth:`wrap`; then :meth:`wait_for_udp_path`."""
        self.veth = name

    def wait_for_udp_path(self, timeout: float = 30.0) -> None:
        """Address and bring up this side of the veth pair once the namespace made it."""
        import time

        assert self.veth is not None
        deadline = time.monotonic() + timeout
        while subprocess.run(["ip", "link", "show", self.veth], capture_output=True
                             ).returncode != 0:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.veth} never appeared")
            time.sleep(0.1)
        subprocess.run(["ip", "addr", "add", f"{UDP_HERE}/24", "dev", self.veth], check=True)
        subprocess.run(["ip", "link", "set", self.veth, "up"], check=True)

    def cut_udp_path(self) -> None:
        assert self.veth is not None
        subprocess.run(["ip", "link", "set", self.veth, "down"], check=True)

    def close(self) -> None:
        if self.veth is not None:
            subprocess.run(["ip", "link", "del", self.veth], capture_output=True)
        self._server.close()  # type: ignore[attr-defined]
        self._loop.stop()
        self._directory.cleanup()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--socket", required=True)
    parser.add_argument("--veth")
    parser.add_argument("command", nargs="+")
    args = parser.parse_args()
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    if args.veth:  # a UDP path out: this end here, the other moved to PID 1's namespace
        inside = args.veth + "i"
        for step in (["ip", "link", "add", inside, "type", "veth", "peer", "name", args.veth],
                     ["ip", "link", "set", args.veth, "netns", "1"],
                     ["ip", "addr", "add", f"{UDP_THERE}/24", "dev", inside],
                     ["ip", "link", "set", inside, "up"]):
            subprocess.run(step, check=True)
    loop = _LoopThread()

    async def serve() -> asyncio.AbstractServer:
        return await asyncio.start_server(
            lambda r, w: _splice(r, w, lambda: asyncio.open_unix_connection(args.socket)),
            "127.0.0.1", args.port)

    loop.run(serve())
    return subprocess.call(args.command)


if __name__ == "__main__":
    sys.exit(main())
