"""A kernel participant in a classroom: its channel, its hand, its moves between rooms.

``seat = await attend(token, "lecture", server, tracks=make_tracks)`` joins the
room (``seat.room`` is the :class:`jupyter_video.client.Room`) and opens the
classroom channel beside it; when a moderator opens breakouts or recalls
everyone, the seat leaves its room and joins the next one with the token the
server sent, publishing fresh tracks from ``tracks()``. Muted by the teacher,
its tracks are disabled here too (``seat.notices`` says so).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, WebSocketException

from ..errors import VideoError

log = logging.getLogger(__name__)

STATS_INTERVAL = 2.0  # seconds between the stats a seat reports to the room monitor
REOPEN_DELAYS = (0.5, 1.0, 2.0, 4.0, 8.0)
"""Seconds before each try to open a dropped channel again (as the widget, bounded)."""
WAIT = 20.0


def http_base(server: str) -> str:
    """``ws(s)://host/base/video/signaling`` or ``http(s)://host/base/`` -> ``http(s)://host/base/``."""
    if server.startswith("ws"):
        server = "http" + server[2:]
    for tail in ("video/signaling", "video/signaling/"):
        if server.endswith(tail):
            server = server[: -len(tail)]
    return server.rstrip("/") + "/"


def channel_url(server: str) -> str:
    base = http_base(server)
    return "ws" + base[4:] + "video/classroom/channel"


