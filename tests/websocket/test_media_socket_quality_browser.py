"""twilio-video.js 2.36 in headless Chromium over the media socket, with Twilio's
quality options: the quality channels open on the socket (sfu/socket_media_signaling.py),
so track switch-off and network quality work as over WebRTC.

The page connects with ``bandwidthProfile.video.clientTrackSwitchOffControl:
'manual'`` (``RemoteVideoTrack.switchOff()`` / ``switchOn()`` send render hints)
and ``networkQuality: {local: 3, remote: 1}``; a Python participant publishes video
over WebRTC. Asserted: the page's media socket connection lists the quality channels
granted, ``switchOff()`` fires ``switchedOff`` on the track and the socket stops
carrying its frames (bytes received over the socket fall to what the control and
quality messages take), ``switchOn()`` fires ``switchedOn`` and frames arrive again;
the page gets a network quality level for itself (with its stats) and for the
Python participant."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest

from jupyter_video.client import LocalVideoTrack, connect

from ..server_process import ServerProcess
from ..widgets.browser import LOOPBACK, moving_frames, requires_browser, room_name, token
from ..widgets.driver import PageDriver
from ..widgets.test_twilio_video_page import TWILIO_VIDEO
from .no_udp import Bridge, requires_namespaces
from .test_browser_media_socket import IMPORT, TRANSPORT_BUNDLE, signaling

pytestmark = [requires_browser, requires_namespaces, pytest.mark.timeout(150)]

CONNECT = """async ({token, wsServer, name, base}) => {
  const Transport = window.transport.WebSocketPeerConnection.forServer(base);
  window.peerConnections = [];
  class Recorded extends Transport {
    constructor(...args) { super(...args); window.peerConnections.push(this); }
  }
  window.switches = [];
  window.videos = {};
  const room = await Twilio.Video.connect(token, {
    name, wsServer, insights: false, tracks: [], RTCPeerConnection: Recorded,
    bandwidthProfile: {video: {mode: 'grid', clientTrackSwitchOffControl: 'manual'}},
    networkQuality: {local: 3, remote: 1}});
  window.room = room;
  room.on('trackSubscribed', (track, publication, participant) => {
    if (track.kind !== 'video') { return; }
    window.videos[participant.identity] = track;
    track.on('switchedOff', () => window.switches.push('off'));
    track.on('switchedOn', () => window.switches.push('on'));
    const video = track.attach();
    video.dataset.identity = participant.identity;
    video.framesShown = 0;
    const shown = () => { video.framesShown += 1; video.requestVideoFrameCallback(shown); };
    video.requestVideoFrameCallback(shown);
    document.body.append(video);
  });
  return {state: room.state};
}"""

STATE = """(identity) => {
  const track = window.videos[identity];
  const video = document.querySelector(`video[data-identity="${identity}"]`);
  const local = window.room.localParticipant;
  const remote = [...window.room.participants.values()].find((p) => p.identity === identity);
  return {
    subscribed: Boolean(track), switchedOff: track ? track.isSwitchedOff : null,
    switches: window.switches, width: video ? video.videoWidth : 0,
    frames: video ? video.framesShown : 0,
    bytes: window.peerConnections[0]._bytesReceived,
    local: local.networkQualityLevel,
    localVideo: local.networkQualityStats ? local.networkQualityStats.video : null,
    remote: remote ? remote.networkQualityLevel : null,
    transport: window.peerConnections[0].iceConnectionState,
  };
}"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    process = ServerProcess(tmp_path_factory.mktemp("ws-quality"),
                            video_config={"media_workers": 1, "ice_host_addresses": LOOPBACK}
                            ).start()
    yield process
    process.stop()


@pytest.fixture
def no_udp(server: ServerProcess) -> Iterator[Bridge]:
    bridge = Bridge(server.port)
    yield bridge
    bridge.close()


