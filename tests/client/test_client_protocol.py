"""The signaling protocol's edge cases, against a server that follows each test's script:
hello retries, busy, errors before and after ``connected``, heartbeats and ``sync``,
and the active-speaker channel (docs/signaling.md sections 1, 9, 10, 11)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from aiortc import RTCSessionDescription

from jupyter_video.client import RoomState, connect
from jupyter_video.client import signaling as client_signaling
from jupyter_video.errors import ParticipantError, SignalingError
from jupyter_video.signaling import rsp, tcmp

from .participants import LOOPBACK, Recorder
from .scripted_server import ScriptedPeer, ScriptedServer

TOKEN = "not-checked-by-the-scripted-server"


async def join(server: ScriptedServer, **options: Any) -> Any:
    # ice_servers given: the scripted server answers a connect hello, not an ice request.
    options.setdefault("ice_servers", [])
    return await connect(TOKEN, "lab", server.url, ice_host_addresses=LOOPBACK, **options)


async def test_hello_is_sent_three_times_without_welcome_then_connect_fails_with_53000(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client_signaling, "WELCOME_TIMEOUT", 0.3)

    async def silent(peer: ScriptedPeer) -> None:
        for _ in range(3):
            await peer.frame_of("hello")

    async with ScriptedServer(silent) as server:
        with pytest.raises(SignalingError) as info:
            await join(server)
        assert info.value.code == 53000
        hellos = [f for f in server.peers[0].received if f["type"] == "hello"]
        assert len(hellos) == 3
        assert len({h["id"] for h in hellos}) == 3  # a new id each time
        assert all(h["body"] == hellos[0]["body"] for h in hellos)  # the same connect
    assert hellos[0]["body"]["type"] == "connect" and hellos[0]["version"] == 2


async def test_busy_without_retry_fails_with_53006() -> None:
    async def busy(peer: ScriptedPeer) -> None:
        await peer.frame_of("hello")
        await peer.send(tcmp.busy(-1))

    async with ScriptedServer(busy) as server:
        with pytest.raises(SignalingError) as info:
            await join(server)
    assert info.value.code == 53006


async def test_busy_with_retry_after_says_hello_again_and_joins() -> None:
    async def busy_once(peer: ScriptedPeer) -> None:
        await peer.frame_of("hello")
        await peer.send(tcmp.busy(100, cookie="come-back"))
        await peer.join()

    async with ScriptedServer(busy_once) as server:
        room = await join(server)
        assert room.state is RoomState.CONNECTED
        hellos = [f for f in server.peers[0].received if f["type"] == "hello"]
        assert hellos[1]["cookie"] == "come-back"
        await room.disconnect()


async def test_a_message_before_the_welcome_is_dropped() -> None:
    async def early_error(peer: ScriptedPeer) -> None:
        hello = await peer.frame_of("hello")
        await peer.msg(rsp.Error(53205, "before welcome").to_dict())
        await peer.send(tcmp.welcome(5000))
        body = hello["body"]
        await peer.msg(rsp.Connected(
            session=peer.session, sid="RM1", name="lab", participant=peer.participant,
            peer_connections=[await peer.answer(body)]).to_dict())

    async with ScriptedServer(early_error) as server:
        async with await join(server) as room:
            assert room.state is RoomState.CONNECTED and room.sid == "RM1"
        assert room.state is RoomState.DISCONNECTED


async def test_an_error_instead_of_connected_rejects_with_its_class_and_says_goodbye() -> None:
    async def refuse(peer: ScriptedPeer) -> None:
        await peer.frame_of("hello")
        await peer.send(tcmp.welcome(5000))
        await peer.msg(rsp.Error(53205, "duplicate identity").to_dict())

    async with ScriptedServer(refuse) as server:
        with pytest.raises(ParticipantError) as info:
            await join(server)
        assert info.value.code == 53205
        peer = server.peers[0]
        await asyncio.wait_for(peer.closed.wait(), 5)
    # capture_error.json: disconnect with a null session, bye, close 1000
    tail = [(f["type"], (f.get("body") or {}).get("type")) for f in peer.received[-2:]]
    assert tail == [("msg", "disconnect"), ("bye", None)]
    assert peer.received[-2]["body"]["session"] is None
    assert peer.close_code == 1000


async def test_an_error_after_connected_disconnects_the_room_with_that_error() -> None:
    async def displace(peer: ScriptedPeer) -> None:
        await peer.join()
        await asyncio.sleep(0.2)
        await peer.msg(rsp.Error(53205, "someone else joined as alice").to_dict())

    async with ScriptedServer(displace) as server:
        room = await join(server)
        events = Recorder(room)
        event = await events.wait("disconnected", timeout=5)
        assert isinstance(event.error, ParticipantError) and event.error.code == 53205
        assert room.state is RoomState.DISCONNECTED
        peer = server.peers[0]
        await asyncio.wait_for(peer.closed.wait(), 5)
        assert [f["type"] for f in peer.received[-2:]] == ["msg", "bye"]
        assert peer.received[-2]["body"] == {"session": peer.session, "type": "disconnect",
                                             "version": 2}


async def test_heartbeats_keep_time_and_a_silent_server_makes_the_room_sync_back() -> None:
    async def script(peer: ScriptedPeer) -> None:
        hello = await peer.frame_of("hello")
        if hello["body"]["type"] == "sync":  # the second socket
            await peer.send(tcmp.welcome(5000))
            await peer.msg(rsp.Synced(participants=[]).to_dict())
            return
        await peer.send(tcmp.welcome(400))
        await peer.msg(rsp.Connected(
            session=peer.session, sid="RM1", name="lab", participant=peer.participant,
            peer_connections=[await peer.answer(hello["body"])]).to_dict())
        # then say nothing: the client heartbeats every 200 ms and gives up after 1.2 s

    async with ScriptedServer(script) as server:
        start = time.monotonic()
        room = await join(server)
        events = Recorder(room)
        await events.wait("reconnecting", timeout=5)
        silent_for = time.monotonic() - start
        await events.wait("reconnected", timeout=5)
        first, second = server.peers[:2]
        assert first.close_code == 3001  # "Missed 3 heartbeat messages"
        assert 1.1 < silent_for < 3
        heartbeats = [f for f in first.received if f["type"] == "heartbeat"]
        assert 4 <= len(heartbeats) <= 7
        sync = second.received[0]["body"]
        assert sync["type"] == "sync" and sync["session"] == first.session
        assert sync["token"] == TOKEN and sync["peer_connections"][0]["description"]
        assert room.state is RoomState.CONNECTED
        await room.disconnect()


async def test_the_active_speaker_channel_reports_the_dominant_speaker() -> None:
    bob = rsp.RemoteParticipantState("PAbob", "bob", revision=1)
    said: list[Any] = []

    async def script(peer: ScriptedPeer) -> None:
        body = await peer.join()
        assert body["media_signaling"] == {
            "active_speaker": {"transports": [{"type": "data-channel"}]}}
        channel = peer.pc.createDataChannel("active_speaker-1")
        channel.on("message", lambda message: said.append(json.loads(message)))
        await peer.pc.setLocalDescription(await peer.pc.createOffer())
        pc_id = body["peer_connections"][0]["id"]
        await peer.msg(rsp.ServerUpdate(
            participants=[bob], media_signaling={"active_speaker": "active_speaker-1"},
            peer_connections=[rsp.PeerConnectionState(pc_id, description=rsp.Description(
                "offer", 2, peer.pc.localDescription.sdp))]).to_dict())
        answer = await peer.frame_of("msg", "update")
        description = answer["body"]["peer_connections"][0]["description"]
        assert (description["type"], description["revision"]) == ("answer", 2)
        await peer.pc.setRemoteDescription(RTCSessionDescription(description["sdp"], "answer"))
        while not said:
            await asyncio.sleep(0.05)
        channel.send(json.dumps({"type": "active_speaker", "participant": "PAbob"}))

    async with ScriptedServer(script) as server:
        room = await join(server, dominant_speaker=True)
        events = Recorder(room)
        event = await events.wait("dominant_speaker_changed", timeout=10)
        assert event.participant is room.participants["PAbob"] is room.dominant_speaker
        assert said[0] == {"type": "ready"}
        assert not server.failures
        await room.disconnect()
