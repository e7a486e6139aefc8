"""TCMP v2: the framing that twilio-video.js 2.x speaks over its WebSocket.

Sans-I/O: text frames in, typed frames out, text frames to send; no sockets,
no asyncio. Times are seconds from any monotonic clock, passed in by the caller.

The reference is twilio-video 2.36 ``lib/twilioconnection.js``:

- client frames: ``hello {id, timeout, version: 2, cookie?, body?}``, ``msg {body}``,
  ``heartbeat``, ``bye`` (twilioconnection.js ``_sendHello``, ``sendMessage``,
  ``_sendHeartbeat``, ``close``);
- server frames: ``welcome {negotiatedTimeout}``, ``msg {body}``, ``heartbeat``,
  ``bad {reason}``, ``busy {cookie, keepAlive, retryAfter}``, ``bye``
  (twilioconnection.js message switch, lines 309-334).

Parsing a client frame raises ``SignalingError(53004)`` ("Client sent an invalid
signaling message"); parsing a server frame raises ``SignalingError(53003)``
("Client received an invalid signaling message"): Twilio names both codes from
the client's side.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from typing import Any, TypeAlias

from jupyter_video.errors import SignalingError

__all__ = [
    "DEFAULT_TIMEOUT_MS",
    "MAX_MISSED_HEARTBEATS",
    "OUTGOING_HEARTBEAT_OFFSET_MS",
    "TCMP_VERSION",
    "Bad",
    "Busy",
    "Bye",
    "ClientFrame",
    "ClientSession",
    "Heartbeat",
    "Hello",
    "Msg",
    "ServerFrame",
    "ServerSession",
    "SessionState",
    "Welcome",
    "bad",
    "busy",
    "bye",
    "heartbeat",
    "hello",
    "msg",
    "parse_client_frame",
    "parse_server_frame",
    "welcome",
]

TCMP_VERSION = 2
# twilioconnection.js: DEFAULT_MAX_REQUESTED_HEARTBEAT_TIMEOUT, the "timeout" of every hello.
DEFAULT_TIMEOUT_MS = 5000
# twilioconnection.js: DEFAULT_MAX_CONSECUTIVE_MISSED_HEARTBEATS; the client closes
# with 3001 "Missed 3 heartbeat messages" after negotiatedTimeout * 3 of silence.
MAX_MISSED_HEARTBEATS = 3
# twilioconnection.js: OUTGOING_HEARTBEAT_OFFSET; the client heartbeats after
# negotiatedTimeout - 200 ms without sending anything else.
OUTGOING_HEARTBEAT_OFFSET_MS = 200

CLIENT_INVALID = 53004  # the client sent it: "Client sent an invalid signaling message"
SERVER_INVALID = 53003  # the client received it: "Client received an invalid signaling message"


# --- frames ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Hello:
    """Client's opening frame; ``body`` is the first RSP message (connect, sync or ice)."""

    id: str
    timeout: int
    version: int = TCMP_VERSION
    cookie: str | None = None
    body: dict[str, Any] | None = None


@dataclass(frozen=True)
class Msg:
    """An RSP message, either way."""

    body: dict[str, Any]


@dataclass(frozen=True)
class Heartbeat:
    """Keep-alive, either way; any ``msg`` also counts as one (twilioconnection.js 319-326)."""


@dataclass(frozen=True)
class Bye:
    """Orderly close, either way; the client ignores a server's bye (twilioconnection.js 316)."""


@dataclass(frozen=True)
class Welcome:
    """Server's answer to hello; ``negotiated_timeout`` in ms drives both heartbeat clocks."""

    negotiated_timeout: int


@dataclass(frozen=True)
class Bad:
    """Server rejects a frame; before welcome it makes the client close with 3002."""

    reason: str


@dataclass(frozen=True)
class Busy:
    """Server is busy; ``retry_after`` < 0 is terminal (client fails with 53006)."""

    retry_after: int
    keep_alive: bool = False
    cookie: str | None = None


ClientFrame: TypeAlias = Hello | Msg | Heartbeat | Bye
ServerFrame: TypeAlias = Welcome | Msg | Heartbeat | Bye | Bad | Busy


def _load(text: str | bytes, code: int) -> dict[str, Any]:
    try:
        frame = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise SignalingError(code, f"TCMP frame is not JSON: {exc}") from None
    except RecursionError:
        # json.loads recurses once per nesting level; no message of the protocol nests deep.
        raise SignalingError(code, "TCMP frame nests too deep to be a signaling message") from None
    if not isinstance(frame, dict):
        raise SignalingError(code, f"TCMP frame must be a JSON object, got {type(frame).__name__}")
    if not isinstance(frame.get("type"), str):
        raise SignalingError(code, "TCMP frame has no string 'type'")
    return frame


