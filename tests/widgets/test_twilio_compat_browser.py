"""What twilio-video.js apps rely on, with twilio-video 2.36 in Chromium against this server.

Each test drives pages that load Twilio's own ``twilio-video.min.js`` and
``twilio_app.js`` (connect() the way Twilio's examples call it; a page may hold
several participants, one room object each), with rooms and tokens made by
Twilio's own helper library where a Twilio app would use it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from twilio.jwt.access_token import AccessToken as TwilioAccessToken
from twilio.jwt.access_token.grants import VideoGrant as TwilioVideoGrant

from jupyter_video.client import (
    LocalVideoTrack,
    RemoteDataTrack,
    RemoteVideoTrack,
    connect,
)

from ..conftest import make_twilio_client
from ..server_process import ServerProcess
from .browser import (
    LOOPBACK,
    MEDIA_ON_LOOPBACK,
    REPO,
    first_track,
    moving_frames,
    requires_browser,
    room_name,
    take_frames,
    token,
)
from .driver import PageDriver

pytestmark = [requires_browser, pytest.mark.timeout(240)]

TWILIO_VIDEO = REPO / "tests" / "browser" / "node_modules" / "twilio-video" / "dist"
APP = REPO / "tests" / "widgets" / "twilio_app.js"
REGION = "de1"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    process = ServerProcess(tmp_path_factory.mktemp("compat-server"),
                            video_config={**MEDIA_ON_LOOPBACK, "region": REGION}).start()
    yield process
    process.stop()


class App:
    """One Chromium page with twilio-video.js and twilio_app.js; its calls are blocking."""

    def __init__(self, server: ServerProcess) -> None:
        self.server = server
        self.driver = PageDriver(timeout=230)
        self.driver.call("blank")
        self.driver.call("addScript", path=str(TWILIO_VIDEO / "twilio-video.min.js"))
        self.driver.call("addScript", path=str(APP))

    def call(self, method: str, *args: Any) -> Any:
        return self.driver.eval(f"(args) => app.{method}(...args)", list(args))

    def connect(self, key: str, name: str, jwt: str | None = None, **spec: Any) -> Any:
        ws = f"ws://127.0.0.1:{self.server.port}{self.server.base_url}video/signaling"
        return self.call("connect", {"key": key, "token": jwt or token(self.server, key),
                                     "wsServer": ws, "name": name, **spec})

    def poll(self, method: str, *args: Any, timeout: float = 20.0) -> Any:
        """The first truthy result of ``app.method(*args)`` (awaited in the page)."""
        deadline = time.monotonic() + timeout
        while not (result := self.call(method, *args)):
            if time.monotonic() > deadline:
                raise AssertionError(f"app.{method}{args}: nothing within {timeout}s")
            time.sleep(0.2)
        return result

    def wait(self, key: str, check: Callable[[dict[str, Any]], Any], timeout: float = 30.0) -> Any:
        """The first truthy ``check(state)`` of participant ``key`` (polled)."""
        deadline = time.monotonic() + timeout
        while True:
            state = self.call("state", key)
            result = check(state)
            if result:
                return result
            if time.monotonic() > deadline:
                raise AssertionError(f"{key}: not so within {timeout}s: {state}\n"
                                     f"{self.driver.console_tail()}")
            time.sleep(0.1)

    def close(self) -> None:
        self.driver.close()


@pytest.fixture
def app(server: ServerProcess) -> Iterator[App]:
    page = App(server)
    yield page
    page.close()


def twilio_token(server: ServerProcess, identity: str, room: str | None = None) -> str:
    """A token minted by Twilio's own helper library with this server's API key."""
    creds = server.credentials()
    access = TwilioAccessToken(creds["account_sid"], creds["api_key_sid"],
                               creds["api_key_secret"], identity=identity)
    access.add_grant(TwilioVideoGrant(room=room))
    return str(access.to_jwt())


def subscribed(state: dict[str, Any], kind: str, identity: str | None = None) -> bool:
    return any(e["event"] == "trackSubscribed" and e["kind"] == kind
               and (identity is None or e["identity"] == identity) for e in state["events"])


def video_codecs_sent(app: App, key: str, timeout: float = 20.0) -> list[str]:
    """The codecs of participant ``key``'s video streams, once they encode frames."""
    deadline = time.monotonic() + timeout
    while True:
        streams = [s for s in app.call("outbound", key) if s["kind"] == "video"]
        if streams and all(s["framesEncoded"] > 0 and s["codec"] for s in streams):
            return [s["codec"] for s in streams]
        if time.monotonic() > deadline:
            raise AssertionError(f"{key} encodes no video: {streams}")
        time.sleep(0.2)


def video_sections(sdp: str) -> list[str]:
    return [section for section in sdp.split("\r\nm=")[1:] if section.startswith("video")]


