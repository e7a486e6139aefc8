"""The signaling WebSocket: TCMP v2 framing and RSP v2 messages, as twilio-video.js speaks them.

One :class:`SignalingConnection` per socket, with one method per message type;
the room logic it calls is :class:`~jupyter_video.server.live.Conference`.
Authentication is the Access Token in ``connect``/``sync`` alone: a guest with
a token needs no Jupyter session. See docs/signaling.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from tornado.websocket import WebSocketClosedError, WebSocketHandler

from ..errors import SignalingError, VideoError
from ..signaling import rsp, tcmp
from ..tokens import verify_token
from .live import Conference, LiveParticipant

log = logging.getLogger(__name__)

HEARTBEAT_CHECK_SECONDS = 0.5
# The largest frame a client may send: an offer for dozens of tracks with every codec
# stays far below it, and a room is not held up parsing megabytes of JSON.
MAX_MESSAGE_BYTES = 1 << 20


class JoinRate:
    """Joins (``connect`` and ``sync``) one client address may make: ``per_second`` on
    average, ``burst`` at once (a token bucket per address).

    A script that reconnects in a loop must not take the server's loop from everyone
    else; a class behind one NAT address still joins at once within ``burst``.
    """

    def __init__(self, per_second: float, burst: int) -> None:
        self.per_second = per_second
        self.burst = burst
        self._buckets: dict[str, tuple[float, float]] = {}  # address -> (tokens, time)

    def admit(self, address: str, now: float) -> float:
        """0 if a join from ``address`` goes ahead now (and is counted), else the seconds
        until one would."""
        if self.per_second <= 0:
            return 0.0
        tokens, then = self._buckets.get(address, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - then) * self.per_second)
        if tokens < 1.0:
            self._buckets[address] = (tokens, now)
            return (1.0 - tokens) / self.per_second
        self._buckets[address] = (tokens - 1.0, now)
        if len(self._buckets) > 10_000:  # forget addresses whose buckets are full again
            self._buckets = {
                a: (t, at) for a, (t, at) in self._buckets.items()
                if t + (now - at) * self.per_second < self.burst
            }
        return 0.0


def _ignore_closed(sent: asyncio.Future[None]) -> None:
    if not sent.cancelled():
        sent.exception()


class SignalingConnection:
    """One client's signaling socket: frames in order, heartbeats, then its participant."""

    def __init__(self, conference: Conference, socket: SignalingHandler) -> None:
        self.conference = conference
        self.socket = socket
        self.loop = asyncio.get_running_loop()
        self.tcmp = tcmp.ServerSession(self.loop.time())
        self.participant: LiveParticipant | None = None
        self.left = False  # the client said disconnect (or was told to go)
        self._join_admitted = False  # its one join was counted against its address
        self._heartbeats = self.loop.create_task(self._keep_alive())
        self._inbox: asyncio.Queue[str | bytes | None] = asyncio.Queue()
        self._reader = self.loop.create_task(self._read())

    # -- frames in ---------------------------------------------------------------

    def receive(self, text: str | bytes) -> None:
        """Queue one frame: frames of one socket are handled one after another."""
        self._inbox.put_nowait(text)

    async def _read(self) -> None:
        while True:
            text = await self._inbox.get()
            if text is None:
                break
            try:
                await self._handle(text)
            except VideoError as error:
                await self.fail(error)
            except Exception as exc:  # a bug here must not take the server down
                log.exception("signaling message failed")
                await self.fail(SignalingError(53000, f"Server error handling a message: {exc}"))
        self._after_close()

    async def _handle(self, text: str | bytes) -> None:
        if len(text) > MAX_MESSAGE_BYTES:
            raise SignalingError(
                53004,
                f"Signaling message of {len(text)} bytes is over the limit of "
                f"{MAX_MESSAGE_BYTES} bytes",
            )
        frame = self.tcmp.receive(text, self.loop.time())
        handler: Callable[[Any], Awaitable[None]] = {
            tcmp.Hello: self.on_hello,
            tcmp.Msg: self.on_msg,
            tcmp.Heartbeat: self.on_heartbeat,
            tcmp.Bye: self.on_bye,
        }[type(frame)]  # type: ignore[assignment]
        await handler(frame)

    async def on_hello(self, frame: tcmp.Hello) -> None:
        if frame.body is not None and frame.body.get("type") in ("connect", "sync"):
            wait = self._join_wait()
            if wait:
                # Before welcome, twilio-video takes busy as "retry after retryAfter ms".
                self._write(tcmp.busy(int(wait * 1000) + 1))
                self.left = True
                self.socket.close(1000)
                return
        self._write(self.tcmp.welcome_frame(self.loop.time()))
        if frame.body is not None:
            await self.on_rsp(frame.body)

    async def on_msg(self, frame: tcmp.Msg) -> None:
        await self.on_rsp(frame.body)

    async def on_heartbeat(self, frame: tcmp.Heartbeat) -> None:
        pass  # receiving it already moved the deadline

    async def on_bye(self, frame: tcmp.Bye) -> None:
        self.socket.close(1000)

    # -- RSP messages --------------------------------------------------------------

    async def on_rsp(self, body: dict[str, Any]) -> None:
        message = rsp.parse_client_message(body)
        if self.left:
            return  # twilio-video keeps sending ICE after it was told to go
        handler: Callable[[Any], Awaitable[None]] = {
            rsp.Connect: self.on_connect,
            rsp.Sync: self.on_sync,
            rsp.Update: self.on_update,
            rsp.Disconnect: self.on_disconnect,
            rsp.Ice: self.on_ice,
        }[type(message)]  # type: ignore[assignment]
        await handler(message)

    def _join_wait(self) -> float:
        rate: JoinRate | None = getattr(self.socket.settings["jupyter_video"], "join_rate", None)
        if rate is None or self._join_admitted:
            return 0.0
        wait = rate.admit(self.socket.request.remote_ip or "", self.loop.time())
        self._join_admitted = not wait
        return wait

    def _check_join_rate(self) -> None:
        wait = self._join_wait()
        if wait:
            raise SignalingError(
                53006,
                f"Too many joins from this address; retry in {wait:.1f} s "
                "(VideoApp.joins_per_second)",
            )

    async def on_connect(self, message: rsp.Connect) -> None:
        if self.participant is not None:
            raise SignalingError(53004, "connect was already sent on this connection")
        self._check_join_rate()
        self.participant = await self.conference.join(self, message)

    async def on_sync(self, message: rsp.Sync) -> None:
        if self.participant is not None:
            raise SignalingError(53004, "sync is only for a new connection")
        self._check_join_rate()
        self.participant = await self.conference.resume(self, message)

    async def on_update(self, message: rsp.Update) -> None:
        if self.participant is None:
            raise SignalingError(53004, "update before connect: send connect first")
        await self.conference.update(self.participant, message)

    async def on_disconnect(self, message: rsp.Disconnect) -> None:
        self.left = True
        if self.participant is not None:
            await self.conference.leave(self.participant)

    async def on_ice(self, message: rsp.Ice) -> None:
        # twilio-video.js (and connect()) ask here when not given iceServers: a Twilio
        # app moved to this server gets the configured STUN/TURN servers unchanged.
        context = self.socket.settings["jupyter_video"]
        claims = verify_token(
            message.token,
            account_sid=context.credentials.account_sid,
            api_keys=context.credentials.api_keys,
        )
        ttl = max(0.0, claims.expires_at - time.time())
        servers = context.ice_servers.for_identity(claims.identity, ttl)
        self.send(rsp.Iced(ice_servers=servers).to_dict())

    # -- frames out ----------------------------------------------------------------

    def send(self, body: dict[str, Any]) -> None:
        """Send one RSP body in a ``msg`` frame."""
        if self.tcmp.state is not tcmp.SessionState.OPEN:
            return
        self._write(self.tcmp.msg_frame(body, self.loop.time()))

    def _write(self, frame: str) -> None:
        with contextlib.suppress(WebSocketClosedError):
            sent = self.socket.write_message(frame)
            # A socket that closes while the frame is queued fails the future later;
            # nobody waits for it, so take its exception here instead of asyncio
            # logging "Task exception was never retrieved".
            sent.add_done_callback(_ignore_closed)

    def close(self) -> None:
        self.left = True
        self.socket.close(1000)

    async def fail(self, error: VideoError) -> None:
        """Tell the client what was wrong, end its participant and close only this socket."""
        # Media failures point at a server or network problem; the rest at the client.
        level = logging.WARNING if 53400 <= error.code < 53500 else logging.INFO
        log.log(level, "signaling connection ended: %s", error)
        if self.tcmp.welcomed and self.tcmp.state is tcmp.SessionState.OPEN:
            self.send(rsp.Error(error.code, error.message).to_dict())
        elif self.tcmp.state is not tcmp.SessionState.CLOSED:
            self._write(tcmp.bad(f"{error.code}: {error.message}"))
        self.left = True
        if self.participant is not None:
            await self.conference.leave(self.participant)
        self.socket.close(1000)

    # -- life of the socket ----------------------------------------------------------

    async def _keep_alive(self) -> None:
        while True:
            asked = self.loop.time()
            await asyncio.sleep(HEARTBEAT_CHECK_SECONDS)
            now = self.loop.time()
            if now - asked > 2 * HEARTBEAT_CHECK_SECONDS:
                # This server's loop was too busy to wake us on time, so it may not have
                # read the heartbeats waiting in the socket either: the client is not the
                # one that went silent (50 joins at once on a loaded machine closed them all).
                continue
            if self.tcmp.is_expired(now) and self._inbox.empty():
                # (frames queued behind a slow one, e.g. a connect, are heartbeats too)
                log.info("signaling client missed its heartbeats; closing")
                self.socket.close(3001, "Missed heartbeats")
                return
            if self.tcmp.heartbeat_due(now):
                self._write(self.tcmp.heartbeat_frame(now))

    def closed(self) -> None:
        """The socket is gone: handle what it delivered before (twilio-video sends
        ``disconnect`` and ``bye`` right before closing), then let the participant go."""
        self._heartbeats.cancel()
        self._inbox.put_nowait(None)

    def _after_close(self) -> None:
        self.tcmp.close()
        if self.participant is not None and self.participant.connection is self:
            if self.left:
                self.conference.spawn(self.conference.leave(self.participant))
            else:
                # A participant that did not say goodbye may come back with ``sync``.
                self.conference.connection_lost(self.participant)


class SignalingHandler(WebSocketHandler):
    """``{base_url}video/signaling``: no Jupyter session needed, the Access Token decides."""

    connection: SignalingConnection | None = None

    def check_origin(self, origin: str) -> bool:
        # Any page may connect: the Access Token inside connect is the credential.
        return True

    def get_compression_options(self) -> dict[str, Any] | None:
        return {}

    @property
    def max_message_size(self) -> int:
        # Twice the protocol's limit: a frame over that limit still reaches _handle,
        # which refuses it with 53004, instead of tornado closing with a bare 1009.
        return 2 * MAX_MESSAGE_BYTES

    def open(self, *args: Any, **kwargs: Any) -> None:
        conference: Conference = self.settings["jupyter_video"].conference
        self.connection = SignalingConnection(conference, self)

    def on_message(self, message: str | bytes) -> None:
        if self.connection is not None:
            self.connection.receive(message)

    def on_close(self) -> None:
        if self.connection is not None:
            self.connection.closed()


handlers = [(r"/video/signaling/?", SignalingHandler)]
