"""A media path that dies mid-call is restarted with an ICE restart, keeping the
participant in the room under the same SID.

twilio-video.js 2.36 runs in Chromium in a network namespace of the test's own
whose only UDP path to the SFU is a veth pair (tests/websocket/no_udp.py); the
signaling TCP is bridged over a Unix socket and never breaks. The page's
address on the veth is taken away and another one given (a laptop that moved
to another network): ICE's candidate pair is dead for good. twilio-video fires
``reconnecting`` (53405), offers with new ICE credentials on the same peer
connection, the SFU answers it with a new aiortc peer connection
(sfu/peer.py ``PeerRestart``), and media and data flow again both ways with a
Python participant that stayed where it was.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
import requests

from jupyter_video.client import (
    LocalDataTrack,
    LocalVideoTrack,
    RemoteDataTrack,
    RemoteVideoTrack,
    Room,
    RoomEvent,
    connect,
)

from ..client.participants import LOOPBACK, room_name, token
from ..server_process import ServerProcess
from ..websocket.no_udp import UDP_HERE, Bridge, requires_namespaces
from ..widgets.browser import REPO, requires_browser
from ..widgets.driver import PageDriver

pytestmark = [pytest.mark.timeout(150), requires_namespaces]

TWILIO_VIDEO = REPO / "tests" / "browser" / "node_modules" / "twilio-video" / "dist"
MOVED_TO = "10.231.9.3"
"""The page's new address on its side of the veth pair."""
PYTHON_SHAPE = (96, 128)
PYTHON_RED = 200  # the Python participant's flat frames: red 200, green 55, blue 128

# The page publishes a flat blue canvas (a corner pixel changes, so every frame is
# new) and a data track it writes on every 100 ms; it counts what it gets back.
JOIN = """async ({token, name, wsServer}) => {
  window.events = [];
  window.messages = 0;
  const canvas = document.createElement('canvas');
  canvas.width = 160; canvas.height = 120;
  const context = canvas.getContext('2d');
  let tick = 0;
  setInterval(() => {
    context.fillStyle = 'rgb(0, 0, 255)'; context.fillRect(0, 0, 160, 120);
    context.fillStyle = (tick++ % 2) ? 'rgb(0, 0, 250)' : 'rgb(0, 0, 255)';
    context.fillRect(0, 0, 1, 1);
  }, 50);
  const video = new Twilio.Video.LocalVideoTrack(
    canvas.captureStream(15).getVideoTracks()[0], {name: 'canvas'});
  const chat = new Twilio.Video.LocalDataTrack({name: 'chat'});
  const room = await Twilio.Video.connect(token, {
    name, wsServer, iceServers: [], insights: false, tracks: [video, chat]});
  window.room = room;
  room.on('reconnecting', (error) => window.events.push(
    {event: 'reconnecting', code: error && error.code, at: performance.now()}));
  room.on('reconnected', () => window.events.push(
    {event: 'reconnected', at: performance.now(), sid: room.localParticipant.sid}));
  room.on('disconnected', (r, error) => window.events.push(
    {event: 'disconnected', code: error && error.code, at: performance.now()}));
  room.on('trackSubscribed', (track) => {
    if (track.kind === 'data') track.on('message', () => { window.messages += 1; });
    if (track.kind === 'video') {
      window.remote = track.attach();
      window.remote.muted = true;
      document.body.appendChild(window.remote);
    }
  });
  setInterval(() => { if (room.state !== 'disconnected') chat.send('page ' + Date.now()); }, 100);
  return {sid: room.localParticipant.sid};
}"""

