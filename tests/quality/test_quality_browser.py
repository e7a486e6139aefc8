"""Twilio's quality APIs with twilio-video 2.x in Chromium: a VP8 simulcast publisher,
subscribers whose Bandwidth Profile, render dimensions, switch-off and priorities
decide the layer each gets (decoded frame sizes in each subscriber's getStats),
and Network Quality levels; a plain RTCPeerConnection publishing RID simulcast
(its RSP spoken from the test with the project's own signaling client)."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from jupyter_video.client.signaling import Closed, SignalingConnection, signaling_url
from jupyter_video.signaling import rsp

from ..server_process import ServerProcess
from ..widgets.browser import MEDIA_ON_LOOPBACK, REPO, requires_browser, room_name, token
from ..widgets.test_twilio_compat_browser import App

pytestmark = [requires_browser, pytest.mark.timeout(300)]

QUALITY_APP = REPO / "tests" / "quality" / "quality_app.js"
SIMULCAST = {"preferredVideoCodecs": "auto"}  # adaptive simulcast: twilio-video scales the layers
MANUAL = {"bandwidthProfile": {"video": {
    "mode": "grid", "clientTrackSwitchOffControl": "manual",
    "contentPreferencesMode": "manual"}}}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    process = ServerProcess(tmp_path_factory.mktemp("quality-server"),
                            video_config=MEDIA_ON_LOOPBACK).start()
    yield process
    process.stop()


@pytest.fixture
def page(server: ServerProcess) -> Iterator[App]:
    app = App(server)
    app.driver.call("addScript", path=str(QUALITY_APP))
    yield app
    app.close()


def until(page: App, what: str, check: Any, timeout: float = 30.0) -> Any:
    """The first truthy ``check()`` (polled), else fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}\n{page.driver.console_tail()}")
        time.sleep(0.25)


def inbound(page: App, key: str) -> dict[str, Any]:
    """The subscriber's one inbound video stream."""
    streams = page.call("inbound", key)
    assert len(streams) == 1, streams
    return dict(streams[0])


def decoding_at(page: App, key: str, width: int) -> bool:
    """Whether ``key`` decodes frames ``width`` wide and still more of them."""
    first = inbound(page, key)
    if first["width"] != width:
        return False
    time.sleep(0.5)
    return bool(inbound(page, key)["framesDecoded"] > first["framesDecoded"])


def one_decoding_at(page: App, key: str, width: int) -> bool:
    """Whether one of ``key``'s inbound videos decodes frames ``width`` wide and more."""
    first = {s["width"]: s["framesDecoded"] for s in page.call("inbound", key)}
    time.sleep(0.5)
    return any(s["width"] == width and s["framesDecoded"] > first.get(width, 1 << 30)
               for s in page.call("inbound", key))


async def test_render_dimensions_pick_each_subscribers_layer_and_switch_off_stops_packets(
    page: App,
) -> None:
    """One simulcast publisher (640x360: Chrome sends 320x180 and 640x360), two
    subscribers: the one rendering a small tile gets the low layer, the one rendering
    large the top one, both decoding; a track switched off fires switchedOff, and no
    more packets arrive; switched on it fires switchedOn and decodes again."""
    name = room_name()
    joined = await asyncio.to_thread(page.connect, "alice", name, options=SIMULCAST)
    assert "sid" in joined, joined
    await asyncio.to_thread(page.call, "publishCameraOf", "alice", 640, 360)
    for key in ("bob", "carol"):
        joined = await asyncio.to_thread(page.connect, key, name, options=MANUAL)
        assert "sid" in joined, joined
        await asyncio.to_thread(until, page, f"{key} subscribed to alice's video",
                                lambda k=key: page.call("remoteVideo", k, "alice"))
    await asyncio.to_thread(page.call, "setRenderDimensions", "bob", "alice", 160, 90)
    await asyncio.to_thread(page.call, "setRenderDimensions", "carol", "alice", 1280, 720)
    await asyncio.to_thread(until, page, "bob decodes the 320-wide layer",
                            lambda: decoding_at(page, "bob", 320), 45)
    await asyncio.to_thread(until, page, "carol decodes the 640-wide layer",
                            lambda: decoding_at(page, "carol", 640), 45)

    await asyncio.to_thread(page.call, "switchOff", "bob", "alice")
    await asyncio.to_thread(until, page, "switchedOff fired for bob", lambda: any(
        s["event"] == "switchedOff" for s in page.call("switches", "bob")))
    assert page.call("remoteVideo", "bob", "alice")["switchedOff"] is True
    time.sleep(1.0)  # what was in flight has arrived
    before = inbound(page, "bob")["framesReceived"]
    time.sleep(2.0)
    assert inbound(page, "bob")["framesReceived"] == before  # nothing forwarded
    assert decoding_at(page, "carol", 640)  # the other subscriber unaffected

    await asyncio.to_thread(page.call, "switchOn", "bob", "alice")
    await asyncio.to_thread(until, page, "switchedOn fired for bob", lambda: any(
        s["event"] == "switchedOn" for s in page.call("switches", "bob")))
    await asyncio.to_thread(until, page, "bob decodes again",
                            lambda: inbound(page, "bob")["framesDecoded"] > before + 10)


