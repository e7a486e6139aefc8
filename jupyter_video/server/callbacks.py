"""Rooms Status Callbacks: Twilio's webhooks for room events, signed, ordered, retried.

What a room's ``StatusCallback`` URL receives is what Twilio sends
(https://www.twilio.com/docs/video/api/status-callbacks): one form-encoded
request per event (or a GET with the parameters in the query string), signed
with ``X-Twilio-Signature`` so that Twilio's ``RequestValidator`` accepts it
(https://www.twilio.com/docs/usage/security#validating-requests).

Each room's callbacks go out in order, one at a time, from a task of their
own: the room never waits on a receiver. A failed delivery is retried with
exponential back-off, then given up on and logged. A room's queue is bounded:
a receiver that is down drops the oldest waiting events, counted in the log.
The same parameters reach Python listeners in the server (``listeners``).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import inspect
import logging
import uuid
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlencode

from tornado.httpclient import AsyncHTTPClient, HTTPRequest

from ..model import Room, StatusCallbackSequence, utcnow
from ..store import Store
from .registry import RoomEvent

__all__ = [
    "ROOM_EVENTS",
    "Delivery",
    "StatusCallback",
    "StatusCallbacks",
    "StatusListener",
    "room_event_parameters",
    "room_parameters",
    "signature",
]

log = logging.getLogger(__name__)

# The Rooms events Twilio sends (recording-started/-completed/-failed come with
# recordings: they go through ``StatusCallbacks.send``). Other registry events,
# such as the internal "subscribe-rules-updated", are never sent.
ROOM_EVENTS = frozenset(
    {
        "room-created",
        "room-ended",
        "participant-connected",
        "participant-disconnected",
        "track-added",
        "track-removed",
        "track-enabled",
        "track-disabled",
    }
)

StatusListener = Callable[[dict[str, str]], "Awaitable[Any] | Any"]
"""A Python listener: called with each event's parameters; may be a coroutine function."""

# Twilio identifies itself so; receivers sometimes filter on it.
USER_AGENT = "TwilioProxy/1.1"
# One room's callbacks are serialized, but rooms deliver side by side: enough
# connections that a few dead receivers cannot hold up the other rooms'.
MAX_CONNECTIONS = 100
# Ended rooms whose next SequenceNumber is kept, for events after room-ended.
ENDED_ROOMS_KEPT = 10_000


@dataclass(frozen=True)
class Delivery:
    """How callbacks are delivered (from ``VideoApp``'s configuration)."""

    attempts: int = 4
    """Requests per event, the first one included, before giving up."""
    first_delay: float = 1.0
    """Seconds before the first retry; each further retry waits twice as long."""
    timeout: float = 15.0
    """Seconds one request may take (connect and answer)."""
    queue_size: int = 1000
    """Events one room may have waiting; beyond it the oldest waiting one is dropped."""

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("status callback attempts must be at least 1")
        if self.first_delay < 0 or self.timeout <= 0:
            raise ValueError("status callback delays and timeouts must be positive")
        if self.queue_size < 1:
            raise ValueError("status callback queue size must be at least 1")


@dataclass(frozen=True)
class StatusCallback:
    """One event on its way to a room's StatusCallback URL."""

    url: str
    method: str
    params: dict[str, str]
    # Twilio's webhooks carry one per event, the same on every retry, so that a
    # receiver can tell a retry from a new event.
    idempotency_token: str = field(default_factory=lambda: uuid.uuid4().hex)

    @property
    def event(self) -> str:
        return self.params.get("StatusCallbackEvent", "")

    def request(self, auth_token: str, timeout: float) -> HTTPRequest:
        """The signed HTTP request: a form-encoded POST, or a GET with a query string."""
        headers = {
            "User-Agent": USER_AGENT,
            "I-Twilio-Idempotency-Token": self.idempotency_token,
        }
        common: dict[str, Any] = {
            "connect_timeout": timeout,
            "request_timeout": timeout,
            "follow_redirects": False,
        }
        if self.method == "GET":
            separator = "&" if "?" in self.url else "?"
            url = f"{self.url}{separator}{urlencode(self.params)}"
            headers["X-Twilio-Signature"] = signature(auth_token, url, {})
            return HTTPRequest(url, "GET", headers=headers, **common)
        headers["Content-Type"] = "application/x-www-form-urlencoded"
        headers["X-Twilio-Signature"] = signature(auth_token, self.url, self.params)
        return HTTPRequest(self.url, "POST", headers=headers, body=urlencode(self.params), **common)