# What the page's <video> of the Python participant shows now.
SAMPLE = """() => {
  const video = window.remote;
  if (!video || !video.videoWidth) return null;
  const canvas = document.createElement('canvas');
  canvas.width = video.videoWidth; canvas.height = video.videoHeight;
  const context = canvas.getContext('2d');
  context.drawImage(video, 0, 0);
  const pixels = context.getImageData(0, 0, canvas.width, canvas.height).data;
  let red = 0;
  for (let i = 0; i < pixels.length; i += 4) red += pixels[i];
  return {width: video.videoWidth, height: video.videoHeight,
          red: red / (pixels.length / 4),
          decoded: video.getVideoPlaybackQuality().totalVideoFrames,
          messages: window.messages, at: performance.now()};
}"""


def python_frames() -> Iterator[np.ndarray]:
    frame = np.empty((*PYTHON_SHAPE, 3), np.uint8)
    frame[..., 0], frame[..., 1], frame[..., 2] = PYTHON_RED, 55, 128
    while True:
        yield frame


@pytest.fixture(scope="module")
def veth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """ICE on the test's veth pair only. The server refuses an ICE address this
    machine lacks and the veth appears only with the page's namespace, so the
    address is lent to lo first as a /32 (the veth's /24 route carries the page's
    traffic once it is there; the Python participant reaches it over lo)."""
    subprocess.run(["ip", "addr", "add", f"{UDP_HERE}/32", "dev", "lo"], check=True)
    try:
        process = ServerProcess(tmp_path_factory.mktemp("ice-restart"),
                                video_config={"media_workers": 1,
                                              "ice_host_addresses": [UDP_HERE]}).start()
        yield process
        process.stop()
    finally:
        subprocess.run(["ip", "addr", "del", f"{UDP_HERE}/32", "dev", "lo"], check=False)


class PythonSide:
    """What the Python participant received from the page: blue 160x120 frames
    (anything else counted as bad) and messages."""

    def __init__(self) -> None:
        self.frames = 0
        self.bad_frames = 0
        self.messages = 0
        self.tasks: list[asyncio.Task[None]] = []

    def received(self, event: RoomEvent) -> None:
        if isinstance(event.track, RemoteVideoTrack):
            self.tasks.append(asyncio.ensure_future(self._watch(event.track)))
        elif isinstance(event.track, RemoteDataTrack):
            self.tasks.append(asyncio.ensure_future(self._listen(event.track)))

    async def _watch(self, track: RemoteVideoTrack) -> None:
        async for frame in track.frames():
            blue, red = float(frame[..., 2].mean()), float(frame[..., 0].mean())
            if frame.shape[:2] == (120, 160) and blue > 200 and red < 40:
                self.frames += 1
            else:
                self.bad_frames += 1

    async def _listen(self, track: RemoteDataTrack) -> None:
        async for _ in track.messages():
            self.messages += 1


def in_namespace(pid: int, *command: str) -> None:
    subprocess.run(["nsenter", "-t", str(pid), "-n", *command], check=True)


