"""Which transport the server tells widgets to use, and a Python participant's
``transport="auto"`` where UDP does not reach."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator

import pytest

from jupyter_video.client import LocalVideoTrack, connect
from jupyter_video.server.media_socket import media_transport

from ..client.participants import LOOPBACK, room_name, token
from ..client.test_client_e2e import pattern_frames
from ..server_process import ServerProcess
from .no_udp import Bridge, requires_namespaces

pytestmark = pytest.mark.timeout(120)


@pytest.mark.parametrize("configured, environ, told", [
    ("auto", {}, "auto"),
    ("auto", {"BINDER_LAUNCH_HOST": "https://mybinder.org/"}, "websocket"),
    ("auto", {"BINDER_REQUEST": "v2/gh/x/y/HEAD"}, "websocket"),
    ("auto", {"JUPYTERHUB_SERVICE_PREFIX": "/user/ada/", "KUBERNETES_SERVICE_HOST": "10.0.0.1"},
     "websocket"),
    ("auto", {"JUPYTERHUB_SERVICE_PREFIX": "/user/ada/"}, "auto"),  # a hub on one machine
    ("webrtc", {"BINDER_LAUNCH_HOST": "https://mybinder.org/"}, "webrtc"),  # said outright
    ("websocket", {}, "websocket"),
])
def test_the_server_says_websocket_where_udp_cannot_reach(
        configured: str, environ: dict[str, str], told: str) -> None:
    assert media_transport(configured, environ) == told


@pytest.fixture(scope="module")
def video_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    process = ServerProcess(tmp_path_factory.mktemp("transport"),
                            video_config={"ice_host_addresses": LOOPBACK, "media_workers": 1},
                            ).start()
    yield process
    process.stop()


VIEWER = """
import asyncio, json, sys
from jupyter_video.client import RemoteVideoTrack, connect

async def main(url, jwt, room):
    viewer = await connect(jwt, room, url, ice_host_addresses=["127.0.0.1"], transport="auto")
    tracks = []
    viewer.on("track_subscribed", lambda e: isinstance(e.track, RemoteVideoTrack)
              and tracks.append(e.track))
    while not tracks:
        await asyncio.sleep(0.1)
    frames = tracks[0].frames()
    frame = await asyncio.wait_for(anext(frames), 20)
    print(json.dumps({"transport": viewer.transport, "shape": list(frame.shape)}))
    await frames.aclose()
    await viewer.disconnect()

asyncio.run(main(*sys.argv[1:]))
"""


@requires_namespaces
async def test_auto_joins_again_over_the_media_socket_without_udp(
        video_server: ServerProcess) -> None:
    name = room_name()
    publisher = await connect(token(video_server, "publisher"), name, video_server.url,
                              ice_host_addresses=LOOPBACK,
                              tracks=[LocalVideoTrack.from_frames(pattern_frames((120, 160)))])
    bridge = Bridge(video_server.port)
    try:
        command = bridge.wrap([sys.executable, "-c", VIEWER, video_server.url,
                               token(video_server, "viewer"), name])
        done = await asyncio.to_thread(subprocess.run, command, capture_output=True, text=True,
                                       timeout=90)
        assert done.returncode == 0, done.stderr[-2000:]
        seen = json.loads(done.stdout.strip().splitlines()[-1])
        assert seen == {"transport": "websocket", "shape": [120, 160, 3]}
    finally:
        bridge.close()
        await publisher.disconnect()
