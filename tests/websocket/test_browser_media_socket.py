"""twilio-video.js 2.36 in headless Chromium over the media socket: a plain page
passes ``RTCPeerConnection: WebSocketPeerConnection.forServer(base)`` (the
bundle js/ builds to jupyter_video/static/websocket-peer-connection.js) and
is otherwise the page Twilio's docs describe."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from jupyter_video.client import (
    LocalAudioTrack,
    LocalDataTrack,
    LocalVideoTrack,
    RemoteAudioTrack,
    RemoteDataTrack,
    RemoteVideoTrack,
    RoomEvent,
    connect,
)

from ..server_process import ServerProcess
from ..widgets.browser import (
    LOOPBACK,
    REPO,
    first_track,
    moving_frames,
    requires_browser,
    room_name,
    take_frames,
    token,
)
from ..widgets.driver import PageDriver
from ..widgets.test_twilio_video_page import CONNECT as CONNECT_WEBRTC
from ..widgets.test_twilio_video_page import (
    FAKE_MICROPHONE_HZ,
    LISTEN,
    SAMPLE,
    TONE_HZ,
    TWILIO_VIDEO,
    loudest_frequency,
)
from .no_udp import Bridge, requires_namespaces

pytestmark = [requires_browser, requires_namespaces, pytest.mark.timeout(180)]

TRANSPORT_BUNDLE = REPO / "jupyter_video" / "static" / "websocket-peer-connection.js"

IMPORT = """async (source) => {
  const url = URL.createObjectURL(new Blob([source], {type: 'text/javascript'}));
  window.transport = await import(url);
  return window.transport.webSocketMediaSupported();
}"""
"""What ``import { WebSocketPeerConnection } from '.../websocket-peer-connection.js'``
does on a page that hosts the file (a blob URL here: the test page has no server)."""

CONNECT = """async ({token, wsServer, name, base}) => {
  const tracks = await Twilio.Video.createLocalTracks({
    audio: true, video: {width: 320, height: 240}});
  window.chat = new Twilio.Video.LocalDataTrack({name: 'chat'});
  tracks.push(window.chat);
  window.messages = [];
  const Transport = window.transport.WebSocketPeerConnection.forServer(base);
  window.peerConnections = [];
  class Recorded extends Transport {
    constructor(...args) { super(...args); window.peerConnections.push(this); }
  }
  const room = await Twilio.Video.connect(token, {
    name, wsServer, insights: false, tracks, RTCPeerConnection: Recorded});
  window.room = room;
  room.on('trackSubscribed', (track, publication, participant) => {
    if (track.kind === 'data') {
      track.on('message', (m) => window.messages.push(m));
      return;
    }
    if (track.kind !== 'video') { return; }
    const video = track.attach();
    video.dataset.identity = participant.identity;
    document.body.append(video);
  });
  return {sid: room.sid, state: room.state};
}"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    process = ServerProcess(tmp_path_factory.mktemp("ws-page"),
                            video_config={"media_workers": 1, "ice_host_addresses": LOOPBACK}
                            ).start()
    yield process
    process.stop()


def signaling(server: ServerProcess) -> str:
    return f"ws://127.0.0.1:{server.port}{server.base_url}video/signaling"


@pytest.fixture
def no_udp(server: ServerProcess) -> Iterator[Bridge]:
    """Pages in a network namespace where only TCP to the server's port leads out."""
    bridge = Bridge(server.port)
    yield bridge
    bridge.close()


async def open_page(server: ServerProcess, identity: str, room: str, bridge: Bridge,
                    connect_page: str = "") -> PageDriver:
    driver = PageDriver(timeout=150, wrap=bridge.wrap)
    await asyncio.to_thread(driver.call, "blank")
    await asyncio.to_thread(driver.call, "addScript",
                            path=str(TWILIO_VIDEO / "twilio-video.min.js"))
    if connect_page:  # the page as it is today, WebRTC only
        joined = await asyncio.to_thread(driver.eval, connect_page, {
            "token": token(server, identity), "wsServer": signaling(server), "name": room})
        assert joined["state"] == "connected"
        return driver
    supported = await asyncio.to_thread(driver.eval, IMPORT, TRANSPORT_BUNDLE.read_text())
    assert supported, "this Chromium lacks WebCodecs or MediaStreamTrackProcessor"
    joined = await asyncio.to_thread(driver.eval, CONNECT, {
        "token": token(server, identity), "wsServer": signaling(server), "name": room,
        "base": server.url})
    assert joined["state"] == "connected"
    return driver


