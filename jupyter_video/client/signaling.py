"""The signaling connection: one WebSocket speaking TCMP v2, carrying RSP v2 bodies.

Behaves as twilio-video's ``TwilioConnection`` (lib/twilioconnection.js): a
``hello`` carrying the first RSP message, re-sent every 5 s without a
``welcome`` (three tries, then 53000); ``busy`` waits and retries or fails with
53006; once open, a ``heartbeat`` whenever nothing was sent for
``negotiatedTimeout - 200`` ms, and the connection counts as lost after
``3 * negotiatedTimeout`` without any frame from the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from dataclasses import dataclass
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from ..errors import SignalingError
from ..signaling import tcmp

log = logging.getLogger(__name__)

HELLO_ATTEMPTS = 3  # twilioconnection.js DEFAULT_MAX_CONSECUTIVE_FAILED_HELLOS
WELCOME_TIMEOUT = 5.0  # twilioconnection.js DEFAULT_WELCOME_TIMEOUT
OPEN_TIMEOUT = 15.0  # twilioconnection.js DEFAULT_OPEN_TIMEOUT


@dataclass(frozen=True)
class Closed:
    """The socket is gone: ``local`` when we closed it."""

    code: int | None
    reason: str
    local: bool


def signaling_url(server: str) -> str:
    """``http(s)://host/base/`` -> ``ws(s)://host/base/video/signaling`` (ws URLs kept)."""
    if server.startswith(("ws://", "wss://")):
        return server
    if server.startswith("https://"):
        base = "wss://" + server[len("https://"):]
    elif server.startswith("http://"):
        base = "ws://" + server[len("http://"):]
    else:
        raise ValueError(f"server must be an http(s) or ws(s) URL, got {server!r}")
    return base.rstrip("/") + "/video/signaling"


class SignalingConnection:
    """One TCMP session over one WebSocket; RSP bodies arrive in :attr:`inbox`.

    The inbox gets each server RSP body (a dict) in order, then one :class:`Closed`.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.inbox: asyncio.Queue[dict[str, Any] | Closed] = asyncio.Queue()
        self._loop = asyncio.get_running_loop()
        self._session = tcmp.ClientSession(self._loop.time())
        self._ws: ClientConnection | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False

    @property
    def is_open(self) -> bool:
        return self._session.state is tcmp.SessionState.OPEN

    async def open(self, body: dict[str, Any]) -> None:
        """Connect and say hello with ``body`` (connect or sync) until welcomed.

        Raises ``SignalingError`` 53000 (no welcome, refused) or 53006 (server busy).
        """
        try:
            self._ws = await ws_connect(self.url, open_timeout=OPEN_TIMEOUT, ping_interval=None,
                                        max_size=None, proxy=None)
        except (OSError, asyncio.TimeoutError, Exception) as exc:
            raise SignalingError(53000, f"Cannot open the signaling WebSocket {self.url}: "
                                        f"{exc}") from exc
        try:
            await self._handshake(body)
        except BaseException:
            await self._abort()
            raise
        self._tasks = [self._loop.create_task(self._read()),
                       self._loop.create_task(self._keep_alive())]

    async def _handshake(self, body: dict[str, Any]) -> None:
        assert self._ws is not None
        attempts = 0
        cookie: str | None = None
        while True:
            if attempts == HELLO_ATTEMPTS:
                raise SignalingError(53000, "All handshake attempts failed: no welcome")
            attempts += 1
            await self._send_hello(body, cookie)
            deadline = self._loop.time() + WELCOME_TIMEOUT
            while True:
                frame = await self._receive(deadline)
                if frame is None:
                    break  # no welcome in time: hello again
                if isinstance(frame, tcmp.Welcome):
                    return
                if isinstance(frame, tcmp.Bad):
                    raise SignalingError(53000, f"Server refused the hello: {frame.reason}")
                if isinstance(frame, tcmp.Busy):
                    if frame.retry_after < 0:
                        raise SignalingError(53006)
                    cookie = frame.cookie
                    attempts = 0
                    await asyncio.sleep(frame.retry_after / 1000)
                    break

    async def _send_hello(self, body: dict[str, Any], cookie: str | None) -> None:
        assert self._ws is not None
        if self._session.state is not tcmp.SessionState.AWAITING_HELLO:
            # a retried hello (twilioconnection.js _sendHello): same body, new id
            self._session = tcmp.ClientSession(self._loop.time())
        frame = self._session.hello_frame(str(uuid.uuid4()), body, self._loop.time(),
                                          cookie=cookie)
        await self._ws.send(frame)

    async def _receive(self, deadline: float) -> tcmp.ServerFrame | None:
        """The next valid frame before ``deadline`` (None on timeout)."""
        assert self._ws is not None
        while True:
            remaining = deadline - self._loop.time()
            if remaining <= 0:
                return None
            try:
                text = await asyncio.wait_for(self._ws.recv(), remaining)
            except asyncio.TimeoutError:
                return None
            except ConnectionClosed as exc:
                raise SignalingError(53000, f"Signaling socket closed during the handshake: "
                                            f"{exc}") from exc
            try:
                return self._session.receive(text, self._loop.time())
            except SignalingError as exc:
                # twilio-video drops a msg before the welcome (capture_error_before_welcome)
                log.debug("ignored server frame during the handshake: %s", exc)

    async def send(self, body: dict[str, Any]) -> None:
        """Send one RSP body in a ``msg`` frame (dropped if the socket is gone)."""
        if not self.is_open or self._ws is None:
            return
        frame = self._session.msg_frame(body, self._loop.time())
        with contextlib.suppress(ConnectionClosed):
            await self._ws.send(frame)

    async def _read(self) -> None:
        assert self._ws is not None
        try:
            async for text in self._ws:
                try:
                    frame = self._session.receive(text, self._loop.time())
                except SignalingError as exc:
                    if not self._closing:
                        log.warning("ignored invalid signaling frame: %s", exc)
                    continue
                if isinstance(frame, tcmp.Msg):
                    self.inbox.put_nowait(frame.body)
                elif isinstance(frame, tcmp.Bad):
                    log.warning("server sent bad: %s", frame.reason)
        except ConnectionClosed:
            pass
        finally:
            closed = Closed(self._ws.close_code, self._ws.close_reason or "",
                            local=self._closing)
            self._session.close()
            self.inbox.put_nowait(closed)

    async def _keep_alive(self) -> None:
        assert self._ws is not None
        while self.is_open:
            now = self._loop.time()
            if self._session.is_expired(now):
                log.info("signaling: missed 3 heartbeats; closing the socket")
                await self._ws.close(3001, "Missed 3 \"heartbeat\" messages")
                return
            if self._session.heartbeat_due(now):
                with contextlib.suppress(ConnectionClosed):
                    await self._ws.send(self._session.heartbeat_frame(now))
            wake = min(self._session.next_heartbeat_at, self._session.receive_deadline)
            await asyncio.sleep(max(0.05, wake - self._loop.time()))

    async def close(self, *, bye: bool = True) -> None:
        """Say ``bye`` and close with 1000, as ``room.disconnect()`` does; wait for the tasks."""
        self._closing = True
        if self._ws is not None and bye and self.is_open:
            with contextlib.suppress(ConnectionClosed, SignalingError):
                await self._ws.send(self._session.bye_frame(self._loop.time()))
        await self._abort()

    async def _abort(self) -> None:
        self._closing = True
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._ws.close(1000, "Normal"), 5)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