async def test_a_subscription_bitrate_cap_gives_the_capped_subscriber_the_low_layer(
    page: App,
) -> None:
    """maxSubscriptionBitrate 250 kbit/s: that subscriber gets the 320-wide layer, an
    uncapped one the 640-wide one; the publisher's priority decides which track
    stays on when the cap holds only one."""
    name = room_name()
    await asyncio.to_thread(page.connect, "alice", name, options=SIMULCAST)
    await asyncio.to_thread(page.call, "publishCameraOf", "alice", 640, 360)
    capped = {"bandwidthProfile": {"video": {"mode": "grid", "maxSubscriptionBitrate": 250_000}}}
    await asyncio.to_thread(page.connect, "bob", name, options=capped)
    await asyncio.to_thread(page.connect, "carol", name, options={"bandwidthProfile": {
        "video": {"mode": "grid"}}})
    await asyncio.to_thread(until, page, "bob decodes the 320-wide layer",
                            lambda: decoding_at(page, "bob", 320), 45)
    await asyncio.to_thread(until, page, "carol decodes the 640-wide layer",
                            lambda: decoding_at(page, "carol", 640), 45)
    # Each choice, with its inputs, is in the Jupyter server's log.
    assert "rendered at [(640, 360)]" in page.server.log_text()


async def test_network_quality_levels_reach_local_and_remote_participants(page: App) -> None:
    """networkQuality {local: 3, remote: 3}: each participant gets a level 0-5 for
    itself (with audio/video send/recv) and for the other participant."""
    name = room_name()
    options = {"networkQuality": {"local": 3, "remote": 3}}
    for key in ("alice", "bob"):
        joined = await asyncio.to_thread(page.connect, key, name, camera=True, tone=True,
                                         options=options)
        assert "sid" in joined, joined
    for key, other in (("alice", "bob"), ("bob", "alice")):
        quality = await asyncio.to_thread(until, page, f"{key}'s levels", lambda k=key, o=other: (
            q if isinstance((q := page.call("networkQuality", k))["local"], int)
            and any(r["identity"] == o and isinstance(r["level"], int) for r in q["remotes"])
            and q["localLevels"]["video"]["sendStats"] is not None  # measured once at least
            else None))
        assert 0 <= quality["local"] <= 5
        video = quality["localLevels"]["video"]
        assert video["send"] in range(6), quality
        # Verbosity 3: the stats behind the levels, as twilio-video parses them (it
        # keeps the first ones while the level stays the same: participant.js).
        assert video["sendStats"]["fractionLost"]["fractionLost"] < 0.05, video
        assert video["sendStats"]["fractionLost"]["level"] in range(6), video
        assert video["recvStats"]["latency"]["rtt"] >= 0, video
        assert "actual" in video["sendStats"]["bandwidth"], video
        # A loopback link loses nothing: the levels say so.
        assert quality["local"] >= 4, quality


def switched(page: App, key: str, identity: str) -> bool | None:
    """Whether ``identity``'s video is switched off for ``key`` (None: not subscribed)."""
    video = page.call("remoteVideo", key, identity)
    return None if video is None else bool(video["switchedOff"])


async def test_priorities_decide_which_track_is_switched_off_under_a_cap(page: App) -> None:
    """A cap that carries one low layer: the track its publisher made high priority
    stays on and the other is switched off; the subscriber raising the other's
    priority above it (RemoteVideoTrack.setPriority) turns the choice around."""
    name = room_name()
    await asyncio.to_thread(page.connect, "alice", name, options=SIMULCAST)
    await asyncio.to_thread(page.call, "publishCameraOf", "alice", 640, 360, "high")
    await asyncio.to_thread(page.connect, "dave", name, options=SIMULCAST)
    await asyncio.to_thread(page.call, "publishCameraOf", "dave", 640, 360, "standard")
    capped = {"bandwidthProfile": {"video": {"mode": "collaboration",
                                             "maxSubscriptionBitrate": 220_000}}}
    await asyncio.to_thread(page.connect, "bob", name, options=capped)
    await asyncio.to_thread(until, page, "dave's track off, alice's on", lambda: (
        switched(page, "bob", "dave") is True and switched(page, "bob", "alice") is False))
    await asyncio.to_thread(until, page, "bob decodes alice's low layer",
                            lambda: one_decoding_at(page, "bob", 320), 45)
    await asyncio.to_thread(page.call, "setSubscribePriority", "bob", "dave", "high")
    await asyncio.to_thread(page.call, "setSubscribePriority", "bob", "alice", "low")
    await asyncio.to_thread(until, page, "alice's track off, dave's on", lambda: (
        switched(page, "bob", "alice") is True and switched(page, "bob", "dave") is False))