def test_a_rest_created_room_is_joined_by_sid_with_regions_and_recording_state(
    app: App, server: ServerProcess
) -> None:
    client = make_twilio_client(server)
    created = client.video.v1.rooms.create(unique_name=room_name())
    joined = app.connect("by-sid", created.sid, jwt=twilio_token(server, "by-sid"))
    assert joined.get("error") is None, joined
    assert joined["sid"] == created.sid and joined["name"] == created.unique_name
    assert joined["mediaRegion"] == REGION and joined["signalingRegion"] == REGION
    # A token whose grant names the room by SID joins it by unique name.
    granted = app.connect("granted", created.unique_name,
                          jwt=twilio_token(server, "granted", created.sid))
    assert granted["sid"] == created.sid
    app.wait("by-sid", lambda s: s["participants"] == ["granted"])

    client.video.v1.rooms(created.sid).update(status="completed")
    app.wait("by-sid", lambda s: any(e["event"] == "disconnected" and e["code"] == 53118
                                     for e in s["events"]))
    late = app.connect("late", created.sid, jwt=twilio_token(server, "late"))
    assert late["error"]["code"] == 53118, late

    recorded = client.video.v1.rooms.create(unique_name=room_name(),
                                            record_participants_on_connect=True)
    first = app.connect("recorded", recorded.sid, camera=True)
    assert first["isRecording"] is True, first  # at connect: the room records from the start


async def test_without_automatic_subscription_media_waits_for_rest_subscribe_rules(
    app: App, server: ServerProcess
) -> None:
    name = room_name()
    publisher = await connect(token(server, "publisher"), name, server.url,
                              tracks=[LocalVideoTrack.from_frames(moving_frames())],
                              ice_host_addresses=LOOPBACK)
    try:
        joined = await asyncio.to_thread(app.connect, "viewer", name,
                                         options={"automaticSubscription": False})
        assert joined.get("error") is None, joined
        await asyncio.to_thread(app.wait, "viewer", lambda s: s["participants"] == ["publisher"])
        client = make_twilio_client(server)
        viewer = client.video.v1.rooms(joined["sid"]).participants("viewer")
        rules = await asyncio.to_thread(lambda: viewer.subscribe_rules.fetch().rules)
        assert [(rule["type"], rule["all"]) for rule in rules] == [("exclude", True)]
        await asyncio.sleep(2.0)  # long enough for any subscription to have happened
        state = await asyncio.to_thread(app.call, "state", "viewer")
        assert not any(e["event"] == "trackSubscribed" for e in state["events"]), state
        assert await asyncio.to_thread(viewer.subscribed_tracks.list) == []

        await asyncio.to_thread(viewer.subscribe_rules.update,
                                rules=[{"type": "include", "publisher": "publisher"}])
        await asyncio.to_thread(app.wait, "viewer", lambda s: subscribed(s, "video"))
        frame = await asyncio.to_thread(app.poll, "sample",
                                        {"key": "viewer", "identity": "publisher"})
        assert frame["mean"] > 60 and (frame["width"], frame["height"]) == (320, 240)
    finally:
        await publisher.disconnect()


async def test_an_h264_room_carries_no_vp8_and_turns_vp8_simulcast_off(
    app: App, server: ServerProcess
) -> None:
    client = make_twilio_client(server)
    room = client.video.v1.rooms.create(unique_name=room_name(), video_codecs=["H264"])
    joined = await asyncio.to_thread(
        app.connect, "h264", room.unique_name, camera=True,
        options={"preferredVideoCodecs": [{"codec": "VP8", "simulcast": True}]})
    assert joined.get("error") is None, joined
    viewer = await connect(token(server, "viewer"), room.unique_name, server.url,
                           ice_host_addresses=LOOPBACK)
    try:
        tracks: list[RemoteVideoTrack] = []
        viewer.on("track_subscribed", lambda event: isinstance(event.track, RemoteVideoTrack)
                  and tracks.append(event.track))
        frames = await asyncio.wait_for(take_frames(await first_track(tracks, "h264"), 5), 30)
        assert frames[-1].shape == (240, 320, 3) and frames[-1].mean() > 10
        assert await asyncio.to_thread(video_codecs_sent, app, "h264") == ["video/H264"]
        for description in await asyncio.to_thread(app.call, "descriptions", "h264"):
            for section in video_sections(description["remote"]):
                assert "VP8/90000" not in section and "H264/90000" in section
            assert "a=ssrc-group:SIM" not in description["local"]  # reverted by twilio-video
    finally:
        await viewer.disconnect()

    vp8 = client.video.v1.rooms.create(unique_name=room_name(), video_codecs=["VP8"])
    await asyncio.to_thread(app.connect, "vp8", vp8.unique_name, camera=True,
                            options={"preferredVideoCodecs": ["H264"]})
    assert await asyncio.to_thread(video_codecs_sent, app, "vp8") == ["video/VP8"]
    for description in await asyncio.to_thread(app.call, "descriptions", "vp8"):
        assert all("H264" not in section for section in video_sections(description["remote"]))


