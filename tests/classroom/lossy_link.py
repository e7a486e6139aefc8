"""A participant behind a lossy uplink: a network namespace joined to this one.

``LossyLink(loss=0.15)`` makes a namespace and a point-to-point link to it
(``10.233.N.2`` there, ``10.233.N.1`` here). With the kernel's sch_netem, the
link is a veth pair and ``tc qdisc ... netem loss`` drops the namespace's
outgoing packets; without it (this project's CI machines lack the module) the
link is two TUN devices and a thread carries every packet across, dropping
that share of the UDP datagrams leaving the namespace (TCP, i.e. signaling,
passes). TCP to the server is forwarded from ``10.233.N.1:port`` to the
server's ``127.0.0.1:port``: the server itself stays on loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import random
import select
import shutil
import struct
import subprocess
import threading
from typing import Any

from ..websocket.no_udp import _LoopThread, _splice

TUNSETIFF, IFF_TUN, IFF_NO_PI = 0x400454CA, 0x0001, 0x1000
UDP = 17


def sh(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(command), capture_output=True, text=True, check=False)


def namespaces_allowed() -> bool:
    if shutil.which("ip") is None or not os.path.exists("/dev/net/tun"):
        return False
    probe = f"jvcl-probe-{os.getpid()}"
    try:
        return sh("ip", "netns", "add", probe).returncode == 0
    finally:
        sh("ip", "netns", "del", probe)


def netem_available(namespace: str) -> bool:
    return sh("ip", "netns", "exec", namespace, "tc", "qdisc", "add", "dev", "lo", "root",
              "netem", "delay", "1ms").returncode == 0


class LossyLink:
    """The namespace ``name``, its address ``there`` and this side's ``here``."""

    def __init__(self, loss: float, seed: int = 17) -> None:
        index = os.getpid() % 200 + 20
        self.name = f"jvcl-{os.getpid()}"
        self.here, self.there = f"10.233.{index}.1", f"10.233.{index}.2"
        self.loss = loss
        self.dropped = 0
        self.carried = 0
        self._random = random.Random(seed)
        self._stopping = False
        self._fds: dict[str, int] = {}
        self._loop: _LoopThread | None = None
        self._servers: list[Any] = []
        self.emulation = ""
        self._make()

    def _run(self, *command: str) -> None:
        done = sh(*command)
        if done.returncode != 0:
            self.close()
            raise RuntimeError(f"{' '.join(command)}: {done.stderr.strip()}")

    def _make(self) -> None:
        sh("ip", "netns", "del", self.name)
        self._run("ip", "netns", "add", self.name)
        self._run("ip", "-n", self.name, "link", "set", "lo", "up")
        outside, inside = f"jvclh{os.getpid() % 100000}", f"jvcln{os.getpid() % 100000}"
        if netem_available(self.name):
            sh("ip", "netns", "exec", self.name, "tc", "qdisc", "del", "dev", "lo", "root")
            self._run("ip", "link", "add", outside, "type", "veth", "peer", "name", inside)
            self._devices = [outside]
            self.emulation = f"veth + tc netem loss {self.loss:.0%}"
        else:
            for device in (outside, inside):
                fd = os.open("/dev/net/tun", os.O_RDWR)
                fcntl.ioctl(fd, TUNSETIFF,
                            struct.pack("16sH", device.encode(), IFF_TUN | IFF_NO_PI))
                self._fds[device] = fd
            self._devices = []
            self.emulation = f"TUN pair, {self.loss:.0%} of outgoing UDP dropped in user space"
        self._run("ip", "link", "set", inside, "netns", self.name)
        self._run("ip", "addr", "add", self.here, "peer", self.there, "dev", outside)
        self._run("ip", "-n", self.name, "addr", "add", self.there, "peer", self.here,
                  "dev", inside)
        self._run("ip", "link", "set", outside, "up")
        self._run("ip", "-n", self.name, "link", "set", inside, "up")
        if self._fds:
            for source, target, lossy in ((inside, outside, True), (outside, inside, False)):
                threading.Thread(target=self._carry, args=(self._fds[source], self._fds[target],
                                                           lossy), daemon=True).start()
        else:
            self._run("ip", "netns", "exec", self.name, "tc", "qdisc", "add", "dev", inside,
                      "root", "netem", "loss", f"{self.loss * 100:.0f}%")

    def _carry(self, source: int, target: int, lossy: bool) -> None:
        while not self._stopping:
            try:
                if not select.select([source], [], [], 0.5)[0]:
                    continue
                packet = os.read(source, 65536)
            except (OSError, ValueError):
                return
            if lossy and len(packet) > 9 and packet[9] == UDP and (
                    self._random.random() < self.loss):
                self.dropped += 1
                continue
            self.carried += 1
            with contextlib.suppress(OSError):
                os.write(target, packet)

    def forward_tcp(self, port: int) -> None:
        """TCP to ``here:port`` reaches the server on ``127.0.0.1:port``."""
        if self._loop is None:
            self._loop = _LoopThread()

        async def serve() -> Any:
            return await asyncio.start_server(
                lambda r, w: _splice(r, w, lambda: asyncio.open_connection("127.0.0.1", port)),
                self.here, port)

        self._servers.append(self._loop.run(serve()))

    def command(self, *command: str) -> list[str]:
        return ["ip", "netns", "exec", self.name, *command]

    def close(self) -> None:
        self._stopping = True
        for server in self._servers:
            server.close()
        if self._loop is not None:
            self._loop.stop()
        for fd in self._fds.values():
            with contextlib.suppress(OSError):
                os.close(fd)
        for device in self._devices:
            sh("ip", "link", "del", device)
        sh("ip", "netns", "del", self.name)