async def test_a_classrooms_spotlight_keeps_its_video_on_under_a_cap(
    page: App, server: ServerProcess
) -> None:
    """Bandwidth follows the spotlight: two standard-priority cameras and a cap that
    carries one; the teacher's spotlight (the classroom's, over its REST handler)
    decides which stays on, and moving it turns the choice around."""
    from jupyter_video.account import Credentials
    from jupyter_video.classroom import Classroom

    raw = server.credentials()
    teacher = Classroom(name := room_name(), server=server.url, credentials=Credentials(
        raw["account_sid"], raw["auth_token"], raw["api_key_sid"], raw["api_key_secret"],
        server.url))
    await asyncio.to_thread(page.connect, "alice", name, options=SIMULCAST)
    await asyncio.to_thread(page.call, "publishCameraOf", "alice", 640, 360, "standard")
    await asyncio.to_thread(page.connect, "dave", name, options=SIMULCAST)
    await asyncio.to_thread(page.call, "publishCameraOf", "dave", 640, 360, "standard")
    capped = {"bandwidthProfile": {"video": {"mode": "collaboration",
                                             "maxSubscriptionBitrate": 220_000}}}
    await asyncio.to_thread(page.connect, "bob", name, options=capped)
    for lit, dark in (("dave", "alice"), ("alice", "dave")):
        await asyncio.to_thread(teacher.spotlight, lit)
        await asyncio.to_thread(until, page, f"{lit} spotlit: {dark}'s track off, {lit}'s on",
                                lambda lit=lit, dark=dark: (
                                    switched(page, "bob", dark) is True
                                    and switched(page, "bob", lit) is False))


async def test_publisher_hints_turn_off_a_layer_nobody_needs(page: App) -> None:
    """Adaptive simulcast: while the only subscriber renders a small tile, the
    publisher's 640-wide encoding goes inactive (Chrome's getStats); rendered large,
    it is active again."""
    name = room_name()
    await asyncio.to_thread(page.connect, "alice", name, options=SIMULCAST)
    await asyncio.to_thread(page.call, "publishCameraOf", "alice", 640, 360)
    await asyncio.to_thread(page.connect, "bob", name, options=MANUAL)
    await asyncio.to_thread(until, page, "bob subscribed",
                            lambda: page.call("remoteVideo", "bob", "alice"))

    def top_active(active: bool) -> bool:
        top = [e for e in page.call("encodings", "alice") if e["width"] == 640]
        return bool(top) and all(e["active"] is active for e in top)

    await asyncio.to_thread(page.call, "setRenderDimensions", "bob", "alice", 160, 90)
    await asyncio.to_thread(until, page, "the 640-wide encoding inactive",
                            lambda: top_active(False))
    await asyncio.to_thread(until, page, "bob decodes the 320-wide layer",
                            lambda: decoding_at(page, "bob", 320), 45)
    await asyncio.to_thread(page.call, "setRenderDimensions", "bob", "alice", 1280, 720)
    await asyncio.to_thread(until, page, "the 640-wide encoding active again",
                            lambda: top_active(True))
    await asyncio.to_thread(until, page, "bob decodes the 640-wide layer",
                            lambda: decoding_at(page, "bob", 640), 45)


RID_EXTENSIONS = ("urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id",
                  "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id")


def video_section(sdp: str) -> str:
    return next(s for s in sdp.split("\r\nm=")[1:] if s.startswith("video"))


