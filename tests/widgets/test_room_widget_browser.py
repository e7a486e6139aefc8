"""RoomWidget in JupyterLab, in real headless Chromium, with a Python participant.

A notebook cell with ``RoomWidget(room=...)`` is run in JupyterLab; a kernel-less
Python participant (``jupyter_video.client``, in this test process) joins the same
room and publishes a generated video. Each side must see the other's video
(sampled pixels: not black, changing), chat goes both ways (the kernel's
``messages`` and ``on_message``), mute is seen by the other side, unsubscribing
stops the video element, and leaving disconnects.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests

from jupyter_video.client import (
    LocalDataTrack,
    LocalVideoTrack,
    RemoteVideoTrack,
    RoomEvent,
    connect,
)

from ..server_process import ServerProcess
from ..waiting import wait_until
from .browser import (
    LOOPBACK,
    SAMPLE_VIDEO,
    JupyterLab,
    kernel_state,
    media_on_loopback_server,
    moving_frames,
    requires_browser,
    room_name,
    take_frames,
    token,
    write_notebook,
)
from .driver import DriverError, PageDriver
from .test_twilio_video_page import CONNECT as CONNECT_PAGE
from .test_twilio_video_page import SAMPLE as SAMPLE_PAGE
from .test_twilio_video_page import TWILIO_VIDEO

pytestmark = [requires_browser, pytest.mark.timeout(300)]

TWILIO_VIDEO_JS = TWILIO_VIDEO / "twilio-video.min.js"

WIDGET_CELL = """\
import json, pathlib
from jupyter_video import RoomWidget

w = RoomWidget(room={room!r}, identity="lab-user")
events = []

def save(change=None):
    state = {{name: getattr(w, name) for name in (
        "state", "room_sid", "participant_sid", "identity", "participants", "messages",
        "dominant_speaker", "error")}}
    state["events"] = events
    pathlib.Path("widget_state.tmp").write_text(json.dumps(state))
    pathlib.Path("widget_state.tmp").replace("widget_state.json")

w.observe(save, names=["state", "room_sid", "participants", "messages", "error"])

@w.on_message
def reply(message):
    if message["text"] == "ping from python":
        w.send_message("pong from kernel")

@w.on_participant
def seen(event, participant):
    events.append([event, participant["identity"]])
    save()

w
"""


server = media_on_loopback_server("widget-server")


class Page:
    """The driver's blocking calls, run in a thread so that the Python participant lives on."""

    def __init__(self, driver: PageDriver) -> None:
        self.driver = driver

    async def call(self, op: str, **fields: Any) -> Any:
        return await asyncio.to_thread(self.driver.call, op, **fields)

    async def eval(self, expression: str, arg: Any = None) -> Any:
        return await asyncio.to_thread(self.driver.eval, expression, arg)

    async def wait_for(self, expression: str, arg: Any = None, timeout: float = 30.0) -> Any:
        return await asyncio.to_thread(self.driver.wait_for, expression, arg, timeout)

    async def sample(self, identity: str) -> dict[str, Any]:
        sample: dict[str, Any] = await self.wait_for(SAMPLE_VIDEO, identity)
        return sample


def text_in(selector: str) -> str:
    """JS: whether an element matching ``selector`` has the text given as argument."""
    return f"""(text) => [...document.querySelectorAll({selector!r})]
        .some((node) => node.textContent === text)"""


