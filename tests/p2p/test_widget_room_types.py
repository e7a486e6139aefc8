"""RoomWidget in every room type: ``RoomWidget(room=..., type="go")`` creates a Go room
(through ``/video/token``, with the page's session), a room in progress keeps the type
it was created with, and the widget in JupyterLab shares a Go room with a Python
participant, media straight between them."""

from __future__ import annotations

import asyncio

import pytest
import requests

from jupyter_video import RoomWidget
from jupyter_video.client import LocalVideoTrack, RemoteVideoTrack, RoomEvent, connect

from ..conftest import make_twilio_client
from ..server_process import TOKEN, ServerProcess
from ..waiting import wait_until
from ..widgets.browser import (
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
from ..widgets.driver import PageDriver
from .mesh import media_plane_counters

server = media_on_loopback_server("p2p-widget")


def get_token(server: ServerProcess, **params: str) -> requests.Response:
    return requests.get(f"{server.url}video/token", params=params, timeout=10,
                        headers={"Authorization": f"token {TOKEN}"})


def test_the_widget_says_which_type_of_room_it_creates() -> None:
    widget = RoomWidget(room="tutoring", type="go")
    assert widget.type == "go" and "type='go'" in repr(widget)
    assert RoomWidget(room="lab").type == ""  # the server's default type
    with pytest.raises(Exception, match="type"):
        RoomWidget(room="lab", type="mesh")


def test_a_token_for_a_typed_room_creates_it_with_that_type(server: ServerProcess) -> None:
    client = make_twilio_client(server)
    name = room_name()
    reply = get_token(server, room=name, type="go")
    assert reply.status_code == 200 and reply.json()["room_type"] == "go"
    room = client.video.v1.rooms(name).fetch()
    assert (room.type, room.max_participants) == ("go", 2)
    # in progress, it keeps its type: whoever created it decided
    reply = get_token(server, room=name, type="group")
    assert reply.status_code == 200 and reply.json()["room_type"] == "go"
    assert client.video.v1.rooms(name).fetch().type == "go"
    assert get_token(server, room=name).json()["room_type"] == "go"
    # without a type nothing is created before connecting (ad hoc, the default type)
    untyped = room_name()
    reply = get_token(server, room=untyped)
    assert reply.status_code == 200 and reply.json()["room_type"] == "group"
    assert client.video.v1.rooms.list(unique_name=untyped) == []


def test_a_token_for_an_unknown_type_is_53108(server: ServerProcess) -> None:
    response = get_token(server, room=room_name(), type="mesh")
    assert response.status_code == 400
    assert response.json()["code"] == 53108 and "'peer-to-peer'" in response.json()["message"]


WIDGET_CELL = """\
import json, pathlib
from jupyter_video import RoomWidget

w = RoomWidget(room={room!r}, type="go", identity="lab-user")

def save(change=None):
    state = {{name: getattr(w, name) for name in ("state", "room_sid", "participants",
                                                  "error", "type")}}
    pathlib.Path("go_state.tmp").write_text(json.dumps(state))
    pathlib.Path("go_state.tmp").replace("go_state.json")

w.observe(save, names=["state", "room_sid", "participants", "error"])
w
"""


TRANSPORT_BADGE = "() => document.querySelector('.jv-transport').textContent"
SUBSCRIBE_TOGGLES = """() => [...document.querySelectorAll('.jv-sub')].map(
    (button) => ({kind: button.dataset.kind, disabled: button.disabled}))"""


@requires_browser
@pytest.mark.timeout(240)
async def test_a_go_room_widget_in_jupyterlab_with_a_python_participant(
    server: ServerProcess,
) -> None:
    room = room_name()
    write_notebook(server.root / "notebooks" / "go.ipynb", WIDGET_CELL.format(room=room))
    (server.root / "notebooks" / "go_state.json").unlink(missing_ok=True)
    before = media_plane_counters(server)["jupyter_video_packets_forwarded_total"]
    driver = PageDriver(timeout=230)
    python = None
    try:
        lab = JupyterLab(driver, server)
        await asyncio.to_thread(lab.open, "go.ipynb")
        await asyncio.to_thread(lab.run_first_cell)
        state = await wait_until(lambda: kernel_state(server, "go_state.json").get("state")
                                 == "connected" and kernel_state(server, "go_state.json"),
                                 what="the widget connected", timeout=60)
        fetched = make_twilio_client(server).video.v1.rooms(state["room_sid"]).fetch()
        assert (fetched.type, fetched.unique_name) == ("go", room)
        # Alone, the widget has no peer connection: longer than the 'auto' transport
        # waits for ICE (5 s) before it turns to the media socket, which is the SFU's.
        await asyncio.sleep(6)
        assert kernel_state(server, "go_state.json")["state"] == "connected"
        badge = await asyncio.to_thread(driver.eval, TRANSPORT_BADGE)
        assert badge == "WebRTC"

        python = await connect(token(server, "python-bot"), room, server.url,
                               tracks=[LocalVideoTrack.from_frames(moving_frames())],
                               ice_host_addresses=LOOPBACK)
        widget_video: list[RemoteVideoTrack] = []

        def on_subscribed(event: RoomEvent) -> None:
            if isinstance(event.track, RemoteVideoTrack):
                widget_video.append(event.track)

        python.on("track_subscribed", on_subscribed)
        track = await wait_until(lambda: widget_video and widget_video[-1], timeout=60,
                                 what="widget video")
        frames = await asyncio.wait_for(take_frames(track, 10), 30)
        assert frames[-1].mean() > 10  # Chromium's fake camera, decoded in the kernel
        shown = await asyncio.to_thread(driver.wait_for, SAMPLE_VIDEO, "python-bot", 60)
        assert shown["mean"] > 60 and (shown["width"], shown["height"]) == (320, 240)
        await wait_until(lambda: [p["identity"] for p in
                                  kernel_state(server, "go_state.json").get("participants", [])]
                         == ["python-bot"], what="the widget's participants", timeout=60)
        # no subscribe toggles: there are no SubscribeRules in a mesh
        toggles = await asyncio.to_thread(driver.eval, SUBSCRIBE_TOGGLES)
        assert toggles and all(toggle["disabled"] for toggle in toggles), toggles
        after = media_plane_counters(server)["jupyter_video_packets_forwarded_total"]
        assert after == before  # media went straight between the page and the kernel
    finally:
        if python is not None:
            await python.disconnect()
        await asyncio.to_thread(driver.close)