def test_h264_is_forwarded_between_browsers_and_decoded(app: App, server: ServerProcess) -> None:
    client = make_twilio_client(server)
    room = client.video.v1.rooms.create(unique_name=room_name(), video_codecs=["H264"])
    assert app.connect("h264-camera", room.unique_name, camera=True).get("error") is None
    assert app.connect("h264-viewer", room.unique_name).get("error") is None
    app.wait("h264-viewer", lambda s: subscribed(s, "video", "h264-camera"))
    frame = app.poll("sample", {"key": "h264-viewer", "identity": "h264-camera"})
    assert frame["mean"] > 10 and (frame["width"], frame["height"]) == (320, 240)

    def decoding(streams: list[dict[str, Any]]) -> bool:
        return any(s["codec"] == "video/H264" and s["framesDecoded"] >= 60 for s in streams)

    deadline = time.monotonic() + 30
    streams = app.call("inbound", "h264-viewer")
    while not decoding(streams):
        assert time.monotonic() < deadline, streams
        time.sleep(0.3)
        streams = app.call("inbound", "h264-viewer")
    [h264] = [s for s in streams if s["codec"] == "video/H264"]
    assert (h264["width"], h264["height"]) == (320, 240)
    assert h264["framesDecoded"] >= h264["framesReceived"] - 5  # decoded, not dropped
    assert h264["framesDropped"] <= 5


def test_an_audio_only_room_refuses_video_with_53125(app: App, server: ServerProcess) -> None:
    client = make_twilio_client(server)
    room = client.video.v1.rooms.create(unique_name=room_name(), audio_only=True)
    joined = app.connect("voice", room.unique_name, tone=True)
    assert joined.get("error") is None, joined
    refused = app.call("publishCamera", "voice")
    assert refused["error"]["code"] == 53125, refused
    assert app.call("state", "voice")["published"] == ["audio"]
    published = client.video.v1.rooms(room.sid).participants("voice").published_tracks.list()
    assert [track.kind for track in published] == ["audio"]


def test_opus_dtx_makes_silence_cost_a_fraction_of_speech(app: App, server: ServerProcess
                                                         ) -> None:
    joined = app.connect("dtx", room_name(), tone=True,
                         options={"preferredAudioCodecs": [{"codec": "opus", "dtx": True}]})
    assert joined.get("error") is None, joined
    answer = app.poll("remoteSdp", "dtx")
    assert "usedtx=1" in answer and "useinbandfec=1" in answer

    def audio_bytes() -> int:
        return sum(s["bytesSent"] for s in app.call("outbound", "dtx") if s["kind"] == "audio")

    def rate(seconds: float) -> float:
        before = audio_bytes()
        time.sleep(seconds)
        return (audio_bytes() - before) / seconds

    app.call("loud", "dtx", True)
    time.sleep(1.0)
    speech = rate(3.0)
    app.call("loud", "dtx", False)
    time.sleep(1.0)
    silence = rate(3.0)
    assert speech > 2000, speech  # bytes/s: Opus with the tone in it
    assert silence < 0.25 * speech, (silence, speech)


async def test_the_first_messages_on_a_data_track_reach_every_subscriber(
    app: App, server: ServerProcess
) -> None:
    name = room_name()
    messages: list[str] = []
    listener = await connect(token(server, "python"), name, server.url,
                             ice_host_addresses=LOOPBACK)

    async def collect(track: RemoteDataTrack) -> None:
        async for message in track.messages():
            messages.append(str(message))

    listener.on("track_subscribed", lambda event: isinstance(event.track, RemoteDataTrack)
                and asyncio.ensure_future(collect(event.track)))
    try:
        await asyncio.to_thread(app.connect, "first", name, data=True)
        await asyncio.to_thread(app.connect, "second", name)
        sent: list[str] = []
        for round_ in range(3):  # the first needs a new SCTP stream; later ones too
            texts = [f"round {round_} message {n}" for n in range(3)]
            await asyncio.to_thread(app.call, "publishDataAndSend", "second", f"chat-{round_}",
                                    texts)
            sent += texts
            count = len(sent)
            got = await asyncio.to_thread(
                app.wait, "first",
                lambda s, count=count: [m["data"] for m in s["messages"]
                                        if m["identity"] == "second"]
                if len(s["messages"]) >= count else None, 20)
            assert got == sent
        await asyncio.wait_for(_until(lambda: len(messages) >= len(sent)), 20)
        assert messages == sent
        # Joining with a data track and sending the moment it is published.
        await asyncio.to_thread(app.connect, "third", name, data=True)
        await asyncio.to_thread(app.call, "whenPublishedSend", "third", ["hello from third"])
        for key in ("first", "second"):
            await asyncio.to_thread(
                app.wait, key, lambda s: any(m["identity"] == "third" for m in s["messages"]))
            state = await asyncio.to_thread(app.call, "state", key)
            assert [m["data"] for m in state["messages"] if m["identity"] == "third"] == [
                "hello from third"]
    finally:
        await listener.disconnect()