async def test_room_widget_in_jupyterlab_with_a_python_participant(
    server: ServerProcess, tmp_path: Path
) -> None:
    room = room_name()
    write_notebook(server.root / "notebooks" / "room.ipynb", WIDGET_CELL.format(room=room))
    (server.root / "notebooks" / "widget_state.json").unlink(missing_ok=True)
    driver = PageDriver(timeout=240)
    page = Page(driver)
    python = None
    viewers: list[Any] = []
    try:
        lab = JupyterLab(driver, server)
        await asyncio.to_thread(lab.open, "room.ipynb")
        await asyncio.to_thread(lab.run_first_cell)
        await page.call("wait", selector='.jv-state[data-state="connected"]', timeout=90000,
                        wait=100)
        state = await wait_until(lambda: kernel_state(server).get("state") == "connected"
                                 and kernel_state(server), what="kernel state connected")
        assert state["identity"] == "lab-user"
        assert state["room_sid"].startswith("RM") and state["participant_sid"].startswith("PA")

        # A Python participant sees the widget's camera (Chromium's fake device).
        viewer = await connect(token(server, "python-viewer"), room, server.url,
                               ice_host_addresses=LOOPBACK)
        viewers.append(viewer)
        widget_video: list[RemoteVideoTrack] = []

        def on_subscribed(event: RoomEvent) -> None:
            if isinstance(event.track, RemoteVideoTrack):
                widget_video.append(event.track)

        viewer.on("track_subscribed", on_subscribed)
        track = await wait_until(lambda: widget_video and widget_video[-1], what="widget video")
        frames = await asyncio.wait_for(take_frames(track, 10), 30)
        assert frames[-1].mean() > 10
        assert not np.array_equal(frames[0], frames[-1])

        # A Python participant joins with a generated video and a data track.
        data = LocalDataTrack(name="chat")
        python = await connect(token(server, "python-bot"), room, server.url,
                               tracks=[LocalVideoTrack.from_frames(moving_frames()), data],
                               ice_host_addresses=LOOPBACK)
        received: list[str] = []
        disabled: list[str] = []
        left: list[str] = []
        publications: list[tuple[str, str]] = []

        def on_event(event: RoomEvent) -> None:
            if event.name == "track_message" and isinstance(event.message, str):
                received.append(event.message)
            elif event.name == "track_disabled" and event.publication is not None:
                disabled.append(event.publication.kind)
            elif event.name == "participant_disconnected" and event.participant is not None:
                left.append(event.participant.identity)
            elif event.name in ("track_published", "track_unpublished") and event.publication:
                publications.append((event.name, event.publication.track_name))

        for name in ("track_message", "track_disabled", "participant_disconnected",
                     "track_published", "track_unpublished"):
            python.on(name, on_event)

        # The widget shows the Python participant's video: bright and changing.
        first = await page.sample("python-bot")
        await asyncio.sleep(1.0)
        second = await page.sample("python-bot")
        assert first["mean"] > 60 and second["mean"] > 60, (first, second)
        assert first["hash"] != second["hash"], "the rendered video does not change"
        assert second["frames"] > first["frames"]

        # The kernel's participants list it, with its tracks.
        state = await wait_until(
            lambda: next((p for p in kernel_state(server).get("participants", [])
                          if p["identity"] == "python-bot"), None),
            what="python-bot in the kernel's participants")
        assert {t["kind"] for t in state["tracks"]} == {"video", "data"}
        assert ["connected", "python-bot"] in kernel_state(server)["events"]

        # Chat: Python participant -> page and kernel; kernel's reply -> page and Python.
        data.send("ping from python")
        await page.wait_for(text_in(".jv-message .jv-text"), "ping from python")
        await wait_until(lambda: "pong from kernel" in received, what="the kernel's reply")
        await page.wait_for(text_in(".jv-own .jv-text"), "pong from kernel")
        messages = await wait_until(
            lambda: len(kernel_state(server).get("messages", [])) >= 2
            and kernel_state(server)["messages"], what="messages in the kernel")
        assert [(m["identity"], m["text"]) for m in messages[:2]] == [
            ("python-bot", "ping from python"), ("lab-user", "pong from kernel")]
        assert messages[0]["sid"].startswith("PA") and messages[0]["time"]

        # The page's chat box -> Python participant.
        await page.call("fill", selector=".jv-chat-input", text="hello from the browser")
        await page.call("press", selector=".jv-chat-input", key="Enter")
        await wait_until(lambda: "hello from the browser" in received, what="browser chat")

        # Stopping the camera in the page is seen by the Python participant.
        await page.call("click", selector=".jv-cam")
        await wait_until(lambda: "video" in disabled, what="track_disabled")

        # Screen share is an extra video track named "screen", unpublished when stopped.
        # twilio-video puts it on a transceiver that only received (here the one with
        # python-bot's video): its frames must still reach the Python participant.
        screens: list[RemoteVideoTrack] = []

        def on_screen(event: RoomEvent) -> None:
            if (isinstance(event.track, RemoteVideoTrack) and event.publication is not None
                    and event.publication.track_name == "screen"):
                screens.append(event.track)

        python.on("track_subscribed", on_screen)
        await page.call("click", selector=".jv-screen")
        await wait_until(lambda: ("track_published", "screen") in publications,
                         what="the screen track published")
        screen = await wait_until(lambda: screens and screens[-1], what="the screen subscribed")
        shared = await asyncio.wait_for(take_frames(screen, 3), 30)
        assert all(frame.shape[0] > 0 and frame.shape[1] > 0 for frame in shared)
        await page.call("click", selector=".jv-screen")
        await wait_until(lambda: ("track_unpublished", "screen") in publications,
                         what="the screen track unpublished")

        # Unsubscribing in the page removes the video element (its frames stop), through
        # SubscribeRules; subscribing again brings the video back.
        tile = '.jv-tile[data-identity="python-bot"]'
        await page.call("click", selector=f'{tile} .jv-sub[data-kind="video"]')
        await page.wait_for(
            f"() => !document.querySelector('{tile} video') && document.querySelector("
            f"'{tile} .jv-sub[data-kind=\"video\"][data-subscribed=\"false\"]')")
        unsubscribed = await wait_until(
            lambda: [t for p in kernel_state(server).get("participants", [])
                     for t in p["tracks"] if t["kind"] == "video" and not t["subscribed"]],
            what="the kernel's participants show the video unsubscribed")
        assert len(unsubscribed) == 1
        await page.call("click", selector=f'{tile} .jv-sub[data-kind="video"]')
        again = await page.sample("python-bot")
        await asyncio.sleep(0.5)
        assert (await page.sample("python-bot"))["hash"] != again["hash"]

        # Leaving disconnects the widget's participant from the room.
        await page.call("click", selector=".jv-leave")
        await wait_until(lambda: "lab-user" in left, what="the widget leaving")
        await wait_until(lambda: kernel_state(server).get("state") == "disconnected",
                         what="kernel state disconnected")
    finally:
        for participant in [python, *viewers]:
            if participant is not None:
                await participant.disconnect()
        await asyncio.to_thread(driver.close)


