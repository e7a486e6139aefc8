"""A plain page using twilio-video.js 2.36 directly (no widget) against this server.

The page loads Twilio's own ``dist/twilio-video.min.js``, gets its camera from
Chromium's fake device, connects with ``wsServer`` pointed at the server, and
publishes; a Python participant receives the page's video, then publishes its
own, which the page renders. Two harness pages (tests/browser/harness.mjs)
subscribe to each other's audio, video and data and exchange a data message.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import threading
import time
from typing import Any

import numpy as np
import pytest

from jupyter_video.client import (
    LocalAudioTrack,
    LocalVideoTrack,
    RemoteAudioTrack,
    RemoteVideoTrack,
    RoomEvent,
    connect,
)

from ..server_process import ServerProcess
from .browser import (
    LOOPBACK,
    REPO,
    first_track,
    media_on_loopback_server,
    moving_frames,
    requires_browser,
    room_name,
    take_frames,
    token,
)
from .driver import PageDriver

pytestmark = [requires_browser, pytest.mark.timeout(180)]

TWILIO_VIDEO = REPO / "tests" / "browser" / "node_modules" / "twilio-video" / "dist"
HARNESS = REPO / "tests" / "browser" / "harness.mjs"

CONNECT = """async ({token, wsServer, name}) => {
  const tracks = await Twilio.Video.createLocalTracks({
    audio: true, video: {width: 320, height: 240}});
  const room = await Twilio.Video.connect(token, {
    name, wsServer, iceServers: [], insights: false, tracks});
  window.room = room;
  room.on('trackSubscribed', (track, publication, participant) => {
    if (track.kind !== 'video') { return; }
    const video = track.attach();
    video.dataset.identity = participant.identity;
    document.body.append(video);
  });
  return {sid: room.sid, participant: room.localParticipant.sid, state: room.state};
}"""

LISTEN = """async (identity) => {
  const participant = [...room.participants.values()].find((p) => p.identity === identity);
  const publication = participant && [...participant.audioTracks.values()].find((p) => p.track);
  if (!publication) { return null; }
  const stream = new MediaStream([publication.track.mediaStreamTrack]);
  // Chromium hands remote WebRTC audio to Web Audio only while a media element plays it.
  const element = new Audio();
  element.srcObject = stream;
  element.muted = true;
  element.play().catch(() => {});
  const context = new AudioContext();
  await context.resume();
  const analyser = context.createAnalyser();
  analyser.fftSize = 8192;
  context.createMediaStreamSource(stream).connect(analyser);
  await new Promise((resolve) => setTimeout(resolve, 1500));
  const bins = new Float32Array(analyser.frequencyBinCount);
  analyser.getFloatFrequencyData(bins);
  let peak = 1;
  for (let i = 1; i < bins.length; i++) { if (bins[i] > bins[peak]) { peak = i; } }
  const heard = { hz: peak * context.sampleRate / analyser.fftSize, db: bins[peak],
                  binHz: context.sampleRate / analyser.fftSize };
  context.close();
  element.srcObject = null;
  return heard;
}"""
"""The loudest frequency of ``identity``'s audio as the page hears it (Web Audio FFT)."""

TONE_HZ = 660
FAKE_MICROPHONE_HZ = 400  # media/audio/fake_audio_input_stream.cc kBeepFrequency


