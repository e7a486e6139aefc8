"""A signaling server that follows a test's script, for the protocol's edge cases.

The real server answers what it should; these tests need one that answers what
it should not, or late (no welcome, busy, errors, silence, MSP grants). Each
connection runs ``script(peer)``; ``peer`` reads client frames and sends server
frames built with ``jupyter_video.signaling``, and answers offers with a real
aiortc peer connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from jupyter_video.signaling import rsp, tcmp


class ScriptedPeer:
    """One client connection as the script sees it."""

    def __init__(self, ws: ServerConnection) -> None:
        self.ws = ws
        self.received: list[dict[str, Any]] = []  # every client frame
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.session = str(uuid.uuid4())
        self.participant = rsp.ParticipantRef("PA" + uuid.uuid4().hex, "alice")
        self.close_code: int | None = None
        self.closed = asyncio.Event()  # the client went away

    async def frame(self, timeout: float = 10.0) -> dict[str, Any]:
        """The next frame from the client."""
        frame: dict[str, Any] = json.loads(await asyncio.wait_for(self.ws.recv(), timeout))
        self.received.append(frame)
        return frame

    async def frame_of(self, kind: str, body_type: str | None = None,
                       timeout: float = 10.0) -> dict[str, Any]:
        """The next frame of ``kind`` (and RSP ``body_type``), skipping others."""
        while True:
            frame = await self.frame(timeout)
            if frame["type"] == kind and (body_type is None
                                          or (frame.get("body") or {}).get("type") == body_type):
                return frame

    async def send(self, text: str) -> None:
        await self.ws.send(text)

    async def msg(self, body: dict[str, Any]) -> None:
        await self.send(tcmp.msg(body))

    async def answer(self, body: dict[str, Any]) -> rsp.PeerConnectionState:
        """Answer the offer in a connect/sync/update body, with its revision."""
        [pc] = body["peer_connections"]
        description = pc["description"]
        await self.pc.setRemoteDescription(RTCSessionDescription(description["sdp"], "offer"))
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        return rsp.PeerConnectionState(pc["id"], description=rsp.Description(
            "answer", description["revision"], self.pc.localDescription.sdp))

    async def join(self, negotiated_timeout: int = 5000,
                   **state: Any) -> dict[str, Any]:
        """Welcome the hello and answer its connect with ``connected``; the hello's body."""
        hello = await self.frame_of("hello")
        await self.send(tcmp.welcome(negotiated_timeout))
        body = hello["body"]
        connected = rsp.Connected(
            session=self.session, sid="RM" + uuid.uuid4().hex, name=body.get("name") or "room",
            participant=self.participant, peer_connections=[await self.answer(body)],
            options=rsp.RoomOptions(session_timeout=state.pop("session_timeout", 30)),
            **state)
        await self.msg(connected.to_dict())
        return body

    async def close(self) -> None:
        await self.pc.close()


Script = Callable[[ScriptedPeer], Awaitable[None]]


class ScriptedServer:
    """``async with ScriptedServer(script) as server``: ``server.url`` for ``connect``."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.peers: list[ScriptedPeer] = []
        self.failures: list[BaseException] = []
        self._server: Server | None = None
        self.url = ""

    async def __aenter__(self) -> ScriptedServer:
        self._server = await serve(self._handle, "127.0.0.1", 0)
        port = next(iter(self._server.sockets)).getsockname()[1]
        self.url = f"ws://127.0.0.1:{port}/video/signaling"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()
        for peer in self.peers:
            await peer.close()

    async def _handle(self, ws: ServerConnection) -> None:
        peer = ScriptedPeer(ws)
        self.peers.append(peer)
        try:
            await self.script(peer)
            with contextlib.suppress(ConnectionClosed):
                # keep reading (and recording) until the client goes
                while True:
                    await peer.frame(timeout=60)
        except (ConnectionClosed, asyncio.TimeoutError):
            pass
        except Exception as exc:  # reported by the test, not lost in the server
            self.failures.append(exc)
        peer.close_code = ws.close_code
        peer.closed.set()