async def test_without_udp_a_webrtc_page_joins_but_no_media_flows(
        server: ServerProcess, no_udp: Bridge) -> None:
    """The block works, and is what breaks today's code: signaling (TCP) joins the
    room, but no frame of the page's camera ever reaches anyone, nor theirs the page."""
    room = room_name()
    driver = await open_page(server, "page", room, no_udp, connect_page=CONNECT_WEBRTC)
    viewer = None
    try:
        viewer = await connect(token(server, "viewer"), room, server.url,
                               ice_host_addresses=LOOPBACK,
                               tracks=[LocalVideoTrack.from_frames(moving_frames())])
        videos: list[RemoteVideoTrack] = []
        viewer.on("track_subscribed", lambda event: isinstance(event.track, RemoteVideoTrack)
                  and videos.append(event.track))
        video = await first_track(videos, "the page's video")  # signaled: subscribed
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(take_frames(video, 1), 12)
        rendered = await asyncio.to_thread(driver.eval, SAMPLE, "viewer")
        assert rendered is None  # nothing decoded in the page either
    finally:
        if viewer is not None:
            await viewer.disconnect()
        await asyncio.to_thread(driver.close)


async def test_without_udp_a_page_over_the_media_socket_sends_and_receives_video_and_data(
        server: ServerProcess, no_udp: Bridge) -> None:
    room = room_name()
    driver = await open_page(server, "page", room, no_udp)
    participants: list[Any] = []
    try:
        # The page's camera reaches a WebRTC Python participant at the captured size.
        chat = LocalDataTrack(name="chat")
        viewer = await connect(token(server, "viewer"), room, server.url,
                               ice_host_addresses=LOOPBACK, tracks=[chat])
        participants.append(viewer)
        videos: list[RemoteVideoTrack] = []
        data: list[RemoteDataTrack] = []
        sounds: list[RemoteAudioTrack] = []

        def on_subscribed(event: RoomEvent) -> None:
            if isinstance(event.track, RemoteVideoTrack):
                videos.append(event.track)
            elif isinstance(event.track, RemoteDataTrack):
                data.append(event.track)
            elif isinstance(event.track, RemoteAudioTrack):
                sounds.append(event.track)

        viewer.on("track_subscribed", on_subscribed)
        video = await first_track(videos, "the page's video")
        frames = await asyncio.wait_for(take_frames(video, 10), 30)
        assert frames[-1].shape == (240, 320, 3)
        assert frames[-1].mean() > 10 and not np.array_equal(frames[0], frames[-1])
        # ... and its microphone (WebCodecs Opus): Chromium's fake device beeps at 400 Hz.
        hz = await asyncio.wait_for(loudest_frequency(sounds), 30)
        assert abs(hz - FAKE_MICROPHONE_HZ) < 15, hz

        # A Python participant's video is rendered by the page, bright and moving, and
        # its tone is heard there at its pitch.
        seconds = np.arange(48000 * 30) / 48000
        tone = LocalAudioTrack.from_array(0.5 * np.sin(2 * np.pi * TONE_HZ * seconds))
        publisher = await connect(token(server, "publisher"), room, server.url,
                                  tracks=[LocalVideoTrack.from_frames(moving_frames()), tone],
                                  ice_host_addresses=LOOPBACK)
        participants.append(publisher)
        first = await asyncio.to_thread(driver.wait_for, SAMPLE, "publisher", 30)
        await asyncio.sleep(1.0)
        second = await asyncio.to_thread(driver.wait_for, SAMPLE, "publisher", 30)
        assert first["mean"] > 60 and second["mean"] > 60
        assert first["hash"] != second["hash"]
        heard = await asyncio.to_thread(driver.wait_for, LISTEN, "publisher", 30)
        assert abs(heard["hz"] - TONE_HZ) <= 2 * heard["binHz"], heard
        assert heard["db"] > -60, heard

        # Chat both ways.
        page_chat = await first_track(data, "the page's chat")
        await asyncio.to_thread(driver.eval, "() => window.chat.send('from the page') && null")
        received = await asyncio.wait_for(anext(page_chat.messages()), 20)
        assert received == "from the page"
        for _ in range(20):
            chat.send("from python")
            await asyncio.sleep(0.2)
            if await asyncio.to_thread(driver.eval, "() => window.messages.length"):
                break
        assert "from python" in await asyncio.to_thread(driver.eval, "() => window.messages")

        # It was the media socket: the page's only peer connection is one.
        states = await asyncio.to_thread(
            driver.eval, "() => window.peerConnections.map((pc) => pc.iceConnectionState)")
        assert states == ["connected"], driver.console_tail()
    finally:
        for participant in participants:
            await participant.disconnect()
        await asyncio.to_thread(driver.close)


