"""RoomWidget(room=...) with no option set, in JupyterLab in a browser with no UDP
path (tests/websocket/no_udp.py): it joins over WebRTC, finds that ICE does not
connect, rejoins over the media socket, and then works as it does over WebRTC."""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from jupyter_video.client import LocalDataTrack, LocalVideoTrack, RemoteVideoTrack, RoomEvent

from ..client.participants import token as client_token
from ..server_process import ServerProcess
from ..widgets.browser import (
    LOOPBACK,
    JupyterLab,
    kernel_state,
    moving_frames,
    requires_browser,
    room_name,
    take_frames,
    write_notebook,
)
from ..widgets.driver import PageDriver
from ..widgets.test_room_widget_browser import Page, text_in, wait_until
from .no_udp import UDP_HERE, Bridge, requires_namespaces

pytestmark = [requires_browser, requires_namespaces, pytest.mark.timeout(300)]

CELL = """\
import json, pathlib
from jupyter_video import RoomWidget

w = RoomWidget(room={room!r}, identity="lab-user")

def save(change=None):
    state = {{name: getattr(w, name) for name in (
        "state", "transport", "participants", "messages", "error")}}
    pathlib.Path("widget_state.tmp").write_text(json.dumps(state))
    pathlib.Path("widget_state.tmp").replace("widget_state.json")

w.observe(save, names=["state", "transport", "participants", "messages", "error"])
w
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    process = ServerProcess(tmp_path_factory.mktemp("widget-no-udp"),
                            video_config={"media_workers": 1, "ice_host_addresses": LOOPBACK}
                            ).start()
    yield process
    process.stop()


async def test_room_widget_without_udp_falls_back_to_the_media_socket(
        server: ServerProcess) -> None:
    from jupyter_video.client import connect

    room = room_name()
    write_notebook(server.root / "notebooks" / "room.ipynb", CELL.format(room=room))
    (server.root / "notebooks" / "widget_state.json").unlink(missing_ok=True)
    bridge = Bridge(server.port)
    driver = PageDriver(timeout=240, wrap=bridge.wrap)
    page = Page(driver)
    participants: list[Any] = []
    try:
        lab = JupyterLab(driver, server)
        await asyncio.to_thread(lab.open, "room.ipynb")
        await asyncio.to_thread(lab.run_first_cell)
        await page.wait_for(text_in(".jv-transport"), "WebSocket", timeout=60)
        await page.call("wait", selector='.jv-state[data-state="connected"]', timeout=30000,
                        wait=40)
        # The kernel hears the transport, then the state (the widget saves them in turn).
        await wait_until(lambda: kernel_state(server).get("transport") == "websocket"
                         and kernel_state(server).get("state") == "connected",
                         what="kernel: connected over websocket")

        # A WebRTC Python participant with video and chat: the widget renders its video.
        chat = LocalDataTrack(name="chat")
        python = await connect(client_token(server, "python-bot"), room, server.url,
                               tracks=[LocalVideoTrack.from_frames(moving_frames()), chat],
                               ice_host_addresses=LOOPBACK)
        participants.append(python)
        videos: list[RemoteVideoTrack] = []
        received: list[str] = []
        disabled: list[str] = []

        def on_event(event: RoomEvent) -> None:
            if event.name == "track_subscribed" and isinstance(event.track, RemoteVideoTrack):
                videos.append(event.track)
            elif event.name == "track_message" and isinstance(event.message, str):
                received.append(event.message)
            elif event.name == "track_disabled" and event.publication is not None:
                disabled.append(event.publication.kind)

        for name in ("track_subscribed", "track_message", "track_disabled"):
            python.on(name, on_event)
        first = await page.sample("python-bot")
        await asyncio.sleep(1.0)
        second = await page.sample("python-bot")
        assert first["mean"] > 60 and second["mean"] > 60, (first, second)
        assert first["hash"] != second["hash"], "the rendered video does not change"
        assert (second["width"], second["height"]) == (320, 240)

        # The widget's camera reaches the Python participant at the captured size.
        video = await wait_until(lambda: videos and videos[-1], what="the widget's video")
        frames = await asyncio.wait_for(take_frames(video, 10), 30)
        assert frames[-1].shape == (480, 640, 3)
        assert frames[-1].mean() > 10 and not np.array_equal(frames[0], frames[-1])

        # Chat both ways.
        chat.send("ping from python")
        await page.wait_for(text_in(".jv-message .jv-text"), "ping from python")
        await page.call("fill", selector=".jv-chat-input", text="hello from the browser")
        await page.call("press", selector=".jv-chat-input", key="Enter")
        await wait_until(lambda: "hello from the browser" in received, what="browser chat")

        # Mute: stopping the camera is seen by the Python participant.
        await page.call("click", selector=".jv-cam")
        await wait_until(lambda: "video" in disabled, what="track_disabled")

        # Unsubscribe removes the video; subscribing again brings it back, moving.
        tile = '.jv-tile[data-identity="python-bot"]'
        await page.call("click", selector=f'{tile} .jv-sub[data-kind="video"]')
        await page.wait_for(f"() => !document.querySelector('{tile} video')")
        await page.call("click", selector=f'{tile} .jv-sub[data-kind="video"]')
        again = await page.sample("python-bot")
        await asyncio.sleep(1.0)
        assert (await page.sample("python-bot"))["hash"] != again["hash"]
    finally:
        for participant in participants:
            await participant.disconnect()
        await asyncio.to_thread(driver.close)
        bridge.close()


@pytest.fixture(scope="module")
def veth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """ICE on the test's veth pair only (tests/websocket/no_udp.py, give_udp_path).

    The server refuses to start on an ICE address this machine lacks, and the veth
    appears only with the browser's namespace: the address is lent to lo first, as a
    /32 (no route, so the veth's /24 carries the traffic once it is there)."""
    subprocess.run(["ip", "addr", "add", f"{UDP_HERE}/32", "dev", "lo"], check=True)
    try:
        process = ServerProcess(tmp_path_factory.mktemp("widget-udp-lost"),
                                video_config={"media_workers": 1,
                                              "ice_host_addresses": [UDP_HERE]}).start()
        yield process
        process.stop()
    finally:
        subprocess.run(["ip", "addr", "del", f"{UDP_HERE}/32", "dev", "lo"], check=False)


async def test_room_widget_switches_to_the_media_socket_when_udp_is_lost_mid_call(
        veth_server: ServerProcess) -> None:
    from jupyter_video.client import connect

    server = veth_server
    room = room_name()
    write_notebook(server.root / "notebooks" / "room.ipynb", CELL.format(room=room))
    (server.root / "notebooks" / "widget_state.json").unlink(missing_ok=True)
    bridge = Bridge(server.port)
    bridge.give_udp_path(f"jvu{os.getpid() % 10000}")
    driver = PageDriver(timeout=240, wrap=bridge.wrap)
    page = Page(driver)
    python = None
    try:
        await asyncio.to_thread(bridge.wait_for_udp_path)
        python = await connect(client_token(server, "python-bot"), room, server.url,
                               tracks=[LocalVideoTrack.from_frames(moving_frames())],
                               ice_host_addresses=LOOPBACK)
        lab = JupyterLab(driver, server)
        await asyncio.to_thread(lab.open, "room.ipynb")
        await asyncio.to_thread(lab.run_first_cell)
        await page.wait_for(text_in(".jv-transport"), "WebRTC", timeout=60)
        before = await page.sample("python-bot")
        await asyncio.sleep(8)  # longer than the fallback's 5 s: WebRTC holds
        assert await page.eval("() => document.querySelector('.jv-transport').textContent"
                               ) == "WebRTC"
        assert (await page.sample("python-bot"))["hash"] != before["hash"]

        await asyncio.to_thread(bridge.cut_udp_path)
        await page.wait_for(text_in(".jv-transport"), "WebSocket", timeout=90)
        await page.call("wait", selector='.jv-state[data-state="connected"]', timeout=30000,
                        wait=40)
        first = await page.sample("python-bot")
        await asyncio.sleep(1.0)
        second = await page.sample("python-bot")
        assert first["mean"] > 60 and first["hash"] != second["hash"], "media did not resume"
        assert await wait_until(lambda: kernel_state(server).get("transport") == "websocket",
                                what="kernel: transport websocket")
    finally:
        if python is not None:
            await python.disconnect()
        await asyncio.to_thread(driver.close)
        bridge.close()