def _field(frame: dict[str, Any], name: str, kind: type | tuple[type, ...], code: int,
           *, required: bool = True) -> Any:
    value = frame.get(name)
    if value is None:
        if required:
            raise SignalingError(code, f"TCMP {frame['type']}: missing '{name}'")
        return None
    # bool is an int in Python; JSON true is never a valid number here.
    if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        raise SignalingError(code, f"TCMP {frame['type']}: '{name}' must not be a boolean")
    if not isinstance(value, kind):
        raise SignalingError(
            code, f"TCMP {frame['type']}: '{name}' has type {type(value).__name__}")
    return value


def _msg(frame: dict[str, Any], code: int) -> Msg:
    return Msg(body=_field(frame, "body", dict, code))


def parse_client_frame(text: str | bytes) -> ClientFrame:
    """Parse a frame twilio-video sent; raise ``SignalingError(53004)`` if it is malformed."""
    code = CLIENT_INVALID
    frame = _load(text, code)
    kind = frame["type"]
    if kind == "hello":
        version = _field(frame, "version", int, code)
        if version != TCMP_VERSION:
            raise SignalingError(code, f"TCMP hello: unsupported version {version}, expected 2")
        timeout = _field(frame, "timeout", (int, float), code)
        if timeout <= 0:
            raise SignalingError(code, f"TCMP hello: 'timeout' must be positive, got {timeout}")
        return Hello(
            id=_field(frame, "id", str, code),
            timeout=int(timeout),
            version=version,
            cookie=_field(frame, "cookie", str, code, required=False),
            body=_field(frame, "body", dict, code, required=False),
        )
    if kind == "msg":
        return _msg(frame, code)
    if kind == "heartbeat":
        return Heartbeat()
    if kind == "bye":
        return Bye()
    raise SignalingError(code, f"TCMP: unknown client frame type {kind!r}")


def parse_server_frame(text: str | bytes) -> ServerFrame:
    """Parse a frame a server sent; raise ``SignalingError(53003)`` if it is malformed."""
    code = SERVER_INVALID
    frame = _load(text, code)
    kind = frame["type"]
    if kind == "welcome":
        timeout = _field(frame, "negotiatedTimeout", (int, float), code)
        if timeout <= OUTGOING_HEARTBEAT_OFFSET_MS:
            raise SignalingError(code, f"TCMP welcome: 'negotiatedTimeout' too small: {timeout}")
        return Welcome(negotiated_timeout=int(timeout))
    if kind == "msg":
        return _msg(frame, code)
    if kind == "heartbeat":
        return Heartbeat()
    if kind == "bye":
        return Bye()
    if kind == "bad":
        return Bad(reason=_field(frame, "reason", str, code, required=False) or "")
    if kind == "busy":
        return Busy(
            retry_after=int(_field(frame, "retryAfter", (int, float), code)),
            keep_alive=bool(_field(frame, "keepAlive", bool, code, required=False)),
            cookie=_field(frame, "cookie", str, code, required=False),
        )
    raise SignalingError(code, f"TCMP: unknown server frame type {kind!r}")


# --- builders: each returns the text frame to send ----------------------------------------

def _dump(frame: dict[str, Any]) -> str:
    return json.dumps(frame, separators=(",", ":"))


def welcome(negotiated_timeout: int) -> str:
    """``welcome``: the client now flushes its queue and starts both heartbeat timers."""
    return _dump({"type": "welcome", "negotiatedTimeout": negotiated_timeout})


def msg(body: dict[str, Any]) -> str:
    """``msg`` carrying one RSP body."""
    return _dump({"type": "msg", "body": body})


def heartbeat() -> str:
    """``heartbeat``."""
    return _dump({"type": "heartbeat"})


def bye() -> str:
    """``bye``."""
    return _dump({"type": "bye"})


def bad(reason: str) -> str:
    """``bad``: before welcome the client closes (3002); after, it only logs an error."""
    return _dump({"type": "bad", "reason": reason})


def busy(retry_after: int, *, keep_alive: bool = False, cookie: str | None = None) -> str:
    """``busy``: the client retries after ``retry_after`` ms, or fails (53006) if negative."""
    frame: dict[str, Any] = {"type": "busy", "retryAfter": retry_after, "keepAlive": keep_alive}
    if cookie is not None:
        frame["cookie"] = cookie
    return _dump(frame)