def request(server: str, path: str, *, method: str = "GET", body: Any = None,
            headers: dict[str, str] | None = None) -> Any:
    """One classroom HTTP request; a VideoError with the server's code when refused."""
    url = http_base(server) + "video/classroom/" + path
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers={
        "Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=30) as response:
            text = response.read().decode()
            kind = response.headers.get("Content-Type", "")
    except urllib.error.HTTPError as error:
        try:
            detail = json.loads(error.read())
        except ValueError:
            raise VideoError(20500, f"{method} {url} failed: HTTP {error.code}") from None
        raise VideoError.from_code(int(detail.get("code", 20500)),
                                   detail.get("message")) from None
    return text if kind.startswith("text/") else json.loads(text)


def room_path(room: str) -> str:
    return "rooms/" + urllib.parse.quote(room, safe="")


class ClassroomChannel:
    """The open channel: the latest state, and every message as it came."""

    def __init__(self, socket: ClientConnection, room: str) -> None:
        self.socket = socket
        self.room = room
        self.state: dict[str, Any] = {}
        self.chat: list[dict[str, Any]] = []
        self.messages: list[dict[str, Any]] = []
        self.listeners: list[Callable[[dict[str, Any]], Any]] = []
        self.dropped: list[Callable[[ClassroomChannel], Any]] = []
        """Called when the channel closes without close() here (the server or network)."""
        self._closing = False
        self._changed = asyncio.Event()
        self._results: dict[int, asyncio.Future[Any]] = {}
        self._next_id = 0
        self._task = asyncio.ensure_future(self._read())

    @classmethod
    async def open(cls, server: str, token: str, room: str) -> ClassroomChannel:
        socket = await ws_connect(channel_url(server))
        await socket.send(json.dumps({"type": "hello", "token": token, "room": room}))
        channel = cls(socket, room)
        await channel.wait(lambda m: m["type"] in ("chat_history", "error"))
        error = next((m for m in channel.messages if m["type"] == "error"), None)
        if error is not None:
            await channel.close()
            raise VideoError.from_code(error["error"]["code"], error["error"]["message"])
        return channel

    async def _read(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for raw in self.socket:
                message = json.loads(raw)
                self._take(message)
        for future in self._results.values():
            if not future.done():
                future.set_exception(VideoError(53001, "The classroom channel closed"))
        if not self._closing:
            for callback in list(self.dropped):
                callback(self)

    def _take(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "state":
            self.state = message
        elif kind == "chat_history":
            self.chat = list(message["messages"])
        elif kind == "chat":
            self.chat.append(message["message"])
        elif kind == "result" and message.get("id") in self._results:
            future = self._results.pop(message["id"])
            if "error" in message:
                error = message["error"]
                future.set_exception(VideoError.from_code(error["code"], error["message"]))
            else:
                future.set_result(message.get("result"))
        self.messages.append(message)
        for listener in list(self.listeners):
            try:
                listener(message)
            except Exception:
                log.exception("classroom listener failed")
        self._changed.set()

    async def wait(self, where: Callable[[dict[str, Any]], bool],
                   timeout: float = WAIT) -> dict[str, Any]:
        """The first message so far (or to come) matching ``where``."""
        deadline = time.monotonic() + timeout
        while True:
            for message in self.messages:
                if where(message):
                    return message
            self._changed.clear()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no such classroom message in {timeout}s: "
                                   f"{[m.get('type') for m in self.messages]}")
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    async def act(self, action: str, **args: Any) -> Any:
        """A classroom action as this participant (moderators' ones need a moderator)."""
        self._next_id += 1
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._results[self._next_id] = future
        await self.socket.send(json.dumps(
            {"type": "action", "id": self._next_id, "action": action, "args": args}))
        return await asyncio.wait_for(future, WAIT)

    async def send_stats(self, samples: list[dict[str, Any]],
                         dominant_speaker: str | None = None) -> None:
        message: dict[str, Any] = {"type": "stats", "samples": samples}
        if dominant_speaker:
            message["dominant_speaker"] = dominant_speaker
        with contextlib.suppress(ConnectionClosed):
            await self.socket.send(json.dumps(message))

    async def close(self) -> None:
        self._closing = True
        await self.socket.close()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


class _RateMeter:
    """Stats samples from an aiortc report: rates and losses since the previous one."""

    def __init__(self) -> None:
        self._last: dict[str, tuple[float, float, float, float]] = {}

    def samples(self, report: Any) -> list[dict[str, Any]]:
        now = time.monotonic()
        stats = list(report.values())
        # What the SFU's receiver reports of our stream (RTCP RR): fraction lost,
        # jitter in RTP timestamp units.
        remote = {s.kind: s for s in stats if s.type == "remote-inbound-rtp"}
        out = []
        for stat in stats:
            if stat.type not in ("outbound-rtp", "inbound-rtp"):
                continue
            rate = 48000 if stat.kind == "audio" else 90000
            key = f"{stat.type}:{stat.id}"
            last = self._last.get(key)
            sample: dict[str, Any] = {"kind": stat.kind, "source": "aiortc", "fps": None,
                                      "jitter_ms": None, "packet_loss": None}
            if stat.type == "outbound-rtp":
                sample["direction"] = "send"
                total, count, lost = stat.bytesSent, stat.packetsSent, 0.0
                received = remote.get(stat.kind)
                if received is not None:
                    # The receiver's own fraction lost over its last report interval
                    # (RFC 3550 6.4.1, in 1/256). Reports come about once a second,
                    # as these samples do: its cumulative loss counted against our
                    # packets sent read 0 between two reports and double after.
                    sample["packet_loss"] = received.fractionLost / 256
                    if received.jitter is not None:
                        sample["jitter_ms"] = received.jitter / rate * 1000
            else:
                # aiortc counts no bytes received: no receive bitrate from a kernel
                sample["direction"] = "receive"
                total = getattr(stat, "bytesReceived", None)
                count, lost = stat.packetsReceived, float(stat.packetsLost or 0)
                if stat.jitter is not None:
                    sample["jitter_ms"] = stat.jitter / rate * 1000
                if last is not None:
                    packets, missed = count - last[2], max(0.0, lost - last[3])
                    expected = packets + missed
                    sample["packet_loss"] = min(1.0, missed / expected) if expected > 0 else 0.0
            self._last[key] = (now, float(total or 0), float(count), lost)
            if last is not None and now > last[0] and total is not None:
                sample["bitrate_kbps"] = (total - last[1]) * 8 / (now - last[0]) / 1000
            out.append(sample)
        return out


TrackFactory = Callable[[], Sequence[Any]]


class Seat:
    """A kernel participant of a classroom: ``room`` now, hand, chat, and notices."""

    def __init__(self, server: str, identity: str, tracks: TrackFactory,
                 connect_options: dict[str, Any]) -> None:
        self.server = server
        self.identity = identity
        self.room: Any = None  # jupyter_video.client.Room
        self.channel: ClassroomChannel | None = None
        self.notices: list[dict[str, Any]] = []
        """muted / unmute_allowed / removed / broadcast / move messages, in order."""
        self.reactions: list[dict[str, Any]] = []
        """Everyone's reactions in this seat's rooms: identity, reaction."""
        self.moves = 0
        self.reopened = 0
        """How often the channel was opened again after the server or network dropped it."""
        self._tracks = tracks
        self._options = connect_options
        self._moving: asyncio.Task[None] | None = None
        self._reopening: asyncio.Task[None] | None = None
        self._stats: asyncio.Task[None] | None = None
        self._meter = _RateMeter()

    @property
    def room_name(self) -> str:
        return self.channel.room if self.channel is not None else ""

    async def _join(self, token: str, name: str) -> None:
        from ..client import connect  # the client package is heavy: import on use

        self.room = await connect(token, name, self.server, tracks=list(self._tracks()),
                                  **self._options)
        self._token = token
        self._attach(await ClassroomChannel.open(self.server, token, name))
        if self._stats is None:
            self._stats = asyncio.ensure_future(self._report_stats())

    def _attach(self, channel: ClassroomChannel) -> None:
        self.channel = channel
        for message in list(channel.messages):  # what came while it opened (a move)
            self._on_message(message)
        channel.listeners.append(self._on_message)
        channel.dropped.append(self._on_drop)

    def _on_drop(self, channel: ClassroomChannel) -> None:
        removed = any(n["type"] == "removed" for n in channel.messages)
        if self.channel is channel and not removed:
            self._reopening = asyncio.ensure_future(self._reopen(channel))

    async def _reopen(self, dropped: ClassroomChannel) -> None:
        """Open the channel of the same room again: the room goes on without it (a
        restarted proxy, a network blip), and moves and mutes travel only on it."""
        for delay in REOPEN_DELAYS:
            await asyncio.sleep(delay)
            if self.channel is not dropped:
                return  # moved or left meanwhile
            try:
                channel = await ClassroomChannel.open(self.server, self._token, dropped.room)
            except (OSError, TimeoutError, VideoError, WebSocketException) as error:
                log.info("classroom channel of %s not open again yet: %s", self.identity, error)
                continue
            if self.channel is not dropped:
                await channel.close()
                return
            self._attach(channel)
            self.reopened += 1
            return
        log.warning("classroom channel of %s dropped and could not be opened again",
                    self.identity)

    def _on_message(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind in ("muted", "unmute_allowed", "removed", "broadcast", "move"):
            self.notices.append(message)
        if kind == "reaction":
            self.reactions.append(message)
        if kind == "muted":
            for publication in self.room.local_participant.tracks.values():
                if publication.track.kind == message["kind"]:
                    publication.track.disable()
        elif kind == "move":
            self._moving = asyncio.ensure_future(
                self._move(message["token"], message["room"], self._moving))

    async def _move(self, token: str, name: str, before: asyncio.Task[None] | None) -> None:
        if before is not None:  # moves happen in the order they were sent
            with contextlib.suppress(Exception):
                await before
        old_room, old_channel = self.room, self.channel
        self.channel = None
        if old_channel is not None:
            await old_channel.close()
        await old_room.disconnect()
        await self._join(token, name)
        self.moves += 1

    async def wait_in(self, room: str, timeout: float = WAIT) -> None:
        """Until this seat has joined ``room`` (after a move)."""
        deadline = time.monotonic() + timeout
        while self.room_name != room or self.room is None or self.room.name != room:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.identity} is in {self.room_name!r}, not {room!r}")
            await asyncio.sleep(0.05)

    async def _report_stats(self) -> None:
        while True:
            await asyncio.sleep(STATS_INTERVAL)
            room, channel = self.room, self.channel
            if room is None or channel is None:
                continue
            try:
                speaker = room.dominant_speaker  # set when joined with dominant_speaker=True
                await channel.send_stats(self._meter.samples(await room.get_stats()),
                                         speaker.identity if speaker is not None else None)
            except Exception:  # a room closing under it; the next round tries again
                log.debug("stats of %s not reported", self.identity, exc_info=True)

    # -- what a participant does ------------------------------------------------------

    async def raise_hand(self) -> None:
        assert self.channel is not None
        await self.channel.act("raise_hand")

    async def lower_hand(self) -> None:
        assert self.channel is not None
        await self.channel.act("lower_hand")

    async def react(self, reaction: str) -> None:
        """``thumbs_up``, ``clap``, ``laugh``, ``surprised``, ``heart`` or ``celebrate``."""
        assert self.channel is not None
        await self.channel.act("react", reaction=reaction)

    async def send_chat(self, text: str) -> dict[str, Any]:
        """Send ``text`` to the room's chat (kept in its history)."""
        assert self.channel is not None
        result: dict[str, Any] = await self.channel.act("chat", text=text)
        return result

    def chat_history(self) -> list[dict[str, Any]]:
        """The room's chat as this seat saw it: the history at joining, then what came."""
        return list(self.channel.chat) if self.channel is not None else []

    async def leave(self) -> None:
        for task in (self._stats, self._moving, self._reopening):
            if task is not None:
                task.cancel()
        channel, self.channel = self.channel, None
        if channel is not None:
            await channel.close()
        if self.room is not None:
            await self.room.disconnect()


async def attend(token: str, room: str, server: str, *, identity: str = "",
                 tracks: TrackFactory = tuple, **connect_options: Any) -> Seat:
    """Join ``room`` as a classroom participant; see :class:`Seat`."""
    seat = Seat(server, identity, tracks, connect_options)
    await seat._join(token, room)
    seat.identity = seat.room.local_participant.identity or identity
    return seat
