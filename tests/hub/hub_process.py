"""A real JupyterHub with the video service, on 127.0.0.1, for the hub tests.

The hub runs the README's "Deploy" config block as written (only its two
example ports swapped for free ones), plus what a test hub needs:
DummyAuthenticator, SimpleLocalProcessSpawner, users ``teacher`` (group
``teachers``), ``s1`` and ``s2`` (group ``students``), configurable-http-proxy
from tests/hub/node_modules, everything it writes under one directory, and a
``tests`` service whose token administers users and servers. Every process the
hub started (proxy, service, single-user servers and their kernels) is found by
PID and stopped at the end.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests

from ..server_process import REPO, free_port

HERE = Path(__file__).resolve().parent
PROXY = HERE / "node_modules" / ".bin" / "configurable-http-proxy"
ADMIN_TOKEN = "hub-tests-admin-token"
USERS = {"teacher": ["teachers"], "s1": ["students"], "s2": ["students"]}
SERVICE = "video"
README_BLOCK = re.compile(r"<!-- hub-config -->\s*```python\n(.*?)```\s*<!-- /hub-config -->",
                          re.DOTALL)
EXAMPLE_PUBLIC_URL = "http://127.0.0.1:8000"
EXAMPLE_SERVICE_PORT = "10101"


class HubError(RuntimeError):
    """The hub or its video service did not come up; the message quotes their log."""


def readme_config() -> str:
    """The config block of README.md's Deploy section, exactly as written there."""
    match = README_BLOCK.search((REPO / "README.md").read_text())
    if match is None:
        raise AssertionError("README.md has no <!-- hub-config --> block")
    return match.group(1)


def missing_prerequisites() -> list[str]:
    missing = []
    if not PROXY.exists():
        missing.append("tests/hub/node_modules (cd tests/hub && npm ci)")
    try:
        import jupyterhub  # noqa: F401
    except ImportError:
        missing.append("jupyterhub (pip install -e '.[test]')")
    return missing


TEST_CONFIG = """
# -- the test hub around the README's block ------------------------------------
import json, sys
root = {root!r}
c.JupyterHub.hub_bind_url = "http://127.0.0.1:{hub_port}"
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{proxy_api_port}"
c.ConfigurableHTTPProxy.command = [{proxy!r}]
c.ConfigurableHTTPProxy.pid_file = root + "/proxy.pid"
c.JupyterHub.db_url = "sqlite:///" + root + "/hub.sqlite"
c.JupyterHub.cookie_secret_file = root + "/cookie_secret"
c.JupyterHub.pid_file = root + "/hub.pid"
c.JupyterHub.authenticator_class = "dummy"
c.JupyterHub.spawner_class = "simple"
c.SimpleLocalProcessSpawner.home_dir_template = root + "/home/{{username}}"
c.Spawner.args = ["--allow-root"]
c.Spawner.default_url = "/lab"
c.Spawner.http_timeout = 60
c.Spawner.start_timeout = 90
c.Authenticator.allowed_users = set({users!r})
c.JupyterHub.load_groups = {groups!r}
c.JupyterHub.services.append({{"name": "tests", "api_token": {admin_token!r}}})
c.JupyterHub.load_roles.append({{
    "name": "tests",
    "scopes": ["admin:users", "admin:servers", "tokens", "read:users", "list:users",
               "admin:groups", "access:services", "access:servers"],
    "services": ["tests"],
}})
video = c.JupyterHub.services[0]
video["command"] = video["command"] + {service_args!r}
video["environment"] = {{"JUPYTER_DATA_DIR": root + "/service-data",
                        "JUPYTER_RUNTIME_DIR": root + "/service-runtime",
                        "JUPYTER_CONFIG_DIR": root + "/service-config"}}
"""

# Loopback media (aiortc leaves 127.0.0.1 out by default) and fast activity posts.
SERVICE_ARGS = [
    "--VideoApp.ice_host_addresses=127.0.0.1",  # a list: one option per address
    "--HubVideoApp.activity_interval=1",
    *(["--ServerApp.allow_root=True"] if os.getuid() == 0 else []),  # CI runs as root
]