async def loudest_frequency(sounds: list[RemoteAudioTrack], seconds: float = 3.0) -> float:
    """The spectral peak of ``seconds`` of the first subscribed audio track."""
    sound = await first_track(sounds, "the page's audio")
    chunks: list[np.ndarray] = []
    async for frame in sound.frames():
        chunks.append(frame.reshape(len(frame), -1)[:, 0].astype(float))
        if sum(len(chunk) for chunk in chunks) >= 48000 * seconds:
            break
    samples = np.concatenate(chunks)
    spectrum = np.abs(np.fft.rfft(samples))
    spectrum[0] = 0
    return float(np.fft.rfftfreq(len(samples), 1 / 48000)[spectrum.argmax()])


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
  return {mean: sum / (data.length / 4 * 3), hash};
}"""


server = media_on_loopback_server("page-server")


def signaling(server: ServerProcess) -> str:
    return f"ws://127.0.0.1:{server.port}{server.base_url}video/signaling"


async def test_plain_twilio_video_page_publishes_and_subscribes(server: ServerProcess) -> None:
    room = room_name()
    driver = PageDriver(timeout=150)
    participants: list[Any] = []
    try:
        await asyncio.to_thread(driver.call, "blank")
        script = str(TWILIO_VIDEO / "twilio-video.min.js")
        await asyncio.to_thread(driver.call, "addScript", path=script)
        joined = await asyncio.to_thread(driver.eval, CONNECT, {
            "token": token(server, "page"), "wsServer": signaling(server), "name": room})
        assert joined["state"] == "connected" and joined["sid"].startswith("RM")

        # The page's camera reaches a Python participant: frames that are not black and move.
        viewer = await connect(token(server, "viewer"), room, server.url,
                               ice_host_addresses=LOOPBACK)
        participants.append(viewer)
        tracks: list[RemoteVideoTrack] = []
        sounds: list[RemoteAudioTrack] = []

        def on_subscribed(event: RoomEvent) -> None:
            if isinstance(event.track, RemoteVideoTrack):
                tracks.append(event.track)
            elif isinstance(event.track, RemoteAudioTrack):
                sounds.append(event.track)

        viewer.on("track_subscribed", on_subscribed)
        video = await first_track(tracks, "the page's video")
        frames = await asyncio.wait_for(take_frames(video, 10), 30)
        assert frames[-1].mean() > 10 and not np.array_equal(frames[0], frames[-1])
        # ... and its microphone: Chromium's fake device beeps at 400 Hz.
        hz = await asyncio.wait_for(loudest_frequency(sounds), 30)
        assert abs(hz - FAKE_MICROPHONE_HZ) < 15, hz

        # A Python participant's video is rendered by the page: bright, and changing;
        # its audio, a tone, is heard at the tone's pitch.
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
        assert heard["db"] > -60, heard  # the tone, not the noise floor

        identities = await asyncio.to_thread(
            driver.eval, "() => [...window.room.participants.values()].map((p) => p.identity)")
        assert sorted(identities) == ["publisher", "viewer"]
        await asyncio.to_thread(driver.eval, "() => window.room.disconnect() && null")
    finally:
        for participant in participants:
            await participant.disconnect()
        await asyncio.to_thread(driver.close)


GROUP_ROOM_CONNECT = """async ({token, wsServer, name}) => {
  const tracks = await Twilio.Video.createLocalTracks({
    audio: true, video: {width: 640, height: 480}});
  const room = await Twilio.Video.connect(token, {
    name, wsServer, iceServers: [], insights: false, tracks,
    preferredVideoCodecs: [{codec: 'VP8', simulcast: true}],
    bandwidthProfile: {video: {mode: 'grid', dominantSpeakerPriority: 'high'}},
    dominantSpeaker: true, networkQuality: {local: 1, remote: 1}});
  window.room = room;
  return {sid: room.sid, state: room.state};
}"""
"""connect() as Twilio recommends for group rooms (their best-practices guide)."""


async def test_twilio_recommended_group_room_options_connect_and_publish(
    server: ServerProcess,
) -> None:
    """VP8 simulcast, a bandwidth profile, dominant speaker and network quality: an app
    moved from Twilio with these options joins, and its camera reaches a Python
    participant at the captured size."""
    room = room_name()
    driver = PageDriver(timeout=120)
    viewer = None
    try:
        await asyncio.to_thread(driver.call, "blank")
        await asyncio.to_thread(driver.call, "addScript",
                                path=str(TWILIO_VIDEO / "twilio-video.min.js"))
        joined = await asyncio.to_thread(driver.eval, GROUP_ROOM_CONNECT, {
            "token": token(server, "page"), "wsServer": signaling(server), "name": room})
        assert joined["state"] == "connected"
        viewer = await connect(token(server, "viewer"), room, server.url,
                               ice_host_addresses=LOOPBACK)
        tracks: list[RemoteVideoTrack] = []
        viewer.on("track_subscribed", lambda event: isinstance(event.track, RemoteVideoTrack)
                  and tracks.append(event.track))
        video = await first_track(tracks, "the page's video")
        frames = await asyncio.wait_for(take_frames(video, 10), 30)
        assert frames[-1].shape == (480, 640, 3)
        assert frames[-1].mean() > 10 and not np.array_equal(frames[0], frames[-1])
    finally:
        if viewer is not None:
            await viewer.disconnect()
        await asyncio.to_thread(driver.close)


class Harness:
    """One tests/browser/harness.mjs page: its JSON-lines events, and commands on stdin."""

    def __init__(self, server: ServerProcess, identity: str, room: str) -> None:
        self.events: list[dict[str, Any]] = []
        self._changed = threading.Condition()
        self.process = subprocess.Popen(
            ["node", str(HARNESS), "--token", token(server, identity), "--ws", signaling(server),
             "--room", room, "--audio", "--video", "--data", "--timeout", "120000"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self._changed:
                self.events.append(json.loads(line))
                self._changed.notify_all()
        with self._changed:
            self.events.append({"event": "eof"})
            self._changed.notify_all()

    def wait(self, predicate: Any, timeout: float = 60.0) -> dict[str, Any]:
        """The first event (past or coming) for which ``predicate`` holds."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for event in self.events:
                    if event.get("event") in ("connectFailed", "harnessError", "pageerror", "eof"):
                        raise AssertionError(f"harness failed: {event}; {self.names()}")
                    if predicate(event):
                        return event
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"no such event in {timeout}s; got {self.names()}")
                self._changed.wait(remaining)

    def names(self) -> list[str]:
        return [str(event.get("event")) for event in self.events]

    def send(self, call: str, *args: Any) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps({"call": call, "args": list(args)}) + "\n")
        self.process.stdin.flush()

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                self.send("disconnect")
                self.send("quit")
                self.process.wait(timeout=15)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait(timeout=5)


