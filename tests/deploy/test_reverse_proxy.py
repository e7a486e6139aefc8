"""docs/deploy.md's nginx configuration, run as written in front of ``jupyter video``.

The ``location`` blocks are taken from the document itself (only the listen
address, certificate paths and the metrics allow-list are changed), so the
documented proxy is the tested one: TLS, the signaling WebSocket upgrade, and the
Host / X-Forwarded-Proto headers that make REST resource URLs the public ones.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import requests

from jupyter_video.client import LocalVideoTrack, RemoteVideoTrack, RoomEvent, connect

from ..conftest import make_twilio_client
from ..server_process import REPO, free_port
from ..widgets.browser import first_track, moving_frames, room_name, take_frames, token
from .standalone import StandaloneProcess
from .test_standalone import self_signed_certificate

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
DEPLOY_DOC = REPO / "docs" / "deploy.md"

pytestmark = [
    pytest.mark.skipif(not Path(NGINX).exists(), reason="nginx missing: make nginx"),
    pytest.mark.timeout(90),
]


class Nginx:
    """nginx in the foreground with the documented server block, on 127.0.0.1:``port``."""

    def __init__(self, root: Path, upstream_port: int, cert: Path, key: Path) -> None:
        self.root = root
        self.port = free_port()
        block = re.search(r"```nginx\n(.*?)```", DEPLOY_DOC.read_text(), re.S)
        assert block is not None, "docs/deploy.md has no nginx block"
        server = (
            block.group(1)
            .replace("listen 443 ssl;", f"listen 127.0.0.1:{self.port} ssl;")
            .replace("/etc/letsencrypt/live/video.example.org/fullchain.pem", str(cert))
            .replace("/etc/letsencrypt/live/video.example.org/privkey.pem", str(key))
            .replace("http://127.0.0.1:8890", f"http://127.0.0.1:{upstream_port}")
            .replace("allow 10.0.0.5;", "allow 127.0.0.1;")
        )
        for name in ("logs", "temp"):
            (root / name).mkdir(parents=True, exist_ok=True)
        temp = root / "temp"
        (root / "nginx.conf").write_text(
            f"daemon off;\npid {root}/nginx.pid;\nerror_log {root}/logs/error.log;\n"
            "events {}\nhttp {\n"
            f"  access_log {root}/logs/access.log;\n"
            f"  client_body_temp_path {temp}/body; proxy_temp_path {temp}/proxy;\n"
            f"  fastcgi_temp_path {temp}/fastcgi; uwsgi_temp_path {temp}/uwsgi;\n"
            f"  scgi_temp_path {temp}/scgi;\n{server}\n}}\n"
        )
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Nginx:
        self.process = subprocess.Popen(
            [NGINX, "-c", str(self.root / "nginx.conf"), "-p", str(self.root)],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError((self.root / "logs" / "error.log").read_text())
            try:
                requests.get(f"https://127.0.0.1:{self.port}/video/healthz", timeout=2)
                return self
            except requests.ConnectionError:
                time.sleep(0.1)
        raise RuntimeError("nginx did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT)  # nginx's graceful stop
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return self_signed_certificate(tmp_path_factory.mktemp("proxy-tls"))


@pytest.fixture
def proxied(
    tmp_path: Path, certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[StandaloneProcess, str]]:
    """The standalone server as docs/deploy.md configures it behind the proxy, and the
    proxy's public base URL."""
    cert, key = certificate
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert))  # requests and Twilio's library
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # the client's wss:// signaling
    server = StandaloneProcess(
        tmp_path / "server",
        video_config={"media_workers": 1, "ice_host_addresses": ["127.0.0.1"]},
        args=["--ServerApp.trust_xheaders=True", "--ServerApp.allow_remote_access=True"],
    ).start()
    proxy = Nginx(tmp_path / "nginx", server.port, cert, key)
    try:
        proxy.start()
        yield server, f"https://127.0.0.1:{proxy.port}/"
    finally:
        proxy.stop()
        server.stop()


async def test_documented_nginx_proxy_serves_rest_and_signaling_over_tls(
    proxied: tuple[StandaloneProcess, str],
) -> None:
    server, public = proxied
    client = make_twilio_client(server)
    client.video.base_url = public + "video"
    room = room_name()
    created = client.video.v1.rooms.create(unique_name=room)
    # Resource URLs are the proxy's, https and with its port (Host, X-Forwarded-Proto).
    assert created.url == f"{public}video/v1/Rooms/{created.sid}"

    # wss:// through the proxy's WebSocket upgrade; media goes straight to the worker.
    publisher = await connect(token(server, "publisher"), room, public,
                              tracks=[LocalVideoTrack.from_frames(moving_frames())],
                              ice_host_addresses=["127.0.0.1"])
    viewer = await connect(token(server, "viewer"), room, public,
                           ice_host_addresses=["127.0.0.1"])
    try:
        assert viewer.sid == created.sid
        tracks: list[RemoteVideoTrack] = []

        def on_subscribed(event: RoomEvent) -> None:
            if isinstance(event.track, RemoteVideoTrack):
                tracks.append(event.track)

        viewer.on("track_subscribed", on_subscribed)
        frames = await asyncio.wait_for(
            take_frames(await first_track(tracks, "the publisher's video"), 5), 30)
        assert not np.array_equal(frames[0], frames[-1])
    finally:
        await publisher.disconnect()
        await viewer.disconnect()

    assert requests.get(public + "video/healthz", timeout=10).json()["status"] == "ok"
    # /video/metrics: allowed from the Prometheus host, and still behind REST credentials.
    assert requests.get(public + "video/metrics", timeout=10).status_code == 401
    creds = server.credentials()
    metrics = requests.get(public + "video/metrics", timeout=10,
                           auth=(creds["api_key_sid"], creds["api_key_secret"]))
    assert 'jupyter_video_rooms{type="group"} 1.0' in metrics.text
