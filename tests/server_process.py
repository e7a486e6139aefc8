"""A real Jupyter server process with jupyter_video, for tests that talk to it over HTTP."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests

TOKEN = "test-jupyter-token"
REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """``jupyter server`` on 127.0.0.1 with its own data, runtime and config dirs.

    ``root`` holds everything the server writes, so a restart on the same
    ``root`` finds the same credentials and store.
    """

    def __init__(
        self,
        root: Path,
        video_config: dict[str, Any] | None = None,
        base_url: str = "/jv/",
        driver: bool = False,
        server_config: dict[str, Any] | None = None,
    ) -> None:
        self.root = root
        self.base_url = base_url
        self.video_config = video_config or {}
        self.driver = driver
        self.server_config = server_config or {}
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0
        for name in ("data", "runtime", "config", "notebooks"):
            (root / name).mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        """The server's base URL, ending in ``/``."""
        return f"http://127.0.0.1:{self.port}{self.base_url}"

    @property
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            JUPYTER_DATA_DIR=str(self.root / "data"),
            JUPYTER_RUNTIME_DIR=str(self.root / "runtime"),
            JUPYTER_CONFIG_DIR=str(self.root / "config"),
            JUPYTER_PLATFORM_DIRS="1",
        )
        for name in list(env):
            if name.startswith("JUPYTER_VIDEO_"):
                del env[name]
        return env

    config_file = "jupyter_server_config.json"
    """The config file (in the config dir) the server's command reads."""

    def command(self) -> list[str]:
        """The server's command line (a subclass runs another server)."""
        return [sys.executable, "-m", "jupyter_server"]

    def credentials(self) -> dict[str, str]:
        path = self.root / "data" / "jupyter_video" / "credentials.json"
        return json.loads(path.read_text())  # type: ignore[no-any-return]

    def start(self, timeout: float = 30.0) -> ServerProcess:
        self.port = free_port()
        config = {
            "ServerApp": {
                "ip": "127.0.0.1",
                "port": self.port,
                "port_retries": 0,
                "open_browser": False,
                "allow_root": True,
                "jpserver_extensions": {"tests.registry_driver": self.driver},
                "base_url": self.base_url,
                "root_dir": str(self.root / "notebooks"),
                "IdentityProvider": {"token": TOKEN},
                **self.server_config,
            },
            "IdentityProvider": {"token": TOKEN},
            "VideoApp": {
                "store_url": "sqlite:///" + str(self.root / "store.sqlite"),
                **self.video_config,
            },
        }
        (self.root / "config" / self.config_file).write_text(json.dumps(config))
        log = open(self.root / "server.log", "ab")  # noqa: SIM115 - lives as long as the process
        self.process = subprocess.Popen(
            self.command(),
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log_text()[-4000:]}")
            try:
                response = requests.get(
                    f"{self.url}api/status",
                    headers={"Authorization": f"token {TOKEN}"},
                    timeout=2,
                )
                if response.status_code == 200:
                    return self
            except requests.ConnectionError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"server did not start in {timeout}s:\n{self.log_text()[-4000:]}")

    def stop(self, kill: bool = False) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)

    def drive(self, action: str, **body: Any) -> dict[str, Any]:
        """Call the test-only registry driver (see registry_driver.py)."""
        response = requests.post(
            f"{self.url}video-test/{action}",
            json=body,
            headers={"Authorization": f"token {TOKEN}"},
            timeout=10,
        )
        response.raise_for_status()
        return response.json()  # type: ignore[no-any-return]

    def log_text(self) -> str:
        path = self.root / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""