def hello(id: str, body: dict[str, Any] | None = None, *, timeout: int = DEFAULT_TIMEOUT_MS,
          cookie: str | None = None) -> str:
    """``hello`` as twilio-video builds it (twilioconnection.js ``_sendHello``)."""
    frame: dict[str, Any] = {"id": id, "timeout": timeout, "type": "hello",
                             "version": TCMP_VERSION}
    if cookie is not None:
        frame["cookie"] = cookie
    if body is not None:
        frame["body"] = body
    return _dump(frame)


# --- sessions -------------------------------------------------------------------------------

class SessionState(enum.Enum):
    """Where a TCMP connection stands."""

    AWAITING_HELLO = "awaiting-hello"      # server: socket open, no hello yet
    AWAITING_WELCOME = "awaiting-welcome"  # client: hello sent, no welcome yet
    OPEN = "open"
    CLOSED = "closed"


class _Heartbeats:
    """Both heartbeat clocks of one side, in seconds."""

    def __init__(self) -> None:
        self.timeout = DEFAULT_TIMEOUT_MS / 1000
        self.last_received = 0.0
        self.last_sent = 0.0

    @property
    def receive_deadline(self) -> float:
        """When the peer counts as gone: ``MAX_MISSED_HEARTBEATS`` timeouts of silence."""
        return self.last_received + self.timeout * MAX_MISSED_HEARTBEATS

    @property
    def next_heartbeat_at(self) -> float:
        """When to send a heartbeat if nothing else was sent before (any frame counts)."""
        return self.last_sent + self.timeout - OUTGOING_HEARTBEAT_OFFSET_MS / 1000


class _Session:
    """State, transitions and heartbeat clocks shared by both ends."""

    _transitions: dict[SessionState, frozenset[SessionState]] = {}

    def __init__(self, state: SessionState, now: float) -> None:
        self.state = state
        self._clock = _Heartbeats()
        self._clock.last_received = self._clock.last_sent = now

    def _transition(self, to: SessionState) -> None:
        if to not in self._transitions[self.state]:
            raise SignalingError(53000, f"TCMP session cannot go from {self.state.value} "
                                        f"to {to.value}")
        self.state = to

    @property
    def negotiated_timeout(self) -> int:
        """Heartbeat period in ms agreed in the welcome."""
        return round(self._clock.timeout * 1000)

    @property
    def receive_deadline(self) -> float:
        """Clock value after which the peer has missed its heartbeats."""
        return self._clock.receive_deadline

    @property
    def next_heartbeat_at(self) -> float:
        """Clock value at which ``heartbeat_frame`` should be sent if nothing else was."""
        return self._clock.next_heartbeat_at

    def is_expired(self, now: float) -> bool:
        """Whether the peer, while open, has been silent past its deadline."""
        return self.state is SessionState.OPEN and now > self._clock.receive_deadline

    def heartbeat_due(self, now: float) -> bool:
        """Whether a heartbeat must go out now to keep the peer's timer from firing."""
        return self.state is SessionState.OPEN and now >= self._clock.next_heartbeat_at

    def _sent(self, frame: str, now: float) -> str:
        if self.state is SessionState.CLOSED:
            raise SignalingError(53001, "TCMP session is closed")
        self._clock.last_sent = now
        return frame

    def msg_frame(self, body: dict[str, Any], now: float) -> str:
        """A ``msg`` to send; only while open (twilio-video drops msg before welcome)."""
        if self.state is not SessionState.OPEN:
            raise SignalingError(53000, f"TCMP msg cannot be sent while {self.state.value}")
        return self._sent(msg(body), now)

    def heartbeat_frame(self, now: float) -> str:
        """A ``heartbeat`` to send."""
        return self._sent(heartbeat(), now)

    def bye_frame(self, now: float) -> str:
        """A ``bye`` to send; the session is closed afterwards."""
        frame = self._sent(bye(), now)
        self.close()
        return frame

    def close(self) -> None:
        """Mark the session closed (socket gone, bye sent or received)."""
        self.state = SessionState.CLOSED


