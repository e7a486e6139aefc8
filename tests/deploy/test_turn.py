"""TURN: coturn with ``use-auth-secret`` relays the media of participants forced to relay.

The standalone server is given coturn's secret and URL; ``/video/token`` and the
signaling ``iced`` answer hand each participant TURN REST API credentials for its
identity, which Debian's coturn on 127.0.0.1 checks. Media only flows if coturn
accepted them: a participant with ``ice_transport_policy="relay"`` has no other path.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import re
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import requests

from jupyter_video.client import LocalVideoTrack, RemoteVideoTrack, RoomEvent, connect
from jupyter_video.server.turn import IceServers

from ..server_process import TOKEN, ServerProcess
from ..widgets.browser import (
    MEDIA_ON_LOOPBACK,
    REPO,
    SAMPLE_VIDEO,
    JupyterLab,
    first_track,
    missing_prerequisites,
    moving_frames,
    room_name,
    take_frames,
    token,
    write_notebook,
)
from ..widgets.driver import PageDriver
from .coturn import TURNSERVER, Coturn
from .standalone import StandaloneProcess

pytestmark = [
    pytest.mark.skipif(not Path(TURNSERVER).exists(), reason="coturn missing: make coturn"),
    pytest.mark.timeout(120),
]

AUTH = {"Authorization": f"token {TOKEN}"}
TWILIO_VIDEO_JS = REPO / "tests" / "browser" / "node_modules" / "twilio-video" / "dist" / (
    "twilio-video.min.js"
)
STUN = {"urls": ["stun:stun.example.org:3478"]}


@pytest.fixture(scope="module")
def coturn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Coturn]:
    server = Coturn(tmp_path_factory.mktemp("coturn")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def standalone(
    tmp_path_factory: pytest.TempPathFactory, coturn: Coturn
) -> Iterator[StandaloneProcess]:
    process = StandaloneProcess(
        tmp_path_factory.mktemp("turn-standalone"),
        video_config={
            "media_workers": 1,
            "ice_host_addresses": ["127.0.0.1"],
            "ice_servers": [STUN],
            "turn_urls": [coturn.url],
        },
        # The secret on the command line, as a systemd unit's Environment= would not show it.
        args=[f"--VideoApp.turn_secret={coturn.secret}"],
    ).start()
    yield process
    process.stop()


def test_token_endpoint_returns_turn_rest_api_credentials_for_the_identity(
    standalone: StandaloneProcess, coturn: Coturn
) -> None:
    before = time.time()
    reply = requests.get(
        f"{standalone.url}video/token", params={"room": "r", "identity": "Ada Lovelace"},
        headers=AUTH, timeout=10,
    ).json()
    fixed, turn = reply["ice_servers"]
    assert fixed == STUN
    assert turn["urls"] == [coturn.url]
    expiry, identity = turn["username"].split(":", 1)
    # coturn takes no spaces (or quotes, or parentheses) in a username.
    assert reply["identity"] == "Ada Lovelace" and identity == "Ada_Lovelace"
    # As long as the token: its exp claim.
    assert abs(int(expiry) - (before + 4 * 3600)) < 5
    digest = hmac.new(coturn.secret.encode(), turn["username"].encode(), hashlib.sha1).digest()
    assert turn["credential"] == base64.b64encode(digest).decode()


async def test_python_participants_forced_to_relay_exchange_frames_through_coturn(
    standalone: StandaloneProcess, coturn: Coturn
) -> None:
    room = room_name()
    # ice_servers not given: connect() asks the server (RSP ice), as twilio-video.js does.
    publisher = await connect(
        token(standalone, "relay publisher (2)"), room, standalone.url,
        tracks=[LocalVideoTrack.from_frames(moving_frames())],
        ice_host_addresses=["127.0.0.1"], ice_transport_policy="relay",
    )
    viewer = await connect(
        token(standalone, "relay-viewer"), room, standalone.url,
        ice_host_addresses=["127.0.0.1"], ice_transport_policy="relay",
    )
    try:
        tracks: list[RemoteVideoTrack] = []

        def on_subscribed(event: RoomEvent) -> None:
            if isinstance(event.track, RemoteVideoTrack):
                tracks.append(event.track)

        viewer.on("track_subscribed", on_subscribed)
        video = await first_track(tracks, "the publisher's video")
        frames = await asyncio.wait_for(take_frames(video, 10), 30)
        assert frames[-1].shape == (240, 320, 3)
        assert frames[-1].mean() > 60 and not np.array_equal(frames[0], frames[-1])
    finally:
        await publisher.disconnect()
        await viewer.disconnect()
    # An identity with spaces and parentheses still gets a username coturn takes.
    assert_relayed(coturn, "relay_publisher__2_", "relay-viewer")


def assert_relayed(coturn: Coturn, *identities: str) -> None:
    """coturn accepted each identity's credential (a wrong one is a 401) and bound a
    channel to a peer: the relay that carried its media."""
    log = coturn.log()
    for identity in identities:
        for request in ("ALLOCATE", "CHANNEL_BIND"):
            pattern = (rf"user <\d+:{re.escape(identity)}>: "
                       rf"incoming packet {request} processed, success")
            assert re.search(pattern, log), f"{identity}: no {request}\n{log[-3000:]}"


RELAY_CONNECT = """async ({token, wsServer, name, iceServers}) => {
  const tracks = await Twilio.Video.createLocalTracks({
    audio: false, video: {width: 320, height: 240}});
  const options = {name, wsServer, iceTransportPolicy: 'relay', insights: false, tracks};
  if (iceServers) { options.iceServers = iceServers; }  // else twilio-video asks (RSP ice)
  const room = await Twilio.Video.connect(token, options);
  window.room = room;
  room.on('trackSubscribed', (track, publication, participant) => {
    if (track.kind !== 'video') { return; }
    const video = track.attach();
    video.dataset.identity = participant.identity;
    document.body.append(video);
  });
  return {sid: room.sid, state: room.state};
}"""

# The candidate types of the page's selected ICE pairs (twilio-video keeps its
# RTCPeerConnection private: found through the senders of its local tracks).
SELECTED_CANDIDATES = """async () => {
  const types = [];
  for (const pc of window.harnessPeerConnections || []) {
    const stats = await pc.getStats();
    stats.forEach((report) => {
      if (report.type === 'transport' && report.selectedCandidatePairId) {
        const pair = stats.get(report.selectedCandidatePairId);
        types.push(stats.get(pair.localCandidateId).candidateType);
      }
    });
  }
  return types.length ? types : null;
}"""

RECORD_PEER_CONNECTIONS = """() => {
  window.harnessPeerConnections = [];
  const original = RTCPeerConnection.prototype.setRemoteDescription;
  RTCPeerConnection.prototype.setRemoteDescription = function (...args) {
    if (!window.harnessPeerConnections.includes(this)) { window.harnessPeerConnections.push(this); }
    return original.apply(this, args);
  };
  return true;
}"""

SAMPLE = """(identity) => {
  const video = document.querySelector(`video[data-identity="${identity}"]`);
  if (!video || video.readyState < 2 || !video.videoWidth) { return null; }
  const canvas = document.createElement('canvas');
  canvas.width = 32; canvas.height = 24;
  const context = canvas.getContext('2d');
  context.drawImage(video, 0, 0, 32, 24);
  const data = context.getImageData(0, 0, 32, 24).data;
  let sum = 0, hash = 0;
  for (let i = 0; i < data.length; i += 4) {
    sum += data[i] + data[i + 1] + data[i + 2];
    hash = (hash * 31 + data[i] + 7 * data[i + 1] + 13 * data[i + 2]) >>> 0;
  }
  return {mean: sum / (data.length / 4 * 3), hash, width: video.videoWidth};
}"""


requires_browser = pytest.mark.skipif(
    bool(missing_prerequisites()), reason="browser test prerequisites missing"
)


async def exchange_video_through_relay(
    standalone: StandaloneProcess, coturn: Coturn, room: str, page_token: str,
    ice_servers: list[dict[str, object]] | None, kernel_identity: str,
) -> None:
    """A Chromium page with iceTransportPolicy 'relay' and a Python participant forced to
    relay: each decodes the other's moving video, and the page's ICE pair is a relay one."""
    driver = PageDriver(timeout=100)
    kernel = None
    try:
        await asyncio.to_thread(driver.call, "blank")
        await asyncio.to_thread(driver.call, "addScript", path=str(TWILIO_VIDEO_JS))
        await asyncio.to_thread(driver.eval, RECORD_PEER_CONNECTIONS)
        joined = await asyncio.to_thread(driver.eval, RELAY_CONNECT, {
            "token": page_token, "name": room, "iceServers": ice_servers,
            "wsServer": f"ws://127.0.0.1:{standalone.port}/video/signaling"})
        assert joined["state"] == "connected"

        kernel = await connect(
            token(standalone, kernel_identity), room, standalone.url,
            tracks=[LocalVideoTrack.from_frames(moving_frames())],
            ice_host_addresses=["127.0.0.1"], ice_transport_policy="relay",
        )
        tracks: list[RemoteVideoTrack] = []
        kernel.on("track_subscribed", lambda event: tracks.append(event.track)
                  if isinstance(event.track, RemoteVideoTrack) else None)
        video = await first_track(tracks, "the page's camera")
        frames = await asyncio.wait_for(take_frames(video, 10), 30)
        assert frames[-1].shape == (240, 320, 3)
        assert frames[-1].mean() > 10 and not np.array_equal(frames[0], frames[-1])

        first = await asyncio.to_thread(driver.wait_for, SAMPLE, kernel_identity, 30)
        await asyncio.sleep(1.0)
        second = await asyncio.to_thread(driver.wait_for, SAMPLE, kernel_identity, 30)
        assert first["width"] == 320 and first["mean"] > 60 and first["hash"] != second["hash"]
        candidates = await asyncio.to_thread(driver.wait_for, SELECTED_CANDIDATES, None, 10)
        assert set(candidates) == {"relay"}, candidates
    finally:
        if kernel is not None:
            await kernel.disconnect()
        await asyncio.to_thread(driver.close)


@requires_browser
async def test_chromium_page_with_token_endpoint_ice_servers_relays_through_coturn(
    standalone: StandaloneProcess, coturn: Coturn
) -> None:
    """A plain twilio-video.js page gets its token and ice_servers from /video/token and
    connects with iceTransportPolicy 'relay'; a Python participant forced to relay
    receives its camera and publishes video the page renders."""
    room = room_name()
    grant = requests.get(f"{standalone.url}video/token", params={"room": room, "identity": "page"},
                         headers=AUTH, timeout=10).json()
    await exchange_video_through_relay(standalone, coturn, room, grant["token"],
                                       grant["ice_servers"], "relay-kernel")
    assert_relayed(coturn, "page", "relay-kernel")


@requires_browser
async def test_twilio_app_without_ice_servers_gets_turn_from_signaling(
    standalone: StandaloneProcess, coturn: Coturn
) -> None:
    """A Twilio app moved here unchanged: its server mints the token, its page calls
    connect() without iceServers, and twilio-video.js's own ``ice`` request gets the
    TURN credentials for the token's identity."""
    room = room_name()
    await exchange_video_through_relay(standalone, coturn, room, token(standalone, "app-page"),
                                       None, "app-kernel")
    assert_relayed(coturn, "app-page", "app-kernel")


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"ice_servers": [{"urls": "http://turn.example.org"}]}, "not an ICE server URL"),
        ({"ice_servers": [{"urls": ["turn:turn.example.org:3478"]}]},
         "give it a username and a credential"),
        ({"ice_servers": [{"url": "stun:stun.example.org"}]}, "unknown key(s) url"),
        ({"turn_secret": "s", "turn_urls": ["turn.example.org:3478"]}, "not an ICE server URL"),
        ({"turn_urls": ["turn:turn.example.org:3478"]}, "go together"),
    ],
)
def test_bad_ice_settings_say_which_setting_to_fix(
    settings: dict[str, object], message: str
) -> None:
    arguments: dict[str, object] = {"ice_servers": [], "turn_secret": None, "turn_urls": []}
    arguments.update(settings)
    with pytest.raises(ValueError, match="VideoApp") as error:
        IceServers.from_settings(**arguments)  # type: ignore[arg-type]
    assert message in str(error.value)