def signature(auth_token: str, url: str, params: Mapping[str, str]) -> str:
    """``X-Twilio-Signature``: base64 HMAC-SHA1 of the URL and the sorted parameters.

    For a GET, ``url`` is the full URL with its query string and ``params`` is
    empty (https://www.twilio.com/docs/usage/security#validating-requests).
    """
    payload = url + "".join(name + params[name] for name in sorted(params))
    digest = hmac.new(auth_token.encode(), payload.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def twilio_timestamp(time: datetime) -> str:
    """ISO 8601 UTC with milliseconds, as Twilio writes ``Timestamp``."""
    utc = time.astimezone(timezone.utc)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def room_parameters(room: Room, event: str, sequence_number: int, time: datetime) -> dict[str, str]:
    """The parameters every room status callback carries, whatever its event."""
    return {
        "AccountSid": room.account_sid,
        "RoomName": room.unique_name,
        "RoomSid": room.sid,
        "RoomStatus": room.status.value,
        "RoomType": room.type.value,
        "StatusCallbackEvent": event,
        "Timestamp": twilio_timestamp(time),
        "SequenceNumber": str(sequence_number),
    }


def room_event_parameters(event: RoomEvent, sequence_number: int) -> dict[str, str]:
    """The form parameters Twilio sends for a Rooms event, all as strings."""
    room = event.room
    params = room_parameters(room, event.name, sequence_number, event.time)
    if event.name == "room-ended" and room.duration is not None:
        params["RoomDuration"] = str(room.duration)
    participant = event.participant
    if participant is not None:
        params["ParticipantSid"] = participant.sid
        params["ParticipantStatus"] = participant.status.value
        params["ParticipantIdentity"] = participant.identity
        if event.name == "participant-disconnected" and participant.duration is not None:
            params["ParticipantDuration"] = str(participant.duration)
    track = event.track
    if track is not None:
        params["TrackSid"] = track.sid
        params["TrackKind"] = track.track_kind.value
        params["TrackName"] = track.name
    return params


@dataclass
class _RoomQueue:
    """One room's sequence counter and the callbacks waiting to go out, in order."""

    room_sid: str
    sequence: int = 0
    waiting: deque[StatusCallback] = field(default_factory=deque)
    dropped: int = 0
    worker: asyncio.Task[None] | None = None
    ended: bool = False


class StatusCallbacks:
    """Turns room events into Twilio's status callbacks and Python listener calls.

    ``on_room_event`` is a ``RoomRegistry`` listener. ``start()`` in the server's
    event loop begins delivery; events before it wait in their rooms' queues.
    """

    def __init__(
        self,
        auth_token: str,
        delivery: Delivery | None = None,
        logger: logging.Logger | logging.LoggerAdapter[Any] | None = None,
        store: Store | None = None,
    ) -> None:
        self.auth_token = auth_token
        self.store = store
        """Where each room's next SequenceNumber is kept (none: numbering is per process)."""
        self.delivery = delivery or Delivery()
        self.log = logger or log
        self.listeners: list[StatusListener] = []
        """Python callables taking each event's parameters dict (sync or async).

        Called in the event loop as each event happens, for every room (with or
        without a StatusCallback URL); a coroutine is run as a task. What a
        listener raises is logged and never reaches the room.
        """
        self._rooms: dict[str, _RoomQueue] = {}
        self._ended: OrderedDict[str, int] = OrderedDict()  # room SID -> next sequence number
        self._listener_tasks: set[asyncio.Task[Any]] = set()
        self._http: AsyncHTTPClient | None = None
        self._started = False
        self.dropped_total = 0
        """Status callbacks dropped since the server started (full room queues)."""

    @property
    def waiting(self) -> int:
        """Status callbacks waiting to be delivered, all rooms together."""
        return sum(len(queue.waiting) for queue in self._rooms.values())

    # -- events in ------------------------------------------------------------

    def on_room_event(self, event: RoomEvent) -> None:
        """Registry listener: number the event in its room, notify, queue its callback."""
        if event.name not in ROOM_EVENTS:
            return
        queue = self._queue(event.room.sid)
        self._publish(queue, event.room, room_event_parameters(event, queue.sequence))

    def send(
        self,
        room: Room,
        event: str,
        extra: Mapping[str, str] | None = None,
        time: datetime | None = None,
    ) -> dict[str, str]:
        """Number and deliver an event that is not a registry event; its parameters.

        For recording-started/-completed/-failed: ``extra`` carries Twilio's
        ``RecordingSid, SourceSid, RecordingUri, Container, Codec, TrackName, ...``
        (https://www.twilio.com/docs/video/api/status-callbacks#recordings-callbacks).
        """
        queue = self._queue(room.sid)
        params = room_parameters(room, event, queue.sequence, time or utcnow())
        params.update(extra or {})
        self._publish(queue, room, params)
        return params

    def _publish(self, queue: _RoomQueue, room: Room, params: dict[str, str]) -> None:
        queue.sequence += 1
        if self.store is not None:
            self.store.save(StatusCallbackSequence(room.sid, queue.sequence))
        if params["StatusCallbackEvent"] == "room-ended":
            queue.ended = True
        self._notify(params)
        if room.status_callback:
            self._enqueue(
                queue, StatusCallback(room.status_callback, room.status_callback_method, params)
            )
        else:
            self._forget_if_done(queue)

    def _queue(self, room_sid: str) -> _RoomQueue:
        queue = self._rooms.get(room_sid)
        if queue is None:
            queue = self._rooms[room_sid] = _RoomQueue(room_sid)
            ended_at = self._ended.pop(room_sid, None)
            if ended_at is not None:  # a late event (a recording completing) numbers on
                queue.sequence, queue.ended = ended_at, True
            elif self.store is not None:  # a room this process has not numbered yet
                kept = self.store.get(StatusCallbackSequence, room_sid)
                if kept is not None:
                    queue.sequence = kept.next
        return queue

    def _notify(self, params: dict[str, str]) -> None:
        for listener in list(self.listeners):
            try:
                result = listener(dict(params))
                if inspect.isawaitable(result):
                    task = asyncio.ensure_future(result)
                    self._listener_tasks.add(task)
                    task.add_done_callback(self._listener_done)
            except Exception:  # a listener's bug must not break the room
                self.log.exception(
                    "status listener %r failed on %s", listener, params["StatusCallbackEvent"]
                )

    def _listener_done(self, task: asyncio.Task[Any]) -> None:
        self._listener_tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.log.error("status listener failed", exc_info=task.exception())

    def _enqueue(self, queue: _RoomQueue, callback: StatusCallback) -> None:
        if len(queue.waiting) >= self.delivery.queue_size:
            # Keep the newest: they say what the room is now (room-ended above all).
            queue.waiting.popleft()
            queue.dropped += 1
            self.dropped_total += 1
        queue.waiting.append(callback)
        self._wake(queue)

    def _wake(self, queue: _RoomQueue) -> None:
        if self._started and queue.worker is None and queue.waiting:
            queue.worker = asyncio.ensure_future(self._deliver_room(queue))

    def _forget_if_done(self, queue: _RoomQueue) -> None:
        if queue.ended and queue.worker is None and not queue.waiting:
            self._rooms.pop(queue.room_sid, None)
            self._ended[queue.room_sid] = queue.sequence
            while len(self._ended) > ENDED_ROOMS_KEPT:
                self._ended.popitem(last=False)
            self._log_dropped(queue)

    def _log_dropped(self, queue: _RoomQueue) -> None:
        if queue.dropped:
            self.log.warning(
                "dropped %d status callbacks of room %s: its queue was full (%d events; "
                "VideoApp.status_callback_queue_size)",
                queue.dropped,
                queue.room_sid,
                self.delivery.queue_size,
            )
            queue.dropped = 0

    # -- delivery -------------------------------------------------------------

    def start(self) -> None:
        """Begin delivering (call in the server's running event loop)."""
        self._http = AsyncHTTPClient(force_instance=True, max_clients=MAX_CONNECTIONS)
        self._started = True
        for queue in list(self._rooms.values()):
            self._wake(queue)

    async def _deliver_room(self, queue: _RoomQueue) -> None:
        try:
            while queue.waiting:
                self._log_dropped(queue)
                await self._deliver(queue.waiting.popleft())
        finally:
            queue.worker = None
        self._forget_if_done(queue)

    async def _deliver(self, callback: StatusCallback) -> bool:
        """Send ``callback`` until a 2xx answer or out of attempts; whether it arrived."""
        assert self._http is not None
        delivery = self.delivery
        what = f"{callback.event} #{callback.params.get('SequenceNumber')}"
        room = callback.params.get("RoomSid")
        try:
            request = callback.request(self.auth_token, delivery.timeout)
        except Exception as error:  # a URL that REST let through but tornado refuses
            self.log.warning(
                "cannot send status callback %s of room %s to %s: %s",
                what,
                room,
                callback.url,
                error,
            )
            return False
        problem = ""
        for attempt in range(delivery.attempts):
            if attempt:
                await asyncio.sleep(delivery.first_delay * 2 ** (attempt - 1))
            try:
                response = await self._http.fetch(request, raise_error=False)
            except Exception as error:  # connection refused, timeout, bad URL
                problem = f"{type(error).__name__}: {error}"
            else:
                if 200 <= response.code < 300:
                    return True
                problem = f"HTTP {response.code}"
            self.log.info(
                "status callback %s of room %s to %s failed (attempt %d of %d): %s",
                what, room, callback.url, attempt + 1, delivery.attempts, problem,
            )  # fmt: skip
        self.log.warning(
            "gave up on status callback %s of room %s to %s after %d attempts: %s",
            what, room, callback.url, delivery.attempts, problem,
        )  # fmt: skip
        return False

    async def close(self, grace: float = 1.0) -> None:
        """Stop delivering: waits up to ``grace`` seconds, then logs what never went out."""
        workers = [queue.worker for queue in self._rooms.values() if queue.worker is not None]
        if workers:
            await asyncio.wait(workers, timeout=grace)
        self._started = False
        for queue in list(self._rooms.values()):
            if queue.worker is not None:
                queue.worker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await queue.worker
            left = len(queue.waiting)
            if left:
                self.log.warning(
                    "server stopping: %d status callbacks of room %s were not delivered",
                    left, queue.room_sid,
                )  # fmt: skip
            self._log_dropped(queue)
        self._rooms.clear()
        for task in list(self._listener_tasks):
            task.cancel()
        if self._http is not None:
            self._http.close()
            self._http = None