async def until(what: str | Callable[[], str], check: object, timeout: float) -> float:
    """Wait for ``check()`` (sync or async) to be truthy; when it was, in monotonic time."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()  # type: ignore[operator]
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return time.monotonic()
        await asyncio.sleep(0.1)
    raise AssertionError(f"not within {timeout} s: {what if isinstance(what, str) else what()}")


@requires_browser

async def join_page(page: PageDriver, server: ServerProcess, name: str) -> Any:
    """twilio-video.js loaded in a blank ``page`` and joined to ``name`` as "page" (JOIN):
    what it answers."""
    await asyncio.to_thread(page.call, "blank")
    await asyncio.to_thread(page.call, "addScript",
                            path=str(TWILIO_VIDEO / "twilio-video.min.js"))
    return await asyncio.to_thread(page.eval, JOIN, {
        "token": token(server, "page"), "name": name,
        "wsServer": f"ws://127.0.0.1:{server.port}{server.base_url}video/signaling"})

async def test_a_dead_media_path_is_restarted_with_an_ice_restart_keeping_the_sid(
        veth_server: ServerProcess) -> None:
    server = veth_server
    name = room_name()
    bridge = Bridge(server.port)
    veth = f"jvr{os.getpid() % 10000}"
    bridge.give_udp_path(veth)
    page = PageDriver(timeout=140, wrap=bridge.wrap)
    python = None
    side = PythonSide()
    chat = LocalDataTrack(name="chat")

    async def sample() -> dict[str, float] | None:
        result: dict[str, float] | None = await asyncio.to_thread(page.eval, SAMPLE)
        return result

    try:
        await asyncio.to_thread(bridge.wait_for_udp_path)
        python = await connect(token(server, "python"), name, server.url,
                               ice_host_addresses=LOOPBACK,
                               tracks=[LocalVideoTrack.from_frames(python_frames(), fps=10),
                                       chat])
        python.on("track_subscribed", side.received)
        talk = asyncio.ensure_future(chatter(chat))
        side.tasks.append(talk)
        joined = await join_page(page, server, name)

        async def page_gets_media() -> bool:
            now = await sample()
            return bool(now and now["decoded"] > 10 and now["messages"] > 10)

        await until("media both ways before the cut",
                    lambda: side.frames > 10 and side.messages > 10, 40)
        await until("the page decodes the Python participant", page_gets_media, 40)

        # The page moves to another address: its candidate pair is dead for good.
        inside = veth + "i"
        in_namespace(page.process.pid, "ip", "addr", "del", "10.231.9.2/24", "dev", inside)
        in_namespace(page.process.pid, "ip", "addr", "add", f"{MOVED_TO}/24", "dev", inside)
        cut_at = await asyncio.to_thread(page.eval, "() => performance.now()")
        cut = time.monotonic()
        await until("reconnected", lambda: asyncio.to_thread(page.eval, (
            "() => window.events.some((e) => e.event === 'reconnected')")), 60)
        events = await asyncio.to_thread(page.eval, "() => window.events")
        kinds = [e["event"] for e in events]
        assert kinds[:2] == ["reconnecting", "reconnected"], events
        assert events[0]["code"] == 53405, events
        assert events[1]["sid"] == joined["sid"]
        reconnecting_at = events[0]["at"]

        # Media resumes both ways on the new path: the page decodes new frames of the
        # Python participant's colour and size and gets its messages; the Python
        # participant gets the page's blue frames and messages.
        before = await sample()
        assert before is not None
        frames, messages, bad = side.frames, side.messages, side.bad_frames

        async def page_resumed() -> bool:
            now = await sample()
            return bool(now and now["decoded"] >= before["decoded"] + 10
                        and now["messages"] >= before["messages"] + 10)

        page_back = await until("the page's media resumes", page_resumed, 30)
        python_back = await until("the Python participant's media resumes",
                                  lambda: side.frames >= frames + 10
                                  and side.messages >= messages + 10, 30)
        now = await sample()
        assert now is not None
        assert (now["width"], now["height"]) == (PYTHON_SHAPE[1], PYTHON_SHAPE[0]), now
        assert abs(now["red"] - PYTHON_RED) <= 20, now
        assert side.bad_frames - bad <= 2, side.bad_frames

        creds = server.credentials()
        records = requests.get(
            f"{server.url}video/v1/Rooms/{name}/Participants",
            auth=(creds["api_key_sid"], creds["api_key_secret"]), timeout=10).json()
        statuses = {p["identity"]: (p["sid"], p["status"]) for p in records["participants"]}
        assert statuses["page"] == (joined["sid"], "connected"), statuses
        assert statuses["python"][1] == "connected", statuses
        # The media worker's account of it reaches the Jupyter server's log.
        assert f"{joined['sid']} restarts ICE" in server.log_text(), server.log_text()[-3000:]
        print(json.dumps({"ice_restart_browser": {
            "reconnecting_after_cut_s": round((reconnecting_at - cut_at) / 1000, 2),
            "reconnected_after_reconnecting_s": round(
                (events[1]["at"] - reconnecting_at) / 1000, 2),
            "page_media_back_after_cut_s": round(page_back - cut, 2),
            "python_media_back_after_cut_s": round(python_back - cut, 2),
        }}))
        await asyncio.to_thread(page.eval, "() => room.disconnect()")
    finally:
        for task in side.tasks:
            task.cancel()
        if python is not None:
            await python.disconnect()
        await asyncio.to_thread(page.close)
        bridge.close()


async def chatter(track: LocalDataTrack) -> None:
    number = 0
    while True:
        await asyncio.sleep(0.1)
        number += 1
        with contextlib.suppress(Exception):
            track.send(f"python {number}")


# ---------------------------------------------------------------- the Python client

GONE, NEW = "10.231.9.5", "10.231.9.6"
"""The Python participant's addresses (lent to lo): the one it joins on, which the
test takes away, and the one it moves to."""


def lend(address: str) -> None:
    subprocess.run(["ip", "addr", "add", f"{address}/32", "dev", "lo"], check=True)


def take_back(address: str) -> None:
    subprocess.run(["ip", "addr", "del", f"{address}/32", "dev", "lo"], check=False,
                   capture_output=True)


class Participant:
    """A Python participant sending flat frames of one red ``level`` and a message
    every 100 ms, counting the other's frames (right colour and size) and messages."""

    def __init__(self, identity: str, level: int, other_level: int) -> None:
        self.identity = identity
        self.level = level
        self.other_level = other_level
        self.frames = 0
        self.bad_frames = 0
        self.messages = 0
        self.events: list[tuple[str, int | None, float]] = []
        self.chat = LocalDataTrack(name="chat")
        self.tasks: list[asyncio.Task[None]] = []
        self.room: Room | None = None

    async def join(self, server: ServerProcess, name: str, addresses: list[str]) -> None:
        frames = live_frames(self.level)
        self.room = await connect(token(server, self.identity), name, server.url,
                                  ice_host_addresses=addresses,
                                  tracks=[LocalVideoTrack.from_frames(frames, fps=10),
                                          self.chat])
        room = self.room
        room.on("track_subscribed", self._received)
        for event in ("reconnecting", "reconnected", "disconnected"):
            room.on(event, self._note)
        for participant in room.participants.values():
            for publication in participant.tracks.values():
                if publication.track is not None:
                    self._received(RoomEvent("track_subscribed", track=publication.track))
        self.tasks.append(asyncio.ensure_future(chatter(self.chat)))

    def _note(self, event: RoomEvent) -> None:
        self.events.append((event.name, getattr(event.error, "code", None), time.monotonic()))

    def _received(self, event: RoomEvent) -> None:
        if isinstance(event.track, RemoteVideoTrack):
            self.tasks.append(asyncio.ensure_future(self._watch(event.track)))
        elif isinstance(event.track, RemoteDataTrack):
            self.tasks.append(asyncio.ensure_future(self._listen(event.track)))

    async def _watch(self, track: RemoteVideoTrack) -> None:
        async for frame in track.frames():
            if frame.shape[:2] == PYTHON_SHAPE and abs(
                    float(frame[..., 0].mean()) - self.other_level) <= 12:
                self.frames += 1
            else:
                self.bad_frames += 1

    async def _listen(self, track: RemoteDataTrack) -> None:
        async for _ in track.messages():
            self.messages += 1

    async def leave(self) -> None:
        for task in self.tasks:
            task.cancel()
        if self.room is not None:
            await self.room.disconnect()