async def until(driver: PageDriver, what: str, test: Any, timeout: float = 30) -> dict[str, Any]:
    """The page's STATE once ``test`` holds for it; fail with the last one."""
    state: dict[str, Any] = {}
    for _ in range(int(timeout / 0.5)):
        state = await asyncio.to_thread(driver.eval, STATE, "publisher")
        if test(state):
            return state
        await asyncio.sleep(0.5)
    raise AssertionError(f"not within {timeout}s: {what}: {state}\n{driver.console_tail()}")


async def per_second(driver: PageDriver, seconds: float = 2.0) -> dict[str, float]:
    """Frames shown and bytes the socket carried, per second, over ``seconds``."""
    before = await asyncio.to_thread(driver.eval, STATE, "publisher")
    await asyncio.sleep(seconds)
    after = await asyncio.to_thread(driver.eval, STATE, "publisher")
    return {key: (after[key] - before[key]) / seconds for key in ("frames", "bytes")}


async def test_over_the_media_socket_a_track_switches_off_and_on_and_levels_arrive(
        server: ServerProcess, no_udp: Bridge) -> None:
    room = room_name()
    driver = PageDriver(timeout=120, wrap=no_udp.wrap)
    publisher = None
    try:
        await asyncio.to_thread(driver.call, "blank")
        await asyncio.to_thread(driver.call, "addScript",
                                path=str(TWILIO_VIDEO / "twilio-video.min.js"))
        assert await asyncio.to_thread(driver.eval, IMPORT, TRANSPORT_BUNDLE.read_text())
        joined = await asyncio.to_thread(driver.eval, CONNECT, {
            "token": token(server, "page"), "wsServer": signaling(server), "name": room,
            "base": server.url})
        assert joined["state"] == "connected"
        publisher = await connect(token(server, "publisher"), room, server.url,
                                  tracks=[LocalVideoTrack.from_frames(moving_frames())],
                                  ice_host_addresses=LOOPBACK, network_quality=True)
        await until(driver, "the publisher's video plays", lambda s: s["width"] == 320)
        assert (await asyncio.to_thread(driver.eval, STATE, "publisher"))["transport"] == \
            "connected"  # the media socket, not ICE
        playing = await per_second(driver)

        await asyncio.to_thread(driver.eval, "() => window.videos.publisher.switchOff() && null")
        await until(driver, "switchedOff", lambda s: s["switchedOff"] and "off" in s["switches"])
        await asyncio.sleep(1.0)  # what was on its way
        off = await per_second(driver)
        # The SFU sends its frames no more: nothing is shown, and what the socket
        # still carries is control and MSP messages (network quality at verbosity 3:
        # about 900 bytes a second against 4,900 with this simple video).
        assert playing["frames"] > 10 and off["frames"] == 0, (off, playing)
        assert off["bytes"] < 0.3 * playing["bytes"], (off, playing)

        await asyncio.to_thread(driver.eval, "() => window.videos.publisher.switchOn() && null")
        await until(driver, "switchedOn", lambda s: not s["switchedOff"]
                    and s["switches"][-1:] == ["on"])
        on = await per_second(driver)
        assert on["frames"] > 10, (on, playing)

        # Network quality from the socket's own counters, for the page and the
        # Python participant (which enabled the API: Twilio lists only those).
        state = await until(driver, "network quality levels", lambda s: isinstance(
            s["local"], int) and isinstance(s["remote"], int) and s["localVideo"])
        assert 0 <= state["local"] <= 5 and 0 <= state["remote"] <= 5, state
        assert state["local"] >= 4, state  # nothing dropped on loopback
        assert state["localVideo"]["recv"] in range(6), state
        print(json.dumps({"test": "media_socket_switch_off", "per_second": {
            "playing": playing, "switched_off": off, "on": on},
            "levels": {"local": state["local"], "remote": state["remote"]}}))
    finally:
        if publisher is not None:
            await publisher.disconnect()
        await asyncio.to_thread(driver.close)
