"""Network and process faults: a signaling socket that dies without a goodbye, a
participant gone past the session timeout, a server restarted under its rooms.

(Python participants reconnecting with ``sync`` keeping their SID, and a media
worker killed under a recording, are tests/client/test_client_e2e.py and
tests/test_recordings.py; what this suite adds is listed in docs/reliability.md.)
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from websockets.sync.client import connect

from ..client.participants import room_name, token
from ..server_process import ServerProcess
from ..test_status_callbacks import Receiver
from .conftest import tracebacks, video_config

pytestmark = [
    pytest.mark.timeout(180),
    pytest.mark.filterwarnings("ignore:connect\\(\\) must be used:DeprecationWarning"),
]

FIXTURES = Path(__file__).resolve().parent.parent / "signaling" / "fixtures"
SESSION_TIMEOUT = 2.0


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    got = Receiver()
    yield got
    got.close()


def rest(server: ServerProcess) -> tuple[str, tuple[str, str]]:
    creds = server.credentials()
    return server.url + "video/v1/", (creds["api_key_sid"], creds["api_key_secret"])


def browser_hello(jwt: str, room: str) -> str:
    frames = json.loads((FIXTURES / "capture_join.json").read_text())["frames"]
    hello: dict[str, Any] = next(
        f["frame"] for f in frames if f["dir"] == "in" and f["frame"]["type"] == "hello")
    hello["id"] = str(uuid.uuid4())
    hello["body"]["token"] = jwt
    hello["body"]["name"] = room
    return json.dumps(hello)


def test_a_participant_whose_socket_dies_is_reconnecting_then_removed_after_the_timeout(
    tmp_path: Path, receiver: Receiver
) -> None:
    server = ServerProcess(tmp_path / "server", video_config=video_config(
        tmp_path, session_timeout=SESSION_TIMEOUT)).start()
    try:
        base, auth = rest(server)
        callback = receiver.url("ok")
        name = room_name()
        requests.post(base + "Rooms", data={"UniqueName": name, "StatusCallback": callback},
                      auth=auth, timeout=10).raise_for_status()
        url = server.url.replace("http://", "ws://") + "video/signaling"
        ws = connect(url, open_timeout=10, compression=None)
        ws.send(browser_hello(token(server, "dora"), name))
        while True:
            frame = json.loads(ws.recv(timeout=20))
            if frame["type"] == "msg" and frame["body"]["type"] == "connected":
                sid = frame["body"]["participant"]["sid"]
                break
        # the client dies: a TCP reset (linger 0), no close frame, no RSP disconnect
        ws.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        ws.socket.close()
        lost = time.monotonic()

        def status() -> str:
            return str(requests.get(f"{base}Rooms/{name}/Participants/{sid}", auth=auth,
                                    timeout=10).json()["status"])

        deadline = time.monotonic() + 10
        while status() == "connected" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert status() == "reconnecting"
        while status() == "reconnecting" and time.monotonic() < deadline + SESSION_TIMEOUT:
            time.sleep(0.05)
        gone = time.monotonic() - lost
        record = requests.get(f"{base}Rooms/{name}/Participants/{sid}", auth=auth,
                              timeout=10).json()
        assert record["status"] == "disconnected" and record["end_time"] is not None
        assert gone >= SESSION_TIMEOUT - 0.5  # kept for its session timeout, not dropped
        got = receiver.wait_for_event(callback, "participant-disconnected")
        events = [(r.event, r.params.get("ParticipantSid")) for r in got]
        assert ("participant-connected", sid) in events
        assert ("participant-disconnected", sid) in events
        print(json.dumps({"session_timeout_removal": {"timeout_s": SESSION_TIMEOUT,
                                                      "removed_after_s": round(gone, 2)}}))
        assert tracebacks(server) == []
    finally:
        server.stop()


def test_status_callback_sequence_numbers_continue_across_a_server_restart(
    tmp_path: Path, receiver: Receiver
) -> None:
    server = ServerProcess(tmp_path / "server", video_config=video_config(tmp_path),
                           driver=True).start()
    try:
        base, auth = rest(server)
        callback = receiver.url("ok")
        room = requests.post(base + "Rooms", data={"UniqueName": room_name(),
                                                   "StatusCallback": callback},
                             auth=auth, timeout=10).json()
        server.drive("participants", room=room["sid"], identity="before")
        receiver.wait_for(callback, lambda got: len(got) == 2)

        server.stop()
        server.start()
        base, auth = rest(server)  # a new port

        server.drive("participants", room=room["sid"], identity="after")
        requests.post(f"{base}Rooms/{room['sid']}", data={"Status": "completed"}, auth=auth,
                      timeout=10).raise_for_status()
        got = receiver.wait_for_event(callback, "room-ended")
        numbered = [(r.event, r.sequence_number) for r in got
                    if r.event in ("room-created", "participant-connected", "room-ended")]
        assert numbered[:3] == [("room-created", 0), ("participant-connected", 1),
                                ("participant-connected", 2)], numbered
        assert numbered[-1][0] == "room-ended"
        numbers = [r.sequence_number for r in got]
        assert len(set(numbers)) == len(numbers)  # never the same number twice
        assert numbers == sorted(numbers)
    finally:
        server.stop()


async def test_a_server_restart_under_a_call_ends_it_with_a_clear_error_and_keeps_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from jupyter_video._aiortc import use_host_addresses
    from jupyter_video.client import RoomState, connect

    from .. import server_process
    from ..client.participants import LOOPBACK, Recorder

    server = ServerProcess(tmp_path / "server", video_config=video_config(
        tmp_path, session_timeout=8.0)).start()
    use_host_addresses(LOOPBACK)
    try:
        name = room_name()
        room = await connect(token(server, "eve"), name, server.url, ice_host_addresses=LOOPBACK)
        events = Recorder(room)
        sid = room.local_participant.sid
        await asyncio.to_thread(server.stop, True)  # SIGKILL: no goodbye to anyone
        reconnecting = await events.wait("reconnecting", timeout=15)
        assert reconnecting.error is not None and reconnecting.error.code == 53001
        port = server.port
        monkeypatch.setattr(server_process, "free_port", lambda: port)  # the same address
        await asyncio.to_thread(server.start)
        started = time.monotonic()
        # the new server has no such session: 53001 at once, not a wait for the timeout
        ended = await events.wait("disconnected", timeout=20)
        assert ended.error is not None and ended.error.code == 53001, ended.error
        assert "connect to the room again" in str(ended.error)
        assert room.state is RoomState.DISCONNECTED
        print(json.dumps({"server_restart": {"ended_after_restart_s":
                                             round(time.monotonic() - started, 2)}}))
        base, auth = rest(server)
        record = requests.get(f"{base}Rooms/{name}/Participants/{sid}", auth=auth,
                              timeout=10).json()
        assert record["identity"] == "eve" and record["status"] == "disconnected"
    finally:
        use_host_addresses(None)
        server.stop()