def live_frames(level: int) -> Iterator[np.ndarray]:
    frame = np.empty((*PYTHON_SHAPE, 3), np.uint8)
    frame[..., 0], frame[..., 1], frame[..., 2] = level, 255 - level, 128
    while True:
        yield frame


async def test_the_python_client_restarts_ice_when_its_media_path_dies(
        server: ServerProcess) -> None:
    """Alice's address goes away mid-call (Bob's stays): her client sees no byte for
    3 s, fires ``reconnecting`` (53405), offers from a new aiortc peer connection on
    her new address under the same peer connection id, and fires ``reconnected``
    when media flows again; the frames and messages her application gets resume in
    the same RemoteTrack objects, and Bob's from her."""
    name = room_name()
    lend(GONE)
    alice, bob = Participant("alice", 60, 200), Participant("bob", 200, 60)
    try:
        await bob.join(server, name, LOOPBACK)  # Bob gathers now, on 127.0.0.1 only
        await alice.join(server, name, [GONE, NEW])  # NEW is not there yet
        await until("media both ways", lambda: all(
            p.frames > 10 and p.messages > 10 for p in (alice, bob)), 40)
        assert alice.room is not None and bob.room is not None
        sids = (alice.room.local_participant.sid, bob.room.local_participant.sid)

        take_back(GONE)
        lend(NEW)
        cut = time.monotonic()
        await until("alice reconnected",
                    lambda: any(e[0] == "reconnected" for e in alice.events), 30)
        assert [e[:2] for e in alice.events[:2]] == [("reconnecting", 53405),
                                                      ("reconnected", None)], alice.events
        counts = {p.identity: (p.frames, p.messages) for p in (alice, bob)}
        back = await until(lambda: f"media both ways again: before {counts}, now " + str({
            p.identity: (p.frames, p.messages, p.bad_frames) for p in (alice, bob)}), lambda: all(
            p.frames >= counts[p.identity][0] + 10 and p.messages >= counts[p.identity][1] + 10
            for p in (alice, bob)), 30)
        assert bob.events == [], bob.events  # his path never broke
        assert (alice.room.local_participant.sid, bob.room.local_participant.sid) == sids
        assert alice.room.state.value == "connected"
        assert alice.bad_frames <= 2 and bob.bad_frames <= 2, (alice.bad_frames, bob.bad_frames)
        creds = server.credentials()
        records = requests.get(
            f"{server.url}video/v1/Rooms/{name}/Participants",
            auth=(creds["api_key_sid"], creds["api_key_secret"]), timeout=10).json()
        statuses = {p["sid"]: p["status"] for p in records["participants"]}
        assert statuses == {sids[0]: "connected", sids[1]: "connected"}, statuses
        reconnecting, reconnected = alice.events[0][2], alice.events[1][2]
        print(json.dumps({"ice_restart_python": {
            "reconnecting_after_cut_s": round(reconnecting - cut, 2),
            "reconnected_after_reconnecting_s": round(reconnected - reconnecting, 2),
            "media_back_after_cut_s": round(back - cut, 2),
        }}))
    finally:
        await alice.leave()
        await bob.leave()
        take_back(GONE)
        take_back(NEW)


async def test_a_quiet_subscription_is_not_taken_for_a_dead_path(server: ServerProcess) -> None:
    """Bob subscribes to Alice's video, whose source has not given a frame yet: no
    media reaches him, but the SFU's empty Receiver Reports do, so his client does
    not restart ICE (it would after 3 s of silence)."""

    async def never() -> Any:
        await asyncio.Event().wait()

    name = room_name()
    alice = await connect(token(server, "alice"), name, server.url, ice_host_addresses=LOOPBACK,
                          tracks=[LocalVideoTrack.from_frames(never)])
    bob = await connect(token(server, "bob"), name, server.url, ice_host_addresses=LOOPBACK)
    events: list[str] = []
    for event in ("reconnecting", "reconnected", "disconnected"):
        bob.on(event, lambda e: events.append(e.name))
    try:
        await until("bob subscribed", lambda: any(
            p.track is not None for participant in bob.participants.values()
            for p in participant.tracks.values()), 20)
        await asyncio.sleep(3 * 3.0)  # three times the client's silence threshold
        assert events == []
        assert bob.state.value == "connected"
    finally:
        await bob.disconnect()
        await alice.disconnect()
