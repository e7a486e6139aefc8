"""``{base_url}video/media``: the media socket, relayed to the participant's media plane.

A participant whose peer connection was negotiated as a media socket
(docs/media_socket.md) opens this WebSocket after ``connected`` and says
``{"type": "hello", "session": ...}`` with the signaling session it was given,
or ``{"type": "hello", "participant": ..., "key": ...}`` with the credential
the server's SDP gave it over that session (twilio-video keeps the session to
itself): no Jupyter cookie, so guests and pages behind a hub's proxy work.
The control plane never looks into media: every later message is
relayed as it is to the Unix socket the media plane named for the participant
(:class:`~jupyter_video.sfu.interface.OpenMediaSocket`), and what comes back is
written to the socket, one message at a time. A write that does not finish
stops the relay's reading, so the media plane's queues (and their policy)
hold what waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
from collections.abc import Mapping
from typing import Any

from tornado.websocket import WebSocketClosedError, WebSocketHandler

from ..errors import VideoError
from ..sfu.interface import MediaSocketAddress, relay_frame, relay_read
from ..signaling import mediasocket as ms
from .live import Conference

log = logging.getLogger(__name__)

HELLO_TIMEOUT = 10.0
WRITE_TIMEOUT = 5.0
"""Seconds one message may take to leave; longer and the socket is closed with
53405 (the media plane fails the peer after the same time)."""


def media_transport(configured: str, environ: Mapping[str, str]) -> str:
    """The transport the widgets are told to use: ``configured`` (VideoApp.media_transport),
    or for ``auto`` "websocket" where this server knows UDP cannot reach it: a Binder
    pod (``BINDER_LAUNCH_HOST`` / ``BINDER_REQUEST``: egress and ingress only through
    the hub's HTTP proxy) or a JupyterHub single-user server in Kubernetes
    (``JUPYTERHUB_SERVICE_PREFIX`` with ``KUBERNETES_SERVICE_HOST``: only the proxy
    reaches the pod)."""
    if configured != "auto":
        return configured
    if "BINDER_LAUNCH_HOST" in environ or "BINDER_REQUEST" in environ:
        return "websocket"
    if "JUPYTERHUB_SERVICE_PREFIX" in environ and "KUBERNETES_SERVICE_HOST" in environ:
        return "websocket"
    return "auto"


class MediaSocketHandler(WebSocketHandler):
    """One participant's media socket: hello, then a relay both ways."""

    _relay: asyncio.StreamWriter | None = None
    _pump: asyncio.Task[None] | None = None
    _hello_timer: asyncio.TimerHandle | None = None

    def check_origin(self, origin: str) -> bool:
        # The signaling session in hello is the credential, as the Access Token is
        # for signaling.
        return True

    def get_compression_options(self) -> dict[str, Any] | None:
        return None  # encoded media does not compress; deflate would only add latency

    @property
    def max_message_size(self) -> int:
        # Tornado closes with 1009 past this; up to it, the media plane answers
        # with 53004 and a message saying what the limit is.
        return 2 * ms.MAX_MESSAGE_SIZE

    def open(self, *args: Any, **kwargs: Any) -> None:
        self.set_nodelay(True)
        self._hello_timer = asyncio.get_running_loop().call_later(
            HELLO_TIMEOUT, self._fail, ms.INVALID_MESSAGE,
            f"no hello within {HELLO_TIMEOUT:.0f} s")

    async def on_message(self, message: str | bytes) -> None:
        # Tornado reads the next message only when this returns: a participant
        # sending faster than the media plane takes waits in its own TCP buffer.
        relay = self._relay
        if relay is not None:
            relay.write(relay_frame(message))
            try:
                await relay.drain()
            except ConnectionError:
                # The media plane closed its end: _send_back closes this socket with
                # the code it was told, once it has read the rest.
                self._relay = None
            return
        if self._hello_timer is None:
            return  # hello is being handled
        self._hello_timer.cancel()
        self._hello_timer = None
        try:
            await self._hello(message)
        except ms.MediaSocketError as error:
            self._fail(error.code, error.message)
        except VideoError as error:
            self._fail(error.code, error.message)

    async def _hello(self, message: str | bytes) -> None:
        if not isinstance(message, str):
            raise ms.MediaSocketError(ms.INVALID_MESSAGE, "the first message must be hello")
        body = ms.parse_control(message, {"hello": ms.CLIENT_CONTROL["hello"]})
        conference: Conference = self.settings["jupyter_video"].conference
        if "session" in body:
            participant = conference.sessions.get(str(body["session"]))
            if participant is None or participant.gone:
                raise ms.MediaSocketError(
                    53204, "No participant has this signaling session: connect to the room, "
                    "then open the media socket with the session 'connected' gave")
            address: MediaSocketAddress | None = await conference.media.open_media_socket(
                participant.sid)
        elif "participant" in body and "key" in body:
            try:
                address = await conference.media.open_media_socket(str(body["participant"]))
            except VideoError:
                address = None
            if address is None or not hmac.compare_digest(
                    address.participant_key.encode(), str(body["key"]).encode()):
                raise ms.MediaSocketError(
                    53204, "No participant has this media key: use the participant sid and "
                    "key of the server's x-jupyter-video-media SDP attribute")
        else:
            raise ms.MediaSocketError(
                ms.INVALID_MESSAGE, "hello needs 'session', or 'participant' and 'key'")
        assert address is not None
        reader, writer = await asyncio.open_unix_connection(address.path)
        writer.write(relay_frame(address.key))
        await writer.drain()
        if self.ws_connection is None:  # closed meanwhile
            writer.close()
            return
        self._relay = writer
        self._pump = asyncio.ensure_future(self._send_back(reader))

    async def _send_back(self, reader: asyncio.StreamReader) -> None:
        """Write what the media plane sends, one message at a time."""
        error: tuple[int, str] | None = None
        while (message := await relay_read(reader)) is not None:
            if isinstance(message, str) and message.startswith('{"type":"error"'):
                with contextlib.suppress(ValueError, KeyError):
                    body = json.loads(message)
                    error = (int(body["code"]), str(body["message"]))
            try:
                await asyncio.wait_for(
                    self.write_message(message, binary=isinstance(message, bytes)),
                    WRITE_TIMEOUT)
            except WebSocketClosedError:
                return
            except asyncio.TimeoutError:
                self._close(ms.close_code(ms.MEDIA_FAILED),
                            f"{ms.MEDIA_FAILED}: the media socket took nothing for "
                            f"{WRITE_TIMEOUT:.0f} s")
                return
        if error is not None:
            self._close(ms.close_code(error[0]), f"{error[0]}: {error[1]}")
        else:
            self._close(1001, "media plane closed the socket")

    def _fail(self, code: int, message: str) -> None:
        with contextlib.suppress(WebSocketClosedError):
            self.write_message(ms.control_message("error", code=code, message=message))
        self._close(ms.close_code(code), f"{code}: {message}")

    def _close(self, code: int, reason: str) -> None:
        # Close reasons are at most 123 bytes (RFC 6455 5.5).
        self.close(code, reason.encode()[:123].decode(errors="ignore"))

    def on_close(self) -> None:
        if self._hello_timer is not None:
            self._hello_timer.cancel()
        if self._relay is not None:
            self._relay.close()
            self._relay = None
        if self._pump is not None and self._pump is not asyncio.current_task():
            self._pump.cancel()


handlers = [(r"/video/media/?", MediaSocketHandler)]