async def test_connect_refuses_relay_without_a_turn_server() -> None:
    with pytest.raises(ValueError, match="needs a TURN server"):
        await connect("token", "room", "http://127.0.0.1:1/", ice_servers=[STUN],
                      ice_transport_policy="relay")


# The configuration of every RTCPeerConnection the page makes (twilio-video's included).
RECORD_CONFIGURATIONS = """() => {
  window.harnessConfigs = [];
  const Original = window.RTCPeerConnection;
  window.RTCPeerConnection = function (configuration, ...rest) {
    window.harnessConfigs.push(JSON.parse(JSON.stringify(configuration || {})));
    return new Original(configuration, ...rest);
  };
  window.RTCPeerConnection.prototype = Original.prototype;
  return true;
}"""

WIDGET_CELL = """\
import json, pathlib
from jupyter_video import RoomWidget

w = RoomWidget(room={room!r}, identity="turn-widget")
w.observe(lambda change: pathlib.Path("widget_state.json").write_text(
    json.dumps({{"state": w.state, "error": w.error}})), names=["state", "error"])
w
"""


@pytest.fixture(scope="module")
def lab_server(
    tmp_path_factory: pytest.TempPathFactory, coturn: Coturn
) -> Iterator[ServerProcess]:
    """Jupyter with the extension (the widget's home), given coturn's secret and URL."""
    process = ServerProcess(
        tmp_path_factory.mktemp("turn-lab"),
        video_config={**MEDIA_ON_LOOPBACK, "turn_secret": coturn.secret,
                      "turn_urls": [coturn.url]},
    ).start()
    yield process
    process.stop()