def subscribed_kinds(harness: Harness) -> set[str]:
    return {e["kind"] for e in harness.events if e.get("event") == "trackSubscribed"}


def media_stats(harness: Harness) -> list[dict[str, Any]]:
    """The page's inbound and outbound RTP streams, from its own getStats()."""
    count = harness.names().count("stats")
    harness.send("stats")
    harness.wait(lambda e: harness.names().count("stats") > count, timeout=10)
    event = [e for e in harness.events if e.get("event") == "stats"][count]
    streams: list[dict[str, Any]] = event["streams"]
    return streams


def hears_opus_and_sees_vp8(harness: Harness, seconds: float = 10.0) -> list[dict[str, Any]]:
    """The page's streams once it sends and receives Opus with sound in it (Chromium's
    fake microphone beeps), decoded rather than concealed, and receives decoded VP8."""
    deadline = time.monotonic() + seconds
    while True:
        streams = media_stats(harness)
        codecs = {(s["direction"], s["kind"], s["codec"]) for s in streams}
        heard = [s for s in streams if s["direction"] == "in" and s["kind"] == "audio"]
        seen = [s for s in streams if s["direction"] == "in" and s["kind"] == "video"]
        if (
            codecs == {("out", "audio", "audio/opus"), ("out", "video", "video/vp8"),
                       ("in", "audio", "audio/opus"), ("in", "video", "video/vp8")}
            and heard[0]["audioEnergy"] > 0
            and heard[0]["samples"] > 48000  # a second of it
            and heard[0]["concealed"] < heard[0]["samples"] / 10  # decoded, not made up
            and seen[0]["framesDecoded"] > 10
        ):
            return streams
        if time.monotonic() > deadline:
            raise AssertionError(f"no Opus with sound and VP8 in {seconds}s: {streams}")
        time.sleep(0.25)


def test_two_plain_pages_subscribe_to_each_other_and_exchange_data(
    server: ServerProcess,
) -> None:
    room = room_name()
    first = Harness(server, "first", room)
    second: Harness | None = None
    try:
        first.wait(lambda e: e.get("event") == "connected")
        second = Harness(server, "second", room)
        second.wait(lambda e: e.get("event") == "connected")
        for harness in [first, second]:
            for kind in ("audio", "video", "data"):
                harness.wait(lambda e, kind=kind: e.get("event") == "trackSubscribed"
                             and e.get("kind") == kind)
            assert subscribed_kinds(harness) == {"audio", "video", "data"}
        # Sent until one arrives: the data channel may open just after trackSubscribed.
        for attempt in range(10):
            first.send("sendData", f"hello from the first page {attempt}")
            try:
                message = second.wait(lambda e: e.get("event") == "dataMessage", timeout=2)
                break
            except AssertionError:
                continue
        else:
            raise AssertionError(f"no data message reached the second page: {second.events}"
                                 f"\nfirst: {first.events}")
        assert message["data"].startswith("hello from the first page")
        # Audio is Opus both ways (a re-offer that lost opus made Chrome send G722
        # under the numbers the other page read as Opus), and it carries sound.
        for harness in [first, second]:
            hears_opus_and_sees_vp8(harness)
    finally:
        first.close()
        if second is not None:
            second.close()
