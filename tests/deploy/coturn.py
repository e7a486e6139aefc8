"""Debian's coturn on 127.0.0.1, checking TURN REST API credentials (``use-auth-secret``)."""

from __future__ import annotations

import secrets
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

TURNSERVER = shutil.which("turnserver") or "/usr/bin/turnserver"
REALM = "jupyter-video.test"
RELAY_PORTS = 40  # a small range of our own, far from other engineers' servers


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_relay_range() -> int:
    """The first port of RELAY_PORTS free UDP ports in a row (checked once)."""
    for _ in range(50):
        first = free_udp_port() // RELAY_PORTS * RELAY_PORTS
        if first + RELAY_PORTS > 65535 or first < 20000:
            continue
        try:
            sockets = []
            for port in range(first, first + RELAY_PORTS):
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                sockets.append(sock)
                sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
        return first
    raise RuntimeError("no free range of UDP ports for coturn's relays")


class Coturn:
    """``turnserver`` listening on 127.0.0.1:``port`` (UDP), relaying on 127.0.0.1."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.secret = secrets.token_hex(16)
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        root.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"turn:127.0.0.1:{self.port}?transport=udp"

    @property
    def log_path(self) -> Path:
        return self.root / "turnserver.log"

    def start(self, timeout: float = 10.0) -> Coturn:
        self.port = free_udp_port()
        first = free_relay_range()
        self.process = subprocess.Popen(
            [
                TURNSERVER, "-n",  # no config file: everything is on this line
                "--listening-ip", "127.0.0.1", "--relay-ip", "127.0.0.1",
                "--listening-port", str(self.port),
                "--min-port", str(first), "--max-port", str(first + RELAY_PORTS - 1),
                "--use-auth-secret", "--static-auth-secret", self.secret, "--realm", REALM,
                # The SFU's candidates are on 127.0.0.1; coturn refuses loopback peers
                # unless told (a public coturn must not have this).
                "--allow-loopback-peers",
                "--no-tls", "--no-dtls", "--no-cli", "--no-tcp-relay", "--fingerprint",
                "--log-file", str(self.log_path), "--simple-log", "--no-stdout-log",
                "--verbose",
                "--pidfile", str(self.root / "turnserver.pid"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"turnserver exited early:\n{self.log()[-3000:]}")
            if "Total General servers" in self.log() or self._listening():
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"turnserver did not start in {timeout}s:\n{self.log()[-3000:]}")

    def _listening(self) -> bool:
        return f"127.0.0.1:{self.port}" in self.log() and "IPv4. UDP listener opened" in self.log()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)