PREVIEW_CELL = """\
import json, pathlib
from jupyter_video import PreviewWidget

preview = PreviewWidget()
levels = []

def save(change=None):
    levels.append(preview.level)
    state = {"devices": preview.devices, "levels": levels, "error": preview.error,
             "audio_device": preview.audio_device, "video_device": preview.video_device}
    pathlib.Path("preview_state.tmp").write_text(json.dumps(state))
    pathlib.Path("preview_state.tmp").replace("preview_state.json")

preview.observe(save, names=["devices", "level", "error", "audio_device", "video_device"])
preview
"""


async def test_preview_widget_shows_the_camera_lists_devices_and_meters_the_microphone(
    server: ServerProcess,
) -> None:
    write_notebook(server.root / "notebooks" / "preview.ipynb", PREVIEW_CELL)
    driver = PageDriver(timeout=150)
    page = Page(driver)
    try:
        lab = JupyterLab(driver, server)
        await asyncio.to_thread(lab.open, "preview.ipynb")
        await asyncio.to_thread(lab.run_first_cell)
        try:
            await page.call("wait", selector='.jv-preview .jv-state[data-state="connected"]',
                            timeout=60000, wait=70)
        except DriverError as exc:
            shown = await page.eval("() => document.querySelector('.jp-Notebook').innerText")
            raise AssertionError(f"no preview; the notebook shows:\n{shown}") from exc
        # The camera preview plays Chromium's fake camera.
        first = await page.wait_for("""() => {
            const v = document.querySelector('.jv-preview video');
            return v && v.videoWidth > 0 && v.getVideoPlaybackQuality().totalVideoFrames; }""")
        await asyncio.sleep(0.5)
        later = await page.eval("""() => document.querySelector('.jv-preview video')
            .getVideoPlaybackQuality().totalVideoFrames""")
        assert later > first
        options = await page.eval("""() => ['.jv-camera', '.jv-microphone'].map(
            (s) => document.querySelectorAll(`${s} option`).length)""")
        assert min(options) >= 1
        # The kernel knows the devices, the chosen ones, and a live level from the
        # fake microphone's beeps.
        state = await wait_until(
            lambda: (s := kernel_state(server, "preview_state.json")).get("devices")
            and any(s.get("levels", [])) and s, what="devices and a non-zero level")
        kinds = {device["kind"] for device in state["devices"]}
        assert kinds == {"videoinput", "audioinput"}
        assert state["video_device"] and state["audio_device"] and state["error"] is None
        assert max(state["levels"]) <= 10

        # join() hands the chosen devices to a RoomWidget, which joins; closing it leaves.
        room = room_name()
        watcher = await connect(token(server, "watcher"), room, server.url,
                                ice_host_addresses=LOOPBACK)
        try:
            joined: list[str] = []
            left: list[str] = []

            def on_event(event: RoomEvent) -> None:
                if event.participant is not None:
                    seen = joined if event.name == "participant_connected" else left
                    seen.append(event.participant.identity)

            watcher.on("participant_connected", on_event)
            watcher.on("participant_disconnected", on_event)
            await asyncio.to_thread(
                lab.run_new_cell, f"room = preview.join({room!r}, identity='joiner'); room")
            await page.call("wait", selector='.jv-state[data-state="connected"]:not(.jv-preview *)',
                            timeout=60000, wait=70)
            await wait_until(lambda: "joiner" in joined, what="joiner in the room")
            assert await page.eval(
                "() => document.querySelector('.jv-preview .jv-state').textContent") == "released"
            await asyncio.to_thread(lab.run_new_cell, "room.close()")
            await wait_until(lambda: "joiner" in left, what="the closed widget leaving")
        finally:
            await watcher.disconnect()
    finally:
        await asyncio.to_thread(driver.close)