class RidPublisher:
    """The page's plain peer connection in a room, its RSP spoken from here."""

    def __init__(self, page: App, server: ServerProcess) -> None:
        self.page, self.server = page, server
        self.pc_id = str(uuid.uuid4())
        self.signaling = SignalingConnection(signaling_url(server.url))
        self.answers: asyncio.Queue[str] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None
        self.session = ""

    async def join(self, name: str, width: int, height: int) -> tuple[str, str]:
        """Connect with the page's offer; returns (offer, answer) SDPs."""
        offer = await asyncio.to_thread(self.page.call, "ridOffer", width, height)
        connect = rsp.Connect(
            token=token(self.server, "rid-publisher"), name=name,
            participant=rsp.LocalParticipantState(1, [rsp.LocalTrackState(
                id=offer["trackId"], kind="video", name="camera", enabled=True)]),
            peer_connections=[rsp.PeerConnectionState(
                self.pc_id, description=rsp.Description("offer", 1, offer["sdp"]))],
            ice_servers="overrode", subscribe={"rules": [{"type": "include", "all": True}],
                                               "revision": 1},
            format="unified")
        await self.signaling.open(connect.to_dict())
        self.task = asyncio.ensure_future(self._serve())
        answer = await asyncio.wait_for(self.answers.get(), 20)
        await asyncio.to_thread(self.page.call, "ridAnswer", answer)
        return offer["sdp"], answer

    async def _serve(self) -> None:
        """Answers to the page; the server's offers answered by the page."""
        while True:
            body: Any = await self.signaling.inbox.get()
            if isinstance(body, Closed):
                return
            self.session = body.get("session") or self.session
            for state in body.get("peer_connections") or []:
                description = state.get("description") or {}
                if description.get("type") == "answer":
                    self.answers.put_nowait(description["sdp"])
                elif description.get("type") == "offer":
                    sdp = await asyncio.to_thread(self.page.call, "ridAnswerOffer",
                                                  description["sdp"])
                    await self.signaling.send(rsp.Update(
                        session=self.session, peer_connections=[rsp.PeerConnectionState(
                            self.pc_id, description=rsp.Description(
                                "answer", description["revision"], sdp))]).to_dict())

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
        with contextlib.suppress(Exception):
            await self.signaling.close()


async def test_rid_simulcast_layers_reach_subscribers_by_their_render_size(
    page: App, server: ServerProcess
) -> None:
    """RID simulcast as Chrome offers it without munging: a plain RTCPeerConnection
    with ``sendEncodings`` rids q, h, f (``scaleResolutionDownBy`` 4, 2, 1) offers
    ``a=simulcast:send q;h;f``, ``a=rid`` lines and the RID header extensions, and
    no SSRCs. The SFU's answer receives it; the packet path learns each layer's
    SSRC from the RID header extension; two subscribers rendering at different
    sizes decode different layers."""
    name = room_name()
    publisher = RidPublisher(page, server)
    try:
        offer, answer = await publisher.join(name, 1280, 720)
        offered, answered = video_section(offer), video_section(answer)
        # What Chrome offers, unmunged: RIDs, no SSRCs.
        assert "a=simulcast:send q;h;f" in offered, offered
        assert "a=rid:q send" in offered and "a=ssrc:" not in offered, offered
        # What the SFU answers: it receives each RID, with the extensions naming them.
        assert "a=simulcast:recv q;h;f" in answered, answered
        for rid in "qhf":
            assert f"a=rid:{rid} recv" in answered, answered
        for uri in RID_EXTENSIONS:
            assert uri in answered, answered
        await asyncio.to_thread(until, page, "the publisher encodes three layers", lambda: (
            len(e := page.call("ridEncodings")) == 3 and all(
                v["framesEncoded"] > 0 for v in e.values())))

        for key in ("bob", "carol"):
            joined = await asyncio.to_thread(page.connect, key, name, options=MANUAL)
            assert "sid" in joined, joined
            await asyncio.to_thread(until, page, f"{key} subscribed to the RID video",
                                    lambda k=key: page.call("remoteVideo", k, "rid-publisher"))
        await asyncio.to_thread(page.call, "setRenderDimensions", "bob", "rid-publisher", 320, 180)
        await asyncio.to_thread(page.call, "setRenderDimensions", "carol", "rid-publisher",
                                1280, 720)
        sizes = await asyncio.to_thread(page.call, "ridEncodings")
        low, top = sizes["q"]["width"], sizes["f"]["width"]
        assert low < top, sizes
        await asyncio.to_thread(until, page, f"bob decodes the {low}-wide layer (q)",
                                lambda: decoding_at(page, "bob", low), 60)
        await asyncio.to_thread(until, page, f"carol decodes the {top}-wide layer (f)",
                                lambda: decoding_at(page, "carol", top), 60)
        await asyncio.to_thread(until, page, f"bob still decodes the {low}-wide layer",
                                lambda: decoding_at(page, "bob", low), 10)
        assert page.call("switches", "bob") == []  # never switched off on the way
    finally:
        await publisher.close()