class Hub:
    """``jupyterhub`` in a subprocess; ``root`` holds its database, logs and homes."""

    def __init__(self, root: Path, service_args: list[str] | None = None) -> None:
        self.root = root
        self.service_args = SERVICE_ARGS + list(service_args or [])
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.service_port = 0
        self.started_in = 0.0
        self.known_pids: set[int] = set()
        root.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        """The hub as browsers reach it (the proxy), ending in ``/``."""
        return f"http://127.0.0.1:{self.port}/"

    @property
    def service_url(self) -> str:
        return f"{self.url}services/{SERVICE}/"

    def write_config(self) -> Path:
        self.port, self.service_port = free_port(), free_port()
        block = readme_config()
        for example in (EXAMPLE_PUBLIC_URL, EXAMPLE_SERVICE_PORT):
            assert block.count(example) == 1, f"README block lost its example {example}"
        block = block.replace(EXAMPLE_PUBLIC_URL, f"http://127.0.0.1:{self.port}")
        block = block.replace(EXAMPLE_SERVICE_PORT, str(self.service_port))
        groups: dict[str, dict[str, list[str]]] = {}
        for user, names in USERS.items():
            for group in names:
                groups.setdefault(group, {"users": []})["users"].append(user)
        for user in USERS:
            (self.root / "home" / user).mkdir(parents=True, exist_ok=True)
        config = self.root / "jupyterhub_config.py"
        config.write_text(block + TEST_CONFIG.format(
            root=str(self.root), hub_port=free_port(), proxy_api_port=free_port(),
            proxy=str(PROXY), users=sorted(USERS), groups=groups, admin_token=ADMIN_TOKEN,
            service_args=self.service_args,
        ))
        return config

    @property
    def env(self) -> dict[str, str]:
        env = {name: value for name, value in os.environ.items()
               if not name.startswith(("JUPYTER_VIDEO_", "JUPYTERHUB_"))}
        # jupyterhub-singleuser, jupyter-video-hub and the proxy's node from this venv
        env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '/usr/bin:/bin')}"
        return env

    def start(self, timeout: float = 90.0) -> Hub:
        config = self.write_config()
        log = open(self.root / "hub.log", "ab")  # noqa: SIM115 - lives as long as the process
        started = time.monotonic()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "jupyterhub", "-f", str(config)],
            env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=self.root,
            start_new_session=True,
        )
        self.known_pids.add(self.process.pid)
        try:
            self.wait_for_service(timeout)
        except HubError:
            self.stop()
            raise
        self.started_in = time.monotonic() - started
        return self

    def wait_for_service(self, timeout: float = 60.0) -> None:
        """Until the video service answers through the proxy; HubError quoting the
        service's own log lines when it exits instead."""
        deadline = time.monotonic() + timeout
        log_start = len(self.log_text())
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise HubError(f"jupyterhub exited ({self.process.returncode}):\n"
                               + self.log_text()[-4000:])
            self.remember_pids()
            failure = service_failure(self.log_text()[log_start:])
            if failure:
                raise HubError(failure)
            try:
                response = requests.get(f"{self.service_url}api/status", timeout=2,
                                        headers={"Authorization": f"token {ADMIN_TOKEN}"})
                if response.status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.2)
        raise HubError(f"the video service did not answer in {timeout}s:\n"
                       + self.log_text()[-4000:])

    # -- the hub's REST API ------------------------------------------------------

    def api(self, method: str, path: str, token: str = ADMIN_TOKEN,
            **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", 30)
        return requests.request(method, f"{self.url}hub/api/{path}",
                                headers={"Authorization": f"token {token}"}, **kwargs)

    def user_token(self, user: str, scopes: list[str]) -> str:
        response = self.api("POST", f"users/{user}/tokens",
                            json={"scopes": scopes, "note": "hub tests", "expires_in": 3600})
        response.raise_for_status()
        return response.json()["token"]  # type: ignore[no-any-return]

    def start_server(self, user: str, timeout: float = 90.0) -> None:
        response = self.api("POST", f"users/{user}/server")
        if response.status_code not in (201, 202, 400):  # 400: already running
            raise HubError(f"starting {user}'s server: {response.status_code} {response.text}")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            model = self.api("GET", f"users/{user}").json()
            server = model.get("servers", {}).get("")
            if server and server.get("ready"):
                self.remember_pids()
                return
            time.sleep(0.5)
        raise HubError(f"{user}'s server was not ready in {timeout}s:\n"
                       + self.log_text()[-4000:])

    def user_model(self, user: str) -> dict[str, Any]:
        response = self.api("GET", f"users/{user}")
        response.raise_for_status()
        return response.json()  # type: ignore[no-any-return]

    # -- processes ---------------------------------------------------------------

    def service_pid(self) -> int | None:
        """The video service's process: the hub's child running jupyter-video-hub."""
        for pid in descendants(self.process.pid if self.process else 0):
            if "jupyter-video-hub" in command_line(pid):
                return pid
        return None

    def remember_pids(self) -> None:
        if self.process is not None:
            self.known_pids |= set(descendants(self.process.pid))

    def stop(self) -> None:
        """SIGTERM the hub (it stops the proxy, the service and the servers), then
        whatever it started and left behind, by PID."""
        self.remember_pids()
        proxy_pid = self.root / "proxy.pid"
        if proxy_pid.exists():
            self.known_pids.add(int(proxy_pid.read_text().strip() or 0))
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        deadline = time.monotonic() + 10
        for pid in sorted(self.known_pids - {0}):
            if not alive(pid):
                continue
            os.kill(pid, signal.SIGTERM)
            while alive(pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            if alive(pid):
                os.kill(pid, signal.SIGKILL)

    def leftover_pids(self) -> list[int]:
        return [pid for pid in sorted(self.known_pids - {0}) if alive(pid)]

    def log_text(self) -> str:
        path = self.root / "hub.log"
        return path.read_text(errors="replace") if path.exists() else ""


_EXITED = re.compile(rf"Service {SERVICE} exited with status (\d+)")
_HUB_LINE = re.compile(
    r"^(\[[A-Z] [\d-]+ [\d:.]+ (JupyterHub|ConfigurableHTTPProxy)\b|\S+ \[ConfigProxy\])")


def service_failure(log: str) -> str | None:
    """When the service exited: what the hub said, and the service's own last lines."""
    exited = _EXITED.search(log)
    if exited is None:
        return None
    own = [line for line in log[: exited.start()].splitlines()
           if line.strip() and not _HUB_LINE.match(line)]
    errors = [line for line in own if re.search(r"Error|\[E |\[C ", line)]
    return (f"the hub's video service exited with status {exited.group(1)}; "
            f"the service said: {errors[-1] if errors else (own[-1] if own else '(nothing)')}"
            f"\n--- its last lines ---\n" + "\n".join(own[-15:]))


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state != "Z"


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except (FileNotFoundError, ProcessLookupError):
        return ""


def descendants(root: int) -> list[int]:
    """PIDs whose parent chain leads to ``root`` (from /proc)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parents[int(entry.name)] = int(
                (entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
            continue
    found: list[int] = []
    frontier = [root]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent]
        found.extend(children)
        frontier.extend(children)
    return found


