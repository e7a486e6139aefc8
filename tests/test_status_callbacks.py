"""Rooms Status Callbacks as Twilio sends them, to a real receiver, from a real server.

The receiver is a small HTTP server in this test process (127.0.0.1); what it
answers depends on the first segment of the callback URL's path: ``ok`` (200),
``fail`` (500), ``hang-first`` (the first request hangs, later ones get 200)
or ``hang`` (every request hangs until the test releases them). Every request
it gets is checked with Twilio's own ``RequestValidator``.

This module is also a server extension (loaded by the servers it starts) that
adds Python status listeners, so that what they got can be compared with what
the receiver got: see ``_load_jupyter_server_extension``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import numpy as np
import pytest
from twilio.request_validator import RequestValidator

from .conftest import make_twilio_client
from .server_process import ServerProcess

pytestmark = pytest.mark.timeout(60)

LOOPBACK = ["127.0.0.1"]
WAIT = 10.0  # seconds any one expected callback may take
CALLBACKS = {  # fast retries, so that giving up takes well under a second
    "status_callback_attempts": 3,
    "status_callback_retry_delay": 0.2,
    "status_callback_timeout": 1.0,
}
LISTENER_FILES = ("status-listener.jsonl", "status-listener-async.jsonl")
EXTENSIONS = {"tests.registry_driver": True, "tests.test_status_callbacks": True}


# --------------------------------------------------------------- the receiver


@dataclass(frozen=True)
class Received:
    """One request the receiver got."""

    method: str
    url: str  # as requested, query string included
    path: str
    body_params: dict[str, str]  # what a POST carried in its form body
    params: dict[str, str]  # the event's parameters, from the body or the query string
    signature: str
    idempotency_token: str
    content_type: str
    at: float  # time.monotonic()

    @property
    def event(self) -> str:
        return self.params["StatusCallbackEvent"]

    @property
    def sequence_number(self) -> int:
        return int(self.params["SequenceNumber"])


class Receiver:
    """A status callback receiver on 127.0.0.1, in threads of its own."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self._changed = threading.Condition()
        self._released = threading.Event()
        self._hung_paths: set[str] = set()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                receiver._handle(self)

            def do_POST(self) -> None:
                receiver._handle(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def url(self, behaviour: str) -> str:
        """A fresh callback URL answered as ``behaviour`` says (ok, fail, hang-first, hang)."""
        port = self._server.server_address[1]
        return f"http://127.0.0.1:{port}/{behaviour}/{uuid.uuid4().hex[:8]}"

    def to(self, url: str) -> list[Received]:
        """The requests that came to ``url`` (the callback URL, without any query string)."""
        path = urlsplit(url).path
        with self._changed:
            return [r for r in self.requests if r.path == path]

    def wait_for(
        self, url: str, condition: Callable[[list[Received]], bool], timeout: float = WAIT
    ) -> list[Received]:
        """The requests to ``url`` once ``condition`` holds for them (AssertionError if never)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                got = self.to(url)
                if condition(got):
                    return got
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    events = [(r.event, r.params["SequenceNumber"]) for r in got]
                    raise AssertionError(f"no such callbacks to {url} in {timeout}s: {events}")
                self._changed.wait(remaining)

    def wait_for_event(self, url: str, event: str, timeout: float = WAIT) -> list[Received]:
        return self.wait_for(url, lambda got: any(r.event == event for r in got), timeout)

    def release(self) -> None:
        """Let every hanging request (and every later one) answer."""
        self._released.set()

    def close(self) -> None:
        self.release()
        self._server.shutdown()
        self._server.server_close()

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length).decode() if length else ""
        split = urlsplit(handler.path)
        body_params = dict(parse_qsl(body, keep_blank_values=True))
        received = Received(
            method=handler.command,
            url=f"http://127.0.0.1:{self._server.server_address[1]}{handler.path}",
            path=split.path,
            body_params=body_params,
            params=body_params or dict(parse_qsl(split.query, keep_blank_values=True)),
            signature=handler.headers.get("X-Twilio-Signature", ""),
            idempotency_token=handler.headers.get("I-Twilio-Idempotency-Token", ""),
            content_type=handler.headers.get("Content-Type", ""),
            at=time.monotonic(),
        )
        with self._changed:
            self.requests.append(received)
            self._changed.notify_all()
        status = self._answer(split.path)
        with contextlib.suppress(OSError):  # the server may have timed out and gone
            handler.send_response(status)
            handler.send_header("Content-Length", "0")
            handler.end_headers()

    def _answer(self, path: str) -> int:
        behaviour = path.split("/")[1]
        if behaviour == "fail":
            return 500
        if behaviour == "hang" or (behaviour == "hang-first" and path not in self._hung_paths):
            self._hung_paths.add(path)
            self._released.wait(timeout=5)  # bounded: a test never hangs for good
        return 200


def assert_signed_by(auth_token: str, received: list[Received]) -> None:
    """Twilio's RequestValidator accepts every request, and not with another token."""
    validator = RequestValidator(auth_token)
    impostor = RequestValidator("0" * 32)
    for request in received:
        assert validator.validate(request.url, request.body_params, request.signature), request
        assert not impostor.validate(request.url, request.body_params, request.signature)


def parse_timestamp(value: str) -> datetime:
    assert value.endswith("Z"), value
    return datetime.fromisoformat(value[:-1] + "+00:00")


# --------------------------------------------------- Python listeners (in the server)


def _load_jupyter_server_extension(serverapp: Any) -> None:
    """In the server: add a sync, an async and a failing status listener.

    The first two append each event's parameters to a JSON-lines file in the
    server's data directory, where the tests read them.
    """
    from tornado.ioloop import IOLoop

    data = Path(os.environ["JUPYTER_DATA_DIR"])

    def write(name: str, params: dict[str, str]) -> None:
        with open(data / name, "a", encoding="utf-8") as file:
            file.write(json.dumps(params) + "\n")

    def sync_listener(params: dict[str, str]) -> None:
        write(LISTENER_FILES[0], params)

    async def async_listener(params: dict[str, str]) -> None:
        await asyncio.sleep(0)
        write(LISTENER_FILES[1], params)

    def failing_listener(params: dict[str, str]) -> None:
        raise RuntimeError("a status listener's bug")

    def register() -> None:
        app = serverapp.web_app.settings["jupyter_video"].app
        app.on_status_callback(sync_listener)
        app.status_listeners.append(async_listener)
        app.on_status_callback(failing_listener)

    if "jupyter_video" in serverapp.web_app.settings:
        register()
    else:  # jupyter_video is not loaded yet
        IOLoop.current().add_callback(register)


def listened(server: ServerProcess, room_sid: str) -> list[list[dict[str, str]]]:
    """What the sync and the async Python listener got for ``room_sid``."""
    out = []
    for name in LISTENER_FILES:
        path = server.root / "data" / name
        lines = path.read_text().splitlines() if path.exists() else []
        out.append([p for p in map(json.loads, lines) if p["RoomSid"] == room_sid])
    return out


# ------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    got = Receiver()
    yield got
    got.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    process = ServerProcess(
        tmp_path_factory.mktemp("callbacks"),
        video_config={
            **CALLBACKS,
            "ice_host_addresses": LOOPBACK,
            "media_workers": 1,
            # A client's disconnect can leave it reconnecting until this runs out
            # (see tests/client/test_client_leave_e2e.py).
            "session_timeout": 2.0,
        },
        driver=True,
        server_config={"jpserver_extensions": EXTENSIONS},
    ).start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> Any:
    return make_twilio_client(server)


@pytest.fixture(scope="module")
def auth_token(server: ServerProcess) -> str:
    return server.credentials()["auth_token"]


def new_room(client: Any, url: str, method: str = "POST") -> Any:
    return client.video.v1.rooms.create(
        unique_name=f"callbacks-{uuid.uuid4().hex[:8]}",
        status_callback=url,
        status_callback_method=method,
    )


def join(server: ServerProcess, room: Any, identity: str) -> str:
    return str(server.drive("participants", room=room.sid, identity=identity)["sid"])


def publish(server: ServerProcess, participant: str, name: str, kind: str) -> str:
    body = {"participant_sid": participant, "name": name, "kind": kind}
    return str(server.drive("tracks", **body)["sid"])


def wait_for_log(server: ServerProcess, text: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while text not in server.log_text():
        if time.monotonic() > deadline:
            raise AssertionError(f"{text!r} not in the server log:\n{server.log_text()[-3000:]}")
        time.sleep(0.05)


# ---------------------------------------------------------------------- tests


@pytest.mark.parametrize("method", ["POST", "GET"])
def test_every_callback_is_signed_so_that_twilios_request_validator_accepts_it(
    client: Any, server: ServerProcess, receiver: Receiver, auth_token: str, method: str
) -> None:
    url = receiver.url("ok")
    room = new_room(client, url, method)
    alice = join(server, room, "alice & bob?=")  # characters that need encoding
    publish(server, alice, "caméra 1", "video")
    client.video.v1.rooms(room.sid).update(status="completed")
    got = receiver.wait_for_event(url, "room-ended")
    assert [r.event for r in got] == [
        "room-created", "participant-connected", "track-added", "track-removed",
        "participant-disconnected", "room-ended",
    ]  # fmt: skip
    assert {r.method for r in got} == {method}
    assert_signed_by(auth_token, got)
    if method == "POST":
        assert {r.content_type for r in got} == {"application/x-www-form-urlencoded"}
    else:
        assert all(r.body_params == {} and "?" in r.url for r in got)
    assert got[1].params["ParticipantIdentity"] == "alice & bob?="
    assert got[2].params["TrackName"] == "caméra 1"


def test_a_room_life_is_reported_in_order_with_twilios_parameters(
    client: Any, server: ServerProcess, receiver: Receiver, auth_token: str
) -> None:
    url = receiver.url("ok")
    started = datetime.now(timezone.utc)
    room = new_room(client, url)
    alice = join(server, room, "alice")
    camera = publish(server, alice, "camera", "video")
    mic = publish(server, alice, "mic", "audio")
    bob = join(server, room, "bob")
    chat = publish(server, bob, "chat", "data")
    time.sleep(1.1)  # so that durations are at least a second
    client.video.v1.rooms(room.sid).participants(alice).update(status="disconnected")
    client.video.v1.rooms(room.sid).update(status="completed")

    got = receiver.wait_for_event(url, "room-ended")
    assert_signed_by(auth_token, got)
    params = [r.params for r in got]
    assert [p["StatusCallbackEvent"] for p in params] == [
        "room-created",
        "participant-connected", "track-added", "track-added",
        "participant-connected", "track-added",
        "track-removed", "track-removed", "participant-disconnected",  # alice leaves
        "track-removed", "participant-disconnected",  # the room completes
        "room-ended",
    ]  # fmt: skip
    assert [p["SequenceNumber"] for p in params] == [str(n) for n in range(12)]
    account_sid = server.credentials()["account_sid"]
    for p in params:
        assert p["AccountSid"] == account_sid
        assert (p["RoomSid"], p["RoomName"], p["RoomType"]) == (
            room.sid, room.unique_name, "group"
        )  # fmt: skip
    assert [p["RoomStatus"] for p in params[:9]] == ["in-progress"] * 9
    assert params[-1]["RoomStatus"] == "completed"
    times = [parse_timestamp(p["Timestamp"]) for p in params]
    assert times == sorted(times)
    assert started - timedelta(seconds=1) <= times[0] and times[-1] <= datetime.now(timezone.utc)

    assert "ParticipantSid" not in params[0] and "RoomDuration" not in params[0]
    who = [(p.get("ParticipantSid"), p.get("ParticipantIdentity")) for p in params[1:11]]
    assert (
        who
        == [(alice, "alice")] * 3 + [(bob, "bob")] * 2 + [(alice, "alice")] * 3 + [(bob, "bob")] * 2
    )
    assert params[1]["ParticipantStatus"] == params[4]["ParticipantStatus"] == "connected"
    assert params[8]["ParticipantStatus"] == params[10]["ParticipantStatus"] == "disconnected"
    tracks = [(p["TrackSid"], p["TrackKind"], p["TrackName"]) for p in params if "TrackSid" in p]
    assert tracks[:3] == [
        (camera, "video", "camera"),
        (mic, "audio", "mic"),
        (chat, "data", "chat"),
    ]
    assert sorted(tracks[3:5]) == sorted(tracks[:2]) and tracks[5] == tracks[2]
    assert all("TrackSid" not in p for p in params if not p["StatusCallbackEvent"].startswith("t"))

    alice_rest = client.video.v1.rooms(room.sid).participants(alice).fetch()
    bob_rest = client.video.v1.rooms(room.sid).participants(bob).fetch()
    room_rest = client.video.v1.rooms(room.sid).fetch()
    assert params[8]["ParticipantDuration"] == str(alice_rest.duration) and alice_rest.duration >= 1
    assert params[10]["ParticipantDuration"] == str(bob_rest.duration)
    assert params[11]["RoomDuration"] == str(room_rest.duration) and room_rest.duration >= 1
    assert all("ParticipantDuration" not in p for i, p in enumerate(params) if i not in (8, 10))

    # Python listeners in the server got the same parameters, in the same order,
    # and one that raises broke nothing.
    deadline = time.monotonic() + WAIT
    while listened(server, room.sid) != [params, params] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert listened(server, room.sid) == [params, params]
    assert "a status listener's bug" in server.log_text()


def test_a_failing_receiver_is_retried_then_given_up_on_while_rooms_keep_working(
    client: Any, server: ServerProcess, receiver: Receiver, auth_token: str
) -> None:
    failing = receiver.url("fail")
    working = receiver.url("ok")
    room = new_room(client, failing)
    join(server, room, "alice")
    attempts = CALLBACKS["status_callback_attempts"]
    got = receiver.wait_for(failing, lambda got: len(got) == 2 * attempts)
    # Each event is tried ``attempts`` times, identically, and then the next one.
    assert [(r.event, r.sequence_number) for r in got] == [("room-created", 0)] * attempts + [
        ("participant-connected", 1)
    ] * attempts
    assert len({r.idempotency_token for r in got[:attempts]}) == 1
    assert len({r.params["Timestamp"] for r in got[:attempts]}) == 1
    gaps = [later.at - earlier.at for earlier, later in itertools.pairwise(got[:attempts])]
    assert gaps[1] > gaps[0] >= CALLBACKS["status_callback_retry_delay"] * 0.9  # backing off
    assert_signed_by(auth_token, got)
    wait_for_log(server, f"gave up on status callback room-created #0 of room {room.sid}")
    wait_for_log(server, f"gave up on status callback participant-connected #1 of room {room.sid}")

    # The room and the server kept working all along.
    assert client.video.v1.rooms(room.sid).fetch().status == "in-progress"
    other = new_room(client, working)
    join(server, other, "bob")
    assert [r.event for r in receiver.wait_for(working, lambda got: len(got) == 2)] == [
        "room-created", "participant-connected",
    ]  # fmt: skip
    assert len(receiver.to(failing)) == 2 * attempts  # nothing more once given up


def test_a_receiver_that_hangs_is_timed_out_and_retried(
    client: Any, server: ServerProcess, receiver: Receiver, auth_token: str
) -> None:
    url = receiver.url("hang-first")
    room = new_room(client, url)
    join(server, room, "alice")
    got = receiver.wait_for(url, lambda got: len(got) == 3)
    assert [(r.event, r.sequence_number) for r in got] == [
        ("room-created", 0), ("room-created", 0), ("participant-connected", 1),
    ]  # fmt: skip
    timeout, delay = CALLBACKS["status_callback_timeout"], CALLBACKS["status_callback_retry_delay"]
    assert got[1].at - got[0].at >= timeout + delay - 0.1
    assert got[0].idempotency_token == got[1].idempotency_token
    assert_signed_by(auth_token, got)
    wait_for_log(server, f"status callback room-created #0 of room {room.sid} to {url} failed")
    assert f"gave up on status callback room-created #0 of room {room.sid}" not in (
        server.log_text()
    )


def test_a_dead_receiver_cannot_grow_a_rooms_queue_beyond_its_bound(
    tmp_path: Path,
) -> None:
    receiver = Receiver()
    server = ServerProcess(
        tmp_path / "server",
        video_config={
            "status_callback_queue_size": 3,
            "status_callback_attempts": 1,
            "status_callback_timeout": 10.0,
        },
        driver=True,
    ).start()
    try:
        client = make_twilio_client(server)
        url = receiver.url("hang")
        room = new_room(client, url)
        receiver.wait_for(url, lambda got: len(got) == 1)  # room-created hangs in flight
        for n in range(10):  # sequence numbers 1..10: only the last 3 can wait
            join(server, room, f"guest-{n}")
        assert client.video.v1.rooms(room.sid).fetch().status == "in-progress"
        receiver.release()
        got = receiver.wait_for(url, lambda got: len(got) == 4)
        assert [r.sequence_number for r in got] == [0, 8, 9, 10]
        assert [r.params["ParticipantIdentity"] for r in got[1:]] == [
            "guest-7", "guest-8", "guest-9",
        ]  # fmt: skip
        wait_for_log(server, f"dropped 7 status callbacks of room {room.sid}")
    finally:
        server.stop()
        receiver.close()


async def test_a_real_participant_joining_and_leaving_is_reported(
    client: Any, server: ServerProcess, receiver: Receiver, auth_token: str
) -> None:
    from jupyter_video._aiortc import use_host_addresses
    from jupyter_video.client import LocalAudioTrack, connect

    from .client.participants import token

    url = receiver.url("ok")
    room = await asyncio.to_thread(new_room, client, url)
    silence = LocalAudioTrack.from_array(np.zeros(48000 * 20, np.int16), name="voice")
    try:
        alice = await connect(
            token(server, "alice"), room.unique_name, server.url,
            tracks=[silence], ice_host_addresses=LOOPBACK,
        )  # fmt: skip
        try:
            await asyncio.to_thread(receiver.wait_for_event, url, "track-added")
            silence.disable()
            await asyncio.to_thread(receiver.wait_for_event, url, "track-disabled")
            silence.enable()
            await asyncio.to_thread(receiver.wait_for_event, url, "track-enabled")
        finally:
            await alice.disconnect()
    finally:
        use_host_addresses(None)
    await asyncio.to_thread(receiver.wait_for_event, url, "participant-disconnected")
    await asyncio.to_thread(client.video.v1.rooms(room.sid).update, status="completed")
    got = await asyncio.to_thread(receiver.wait_for_event, url, "room-ended")

    assert [r.event for r in got] == [
        "room-created", "participant-connected", "track-added", "track-disabled",
        "track-enabled", "track-removed", "participant-disconnected", "room-ended",
    ]  # fmt: skip
    assert [r.sequence_number for r in got] == list(range(8))
    assert_signed_by(auth_token, got)
    participant = {r.params["ParticipantSid"] for r in got[1:7]}
    assert participant == {alice.local_participant.sid}
    assert {r.params["ParticipantIdentity"] for r in got[1:7]} == {"alice"}
    assert {(r.params["TrackKind"], r.params["TrackName"]) for r in got[2:6]} == {
        ("audio", "voice")
    }
    assert got[6].params["ParticipantStatus"] == "disconnected"
    assert int(got[6].params["ParticipantDuration"]) >= 0


async def test_an_event_after_room_ended_numbers_on_in_its_room(receiver: Receiver) -> None:
    from jupyter_video.server.callbacks import Delivery, StatusCallbacks
    from jupyter_video.server.registry import RoomRegistry
    from jupyter_video.store import open_store

    auth_token = "a" * 32
    callbacks = StatusCallbacks(auth_token, Delivery(attempts=1, timeout=2.0))
    registry = RoomRegistry(open_store("memory://"), "AC" + "0" * 32)
    registry.listeners.append(callbacks.on_room_event)
    callbacks.start()
    try:
        url = receiver.url("ok")
        room = registry.create_room("late", status_callback=url, status_callback_method="GET")
        registry.end_room(room)
        await asyncio.to_thread(receiver.wait_for_event, url, "room-ended")
        await asyncio.sleep(0.1)  # the room's queue is done with
        sent = callbacks.send(room, "recording-completed", {"RecordingSid": "RT" + "1" * 32})
        got = await asyncio.to_thread(receiver.wait_for_event, url, "recording-completed")
    finally:
        await callbacks.close()
    assert [(r.event, r.sequence_number) for r in got] == [
        ("room-created", 0), ("room-ended", 1), ("recording-completed", 2),
    ]  # fmt: skip
    assert got[2].params == sent and sent["RecordingSid"] == "RT" + "1" * 32
    assert_signed_by(auth_token, got)


def test_the_server_wide_status_callback_serves_rooms_created_without_one(
    receiver: Receiver, tmp_path: Any
) -> None:
    url = receiver.url("ok")
    process = ServerProcess(
        tmp_path / "default-callback",
        video_config={"status_callback": url, "status_callback_method": "GET"},
    ).start()
    try:
        client = make_twilio_client(process)
        room = client.video.v1.rooms.create(unique_name="no-callback-given")
        assert (room.status_callback, room.status_callback_method) == (url, "GET")
        [created] = receiver.wait_for_event(url, "room-created")
        assert created.method == "GET" and created.params["RoomSid"] == room.sid
        assert_signed_by(process.credentials()["auth_token"], [created])
        own = receiver.url("ok")
        other = client.video.v1.rooms.create(unique_name="own-callback", status_callback=own)
        assert other.status_callback == own
    finally:
        process.stop()