async def test_room_widget_shows_a_full_room_error_with_its_remedy(server: ServerProcess) -> None:
    room = room_name()
    creds = server.credentials()
    response = await asyncio.to_thread(
        requests.post, f"{server.url}video/v1/Rooms", timeout=10,
        auth=(creds["api_key_sid"], creds["api_key_secret"]),
        data={"UniqueName": room, "MaxParticipants": "1"},
    )
    assert response.status_code == 201, response.text
    occupant = await connect(token(server, "occupant"), room, server.url,
                             ice_host_addresses=LOOPBACK)
    write_notebook(server.root / "notebooks" / "full.ipynb", WIDGET_CELL.format(room=room))
    (server.root / "notebooks" / "widget_state.json").unlink(missing_ok=True)
    driver = PageDriver(timeout=150)
    page = Page(driver)
    try:
        lab = JupyterLab(driver, server)
        await asyncio.to_thread(lab.open, "full.ipynb")
        await asyncio.to_thread(lab.run_first_cell)
        await page.call("wait", selector=".jv-error", timeout=60000, wait=70)
        shown = await page.eval("() => document.querySelector('.jv-error').textContent")
        assert "53105" in shown and "The room is full." in shown and "max_participants" in shown
        assert await page.eval(
            "() => document.querySelector('.jv-state').dataset.state") == "disconnected"
        state = await wait_until(lambda: (kernel_state(server).get("error") or {}).get("code")
                                 and kernel_state(server), what="the error in the kernel")
        assert state["error"]["code"] == 53105 and state["error"]["remedy"]
        assert state["state"] == "disconnected"
    finally:
        await occupant.disconnect()
        await asyncio.to_thread(driver.close)


async def test_room_widget_and_a_second_browser_page_see_each_other(server: ServerProcess) -> None:
    room = room_name()
    write_notebook(server.root / "notebooks" / "pair.ipynb", WIDGET_CELL.format(room=room))
    driver = PageDriver(timeout=150)
    other = PageDriver(timeout=150)
    page = Page(driver)
    try:
        lab = JupyterLab(driver, server)
        await asyncio.to_thread(lab.open, "pair.ipynb")
        await asyncio.to_thread(lab.run_first_cell)
        await page.call("wait", selector='.jv-state[data-state="connected"]', timeout=60000,
                        wait=70)
        # The second page: twilio-video.js itself, with Chromium's fake camera.
        await asyncio.to_thread(other.call, "blank")
        await asyncio.to_thread(other.call, "addScript", path=str(TWILIO_VIDEO_JS))
        signaling = f"ws://127.0.0.1:{server.port}{server.base_url}video/signaling"
        joined = await asyncio.to_thread(other.eval, CONNECT_PAGE, {
            "token": token(server, "second-page"), "wsServer": signaling, "name": room})
        assert joined["state"] == "connected"
        # The widget renders the second page's camera, and the page the widget's.
        first = await page.sample("second-page")
        await asyncio.sleep(1.0)
        second = await page.sample("second-page")
        assert second["mean"] > 10 and second["frames"] > first["frames"]
        assert first["hash"] != second["hash"]
        # The widget connects with networkQuality: its own tile shows a level, 4 or 5 on
        # loopback (the second page did not ask for network quality, so it has none).
        await page.call("wait", selector='.jv-local[data-network-quality="5"], '
                        '.jv-local[data-network-quality="4"]', timeout=30000, wait=40)
        seen = await asyncio.to_thread(other.wait_for, SAMPLE_PAGE, "lab-user", 30)
        await asyncio.sleep(1.0)
        later = await asyncio.to_thread(other.wait_for, SAMPLE_PAGE, "lab-user", 30)
        assert later["mean"] > 10 and later["hash"] != seen["hash"]
    finally:
        await asyncio.to_thread(other.close)
        await asyncio.to_thread(driver.close)