SEES = """(identities) => identities.every((identity) => {
  const video = document.querySelector(`video[data-identity="${identity}"]`);
  return video && video.readyState >= 2 && video.videoWidth > 0;
})"""


async def test_a_mixed_room_everyone_sees_everyone(server: ServerProcess, no_udp: Bridge) -> None:
    """A WebRTC page, a media socket page (without UDP) and a Python participant."""
    room = room_name()
    socket_page = await open_page(server, "socket-page", room, no_udp)
    webrtc_page = PageDriver(timeout=150)
    python = None
    try:
        await asyncio.to_thread(webrtc_page.call, "blank")
        await asyncio.to_thread(webrtc_page.call, "addScript",
                                path=str(TWILIO_VIDEO / "twilio-video.min.js"))
        joined = await asyncio.to_thread(webrtc_page.eval, CONNECT_WEBRTC, {
            "token": token(server, "webrtc-page"), "wsServer": signaling(server), "name": room})
        assert joined["state"] == "connected"
        python = await connect(token(server, "python"), room, server.url,
                               ice_host_addresses=LOOPBACK,
                               tracks=[LocalVideoTrack.from_frames(moving_frames())])
        videos: dict[str, RemoteVideoTrack] = {}
        python.on("track_subscribed", lambda event: isinstance(event.track, RemoteVideoTrack)
                  and event.participant is not None
                  and videos.__setitem__(event.participant.identity, event.track))

        await asyncio.to_thread(socket_page.wait_for, SEES, ["webrtc-page", "python"], 30)
        await asyncio.to_thread(webrtc_page.wait_for, SEES, ["socket-page", "python"], 30)
        for identity in ("socket-page", "webrtc-page"):
            track = await wait_for_key(videos, identity)
            frames = await asyncio.wait_for(take_frames(track, 5), 30)
            assert frames[-1].shape == (240, 320, 3) and frames[-1].mean() > 10
        for page, other in ((socket_page, "webrtc-page"), (webrtc_page, "socket-page")):
            first = await asyncio.to_thread(page.wait_for, SAMPLE, other, 30)
            await asyncio.sleep(1.0)
            second = await asyncio.to_thread(page.wait_for, SAMPLE, other, 30)
            assert first["hash"] != second["hash"], f"{other}'s video is frozen"
    finally:
        if python is not None:
            await python.disconnect()
        await asyncio.to_thread(socket_page.close)
        await asyncio.to_thread(webrtc_page.close)


async def wait_for_key(items: dict[str, Any], key: str, timeout: float = 20.0) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while key not in items and loop.time() < deadline:
        await asyncio.sleep(0.1)
    assert key in items, f"never subscribed to {key}; got {sorted(items)}"
    return items[key]