@requires_browser
@pytest.mark.timeout(240)
async def test_room_widget_hands_the_token_endpoints_turn_servers_to_twilio_video(
    lab_server: ServerProcess, coturn: Coturn
) -> None:
    """The widget connects twilio-video.js with /video/token's ice_servers (TURN for its
    identity) and renders the video of a Python participant whose media reaches the
    server only through coturn.

    (Chromium, given TURN servers with the default iceTransportPolicy by twilio-video,
    gathers no relay candidates on this loopback-only machine, unlike a plain
    RTCPeerConnection in the same page; with 'relay' it does: the page tests above.)"""
    room = room_name()
    write_notebook(lab_server.root / "notebooks" / "turn.ipynb", WIDGET_CELL.format(room=room))
    driver = PageDriver(timeout=200)
    kernel = None
    try:
        lab = JupyterLab(driver, lab_server)
        await asyncio.to_thread(lab.open, "turn.ipynb")
        await asyncio.to_thread(driver.eval, RECORD_CONFIGURATIONS)
        await asyncio.to_thread(lab.run_first_cell)
        await asyncio.to_thread(driver.call, "wait", selector='.jv-state[data-state="connected"]',
                                timeout=90000, wait=100)
        kernel = await connect(
            token(lab_server, "turn-kernel"), room, lab_server.url,
            tracks=[LocalVideoTrack.from_frames(moving_frames())],
            ice_host_addresses=["127.0.0.1"], ice_transport_policy="relay",
        )
        first = await asyncio.to_thread(driver.wait_for, SAMPLE_VIDEO, "turn-kernel", 40)
        await asyncio.sleep(1.0)
        second = await asyncio.to_thread(driver.wait_for, SAMPLE_VIDEO, "turn-kernel", 30)
        assert first["mean"] > 60 and first["hash"] != second["hash"], (first, second)
        configurations = await asyncio.to_thread(driver.eval, "() => window.harnessConfigs")
    finally:
        if kernel is not None:
            await kernel.disconnect()
        await asyncio.to_thread(driver.close)
    # twilio-video's peer connection got /video/token's TURN server, with a credential
    # for the widget's identity that coturn accepts (the same HMAC as the tests above).
    [servers] = [c["iceServers"] for c in configurations]
    [turn] = servers
    assert turn["urls"] == [coturn.url] and turn["username"].endswith(":turn-widget")
    digest = hmac.new(coturn.secret.encode(), turn["username"].encode(), hashlib.sha1).digest()
    assert turn["credential"] == base64.b64encode(digest).decode()
    assert_relayed(coturn, "turn-kernel")