class ServerSession(_Session):
    """The server's end of one TCMP connection.

    ``receive`` parses each incoming text frame and enforces order: the first
    frame must be ``hello``; ``msg`` and ``heartbeat`` only after it; nothing
    after ``bye``. Send the frame from ``welcome_frame`` right after the hello,
    before any slow work: the client re-sends its hello (same body, new id)
    every 5 s without a welcome and gives up after three (twilioconnection.js
    ``_handleWelcomeTimeout``); such a retry is accepted and counted in
    ``hello_retries`` until the welcome is sent.
    """

    _transitions = {
        SessionState.AWAITING_HELLO: frozenset({SessionState.OPEN, SessionState.CLOSED}),
        SessionState.OPEN: frozenset({SessionState.CLOSED}),
        SessionState.CLOSED: frozenset(),
    }

    def __init__(self, now: float, *, max_timeout_ms: int = DEFAULT_TIMEOUT_MS) -> None:
        super().__init__(SessionState.AWAITING_HELLO, now)
        self.max_timeout_ms = max_timeout_ms
        self.hello: Hello | None = None
        self.hello_retries = 0
        self.welcomed = False

    def receive(self, text: str | bytes, now: float) -> ClientFrame:
        """Parse and account for one client frame; raise ``SignalingError`` when out of order."""
        frame = parse_client_frame(text)
        if self.state is SessionState.CLOSED:
            raise SignalingError(CLIENT_INVALID, f"TCMP {_name(frame)} after the session closed")
        if isinstance(frame, Hello):
            if self.welcomed:
                raise SignalingError(CLIENT_INVALID, "TCMP hello: session already open")
            if self.state is SessionState.OPEN:
                self.hello_retries += 1
            else:
                self._transition(SessionState.OPEN)
            self.hello = frame
            # The client heartbeats at negotiatedTimeout - 200 ms and expects ours
            # within 3 * negotiatedTimeout (twilioconnection.js _handleWelcome).
            self._clock.timeout = min(frame.timeout, self.max_timeout_ms) / 1000
        elif self.state is SessionState.AWAITING_HELLO:
            raise SignalingError(CLIENT_INVALID, f"TCMP {_name(frame)} before hello")
        elif isinstance(frame, Bye):
            self._transition(SessionState.CLOSED)
        self._clock.last_received = now
        return frame

    def welcome_frame(self, now: float) -> str:
        """The ``welcome`` answering the hello, with the negotiated timeout."""
        if self.hello is None or self.state is not SessionState.OPEN or self.welcomed:
            raise SignalingError(53000, "TCMP welcome must answer one hello, once")
        self.welcomed = True
        return self._sent(welcome(self.negotiated_timeout), now)


class ClientSession(_Session):
    """The client's end: ``hello_frame`` first, then ``receive`` until welcome opens it."""

    _transitions = {
        SessionState.AWAITING_HELLO: frozenset({SessionState.AWAITING_WELCOME,
                                                SessionState.CLOSED}),
        SessionState.AWAITING_WELCOME: frozenset({SessionState.OPEN, SessionState.CLOSED}),
        SessionState.OPEN: frozenset({SessionState.CLOSED}),
        SessionState.CLOSED: frozenset(),
    }

    def __init__(self, now: float, *, timeout_ms: int = DEFAULT_TIMEOUT_MS) -> None:
        super().__init__(SessionState.AWAITING_HELLO, now)
        self.requested_timeout_ms = timeout_ms

    def hello_frame(self, id: str, body: dict[str, Any] | None, now: float,
                    *, cookie: str | None = None) -> str:
        """The ``hello`` carrying the first RSP message (connect or sync)."""
        self._transition(SessionState.AWAITING_WELCOME)
        return self._sent(hello(id, body, timeout=self.requested_timeout_ms, cookie=cookie),
                          now)

    def receive(self, text: str | bytes, now: float) -> ServerFrame:
        """Parse and account for one server frame; raise ``SignalingError`` when out of order."""
        frame = parse_server_frame(text)
        if self.state is SessionState.CLOSED:
            raise SignalingError(SERVER_INVALID, f"TCMP {_name(frame)} after the session closed")
        if isinstance(frame, Welcome):
            if self.state is not SessionState.AWAITING_WELCOME:
                raise SignalingError(SERVER_INVALID,
                                     f"TCMP welcome while {self.state.value}")
            self._clock.timeout = frame.negotiated_timeout / 1000
            self._transition(SessionState.OPEN)
        elif isinstance(frame, Msg | Heartbeat) and self.state is not SessionState.OPEN:
            raise SignalingError(SERVER_INVALID, f"TCMP {_name(frame)} before welcome")
        elif _ends_handshake(frame, self.state):
            self._transition(SessionState.CLOSED)
        self._clock.last_received = now
        return frame


def _ends_handshake(frame: ServerFrame, state: SessionState) -> bool:
    """A terminal busy, or bad before welcome, closes the client (twilioconnection.js)."""
    if isinstance(frame, Busy):
        return frame.retry_after < 0
    return isinstance(frame, Bad) and state is SessionState.AWAITING_WELCOME


def _name(frame: ClientFrame | ServerFrame) -> str:
    return type(frame).__name__.lower()