async def _until(check: Callable[[], bool]) -> None:
    while not check():
        await asyncio.sleep(0.05)


def test_the_dominant_speaker_follows_whoever_speaks(app: App, server: ServerProcess) -> None:
    """Two tones taking turns, and Chromium's fake microphone (it beeps 20 ms of every
    500): each time the speaker changes, the observer is told within 2 s."""
    name = room_name()
    for key in ("left", "right"):
        assert app.connect(key, name, tone=True).get("error") is None
    assert app.connect("beeper", name, microphone=True).get("error") is None
    app.call("enable", "beeper", "audio", False)
    observer = app.connect("observer", name, options={"dominantSpeaker": True})
    assert observer.get("error") is None, observer
    app.wait("observer", lambda s: sorted(s["participants"]) == ["beeper", "left", "right"])

    def speak(speaker: str) -> float:
        for other in ("left", "right"):
            if other != speaker:
                app.call("loud", other, False)
        app.call("enable", "beeper", "audio", speaker == "beeper")
        started: float = app.call("loud", speaker, True) if speaker != "beeper" else app.call(
            "enable", "beeper", "audio", True)
        change = app.wait("observer", lambda s: next(
            (c for c in s["speakers"] if c["identity"] == speaker and c["at"] > started), None),
            timeout=10)
        return float(change["at"] - started) / 1000

    turns = ("left", "right", "beeper", "left", "beeper", "right", "beeper")
    delays = [speak(speaker) for speaker in turns]
    assert max(delays) < 2.0, delays


async def test_a_twilio_app_end_to_end(server: ServerProcess) -> None:
    """Written as Twilio's examples are: the room made over REST, tokens from the helper
    library, connect by SID, a data-track chat, DTX audio, automaticSubscription off
    and then REST SubscribeRules, and the room completed over REST."""
    client = make_twilio_client(server)
    room = client.video.v1.rooms.create(unique_name=room_name(), type="group")
    alice, bob = App(server), App(server)
    try:
        joined = await asyncio.to_thread(
            alice.connect, "alice", room.sid, jwt=twilio_token(server, "alice", room.sid),
            camera=True, tone=True, data=True,
            options={"preferredAudioCodecs": [{"codec": "opus", "dtx": True}],
                     "preferredVideoCodecs": [{"codec": "VP8", "simulcast": True}],
                     "dominantSpeaker": True})
        assert joined["sid"] == room.sid, joined
        await asyncio.to_thread(alice.call, "whenPublishedSend", "alice", ["welcome, everyone"])
        joined = await asyncio.to_thread(
            bob.connect, "bob", room.sid, jwt=twilio_token(server, "bob", room.sid), data=True,
            options={"automaticSubscription": False})
        assert joined["sid"] == room.sid, joined
        answer = await asyncio.to_thread(alice.poll, "remoteSdp", "alice")
        assert "usedtx=1" in answer  # alice's Opus goes quiet in silence

        bob_rules = client.video.v1.rooms(room.sid).participants("bob").subscribe_rules
        await asyncio.sleep(1.0)
        assert (await asyncio.to_thread(bob.call, "state", "bob"))["events"] == []
        await asyncio.to_thread(bob_rules.update, rules=[{"type": "include", "all": "true"}])
        await asyncio.to_thread(bob.wait, "bob", lambda s: subscribed(s, "video", "alice")
                                and subscribed(s, "data", "alice"))
        frame = await asyncio.to_thread(bob.poll, "sample", {"key": "bob", "identity": "alice"})
        assert frame["mean"] > 10 and frame["width"] == 320

        # Chat both ways on the data tracks.
        await asyncio.to_thread(bob.call, "whenPublishedSend", "bob", ["hi alice"])
        await asyncio.to_thread(alice.wait, "alice", lambda s: [m["data"] for m in s["messages"]]
                                == ["hi alice"])
        await asyncio.to_thread(alice.call, "whenPublishedSend", "alice", ["hi bob"])
        await asyncio.to_thread(bob.wait, "bob", lambda s: [m["data"] for m in s["messages"]]
                                == ["hi bob"])

        client.video.v1.rooms(room.sid).update(status="completed")
        for page, key in ((alice, "alice"), (bob, "bob")):
            await asyncio.to_thread(page.wait, key, lambda s: any(
                e["event"] == "disconnected" and e["code"] == 53118 for e in s["events"]))
    finally:
        alice.close()
        bob.close()
