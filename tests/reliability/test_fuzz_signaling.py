"""Signaling fuzzing: 10,000 mutated TCMP frames and RSP bodies against a live server.

Seeds are the frames twilio-video.js 2.36 sent from Chromium
(tests/signaling/fixtures/capture_*.json: hello with connect and a real offer,
updates with ICE, offers and answers, track changes, sync, disconnect, heartbeat,
bye) with a valid token, mutated by Hypothesis: fields replaced, removed, added
and retyped, strings grown, frames truncated, nested 100,000 deep, sent as binary.
After each fuzzed frame an ``ice`` request (a valid RSP message the server always
answers while the connection is good) tells whether the connection survived: the
answer is ``iced``, or Twilio's error (never 53000, "server error") and a close.
Meanwhile Alice and Bob exchange video and data in a room of their own, and
still do afterwards; the server logs no traceback.
"""

from __future__ import annotations

import copy
import json
import os
import queue
import socket
import threading
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from jupyter_video.errors import CODES

from ..client.participants import token
from ..server_process import ServerProcess
from .conftest import tracebacks
from .live_pair import LivePair

pytestmark = [
    pytest.mark.timeout(600),
    # the fuzzer opens and drops a socket per refusal, outside a with block
    pytest.mark.filterwarnings("ignore:connect\\(\\) must be used:DeprecationWarning"),
    # the sender threads' websockets draw masks from random while Hypothesis generates
    pytest.mark.filterwarnings("ignore:Do not use the `random` module"),
]

# fuzzed frames per run (more with $FUZZ_SIGNALING_MESSAGES, for a longer local run)
MESSAGES = int(os.environ.get("FUZZ_SIGNALING_MESSAGES", "10000"))
PER_EXAMPLE = 10
SENDERS = 8
FIXTURES = Path(__file__).resolve().parent.parent / "signaling" / "fixtures"
FUZZ_ROOM = "fuzz-room"  # fuzzed connects join this room, not the pair's
PROBE_TIMEOUT = 1.0  # s: no answer means the fuzzed frame made the server stop answering


def captured_frames() -> list[dict[str, Any]]:
    """Every frame twilio-video.js sent in the captures (client -> server)."""
    frames = []
    for name in ("capture_join.json", "capture_reconnect.json", "capture_media_signaling.json"):
        for entry in json.loads((FIXTURES / name).read_text())["frames"]:
            if entry["dir"] == "in":
                frames.append(entry["frame"])
    return frames


SEEDS = captured_frames()
HELLO = {"type": "hello", "id": "fuzz", "timeout": 5000, "version": 2}

json_leaf = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False),
    st.text(max_size=30), st.sampled_from(["", "hello", "msg", "connect", "update", "sync",
                                           "disconnect", "ice", "offer", "answer", "close",
                                           "create-offer", "rollback", "audio", "video", "data"]),
)
json_value = st.recursive(
    json_leaf,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.text(max_size=10), inner, max_size=4)),
    max_leaves=12,
)


def paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside a JSON document (the root is ())."""
    found = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            found += paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node[:8]):
            found += paths(value, (*prefix, index))
    return found


def _set(document: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    parent = document
    for step in path[:-1]:
        parent = parent[step]
    parent[path[-1]] = value
    return document


def _delete(document: Any, path: tuple[Any, ...]) -> Any:
    if not path:
        return document
    parent = document
    for step in path[:-1]:
        parent = parent[step]
    del parent[path[-1]]
    return document


@st.composite
def mutated_frame(draw: st.DrawFn, tokens: dict[str, str]) -> str | bytes:
    """One frame: a captured one with a valid token, mutated a few times."""
    frame = copy.deepcopy(draw(st.sampled_from(SEEDS)))
    body = frame.get("body")
    if isinstance(body, dict) and "token" in body:
        body["token"] = tokens["valid"]
        body["name"] = FUZZ_ROOM
    for _ in range(draw(st.integers(0, 4))):
        spots = paths(frame)
        spot = draw(st.sampled_from(spots))
        how = draw(st.sampled_from(["replace", "replace", "delete", "add", "grow", "token"]))
        if how == "replace":
            frame = _set(frame, spot, draw(json_value))
        elif how == "delete":
            frame = _delete(frame, spot)
        elif how == "add":
            target = _get(frame, spot)
            if isinstance(target, dict):
                target[draw(st.text(max_size=12))] = draw(json_value)
            elif isinstance(target, list):
                target.append(draw(json_value))
        elif how == "grow":
            target = _get(frame, spot)
            # up to ~64 KiB: large enough to matter, small enough to send 10,000 of
            if isinstance(target, str):
                times = draw(st.integers(2, 2000))
                frame = _set(frame, spot, target * min(times, 65536 // (len(target) + 1) + 1))
            elif isinstance(target, list) and target:
                frame = _set(frame, spot, target * draw(st.integers(2, 50)))
        else:
            frame = _set(frame, spot, draw(st.sampled_from(list(tokens.values()))))
    text = json.dumps(frame)
    encoding = draw(st.sampled_from(["json"] * 12 + ["truncate", "binary", "garbage", "deep",
                                                     "huge", "bytes"]))
    if encoding == "truncate":
        return text[: draw(st.integers(0, max(0, len(text) - 1)))]
    if encoding == "binary":
        return text.encode()
    if encoding == "garbage":
        return draw(st.text(max_size=100))
    if encoding == "deep":
        depth = draw(st.sampled_from([1000, 100_000]))
        return '{"type": "msg", "body": ' + "[" * depth + "]" * depth + "}"
    if encoding == "huge":
        # over the server's limit (1 MiB: 53004), and over what it reads at all (2 MiB: closed)
        size = draw(st.sampled_from([(1 << 20) + 1, 3 << 20]))
        return json.dumps({"type": "msg", "body": {"type": "update", "x": "x" * size}})
    if encoding == "bytes":
        return draw(st.binary(max_size=100))
    return text


def _get(document: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        document = document[step]
    return document


class Fuzzer:
    """Fuzzed frames over signaling sockets, each followed by a probe, counting outcomes."""

    def __init__(self, server: ServerProcess, tokens: dict[str, str]) -> None:
        self.url = server.url.replace("http://", "ws://") + "video/signaling"
        self.probe = json.dumps({"type": "msg", "body": {"type": "ice", "version": 1,
                                                         "token": tokens["valid"]}})
        self.socket: ClientConnection | None = None
        self.sent = 0
        self.outcomes: dict[str, int] = {}

    def _open(self, first: str | bytes | None) -> None:
        self.socket = connect(self.url, open_timeout=10, max_size=None,
                              close_timeout=1, compression=None)
        # frame and probe go out back to back: without this, Nagle holds the probe
        # for the server's delayed ACK (40 ms a frame)
        self.socket.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.socket.send(first if first is not None else json.dumps({**HELLO,
                                                                      "id": str(uuid.uuid4())}))

    def send(self, frame: str | bytes) -> None:
        is_hello = isinstance(frame, str) and '"type": "hello"' in frame
        try:
            if self.socket is None:
                self._open(frame if is_hello else None)
                if not is_hello:
                    self.socket.send(frame)  # type: ignore[union-attr]
            else:
                self.socket.send(frame)
        except (ConnectionClosed, OSError):
            # refused while it was still arriving (tornado's own 1009 for over 2 MiB)
            self.sent += 1
            self._count("closed")
            self.socket = None
            return
        self.sent += 1
        self._probe()

    def _probe(self) -> None:
        """Ask ``ice``; read until its answer, or Twilio's error (after which the server
        closes: the socket is dropped then, not waited on for the close handshake)."""
        assert self.socket is not None
        try:
            self.socket.send(self.probe)
            deadline = time.monotonic() + PROBE_TIMEOUT
            while True:
                kind = self._judge(self.socket.recv(timeout=max(0.0, deadline - time.monotonic())))
                if kind == "iced":
                    self._count("survived")
                    return
                if kind in ("error", "bad"):
                    break
        except (ConnectionClosed, OSError):
            self._count("closed")
        except TimeoutError:
            self._count("silent")  # e.g. after a valid disconnect: the server ignores it
        self.socket.close_socket()
        self.socket = None

    def _judge(self, reply: str | bytes) -> str:
        """Check one server frame; what it was."""
        frame = json.loads(reply)
        kind = frame["type"]
        assert kind in ("welcome", "msg", "heartbeat", "bad", "bye", "busy"), frame
        if kind == "busy":  # joins over the address's rate: retry later (then closed)
            assert frame["retryAfter"] > 0, frame
            self._count("busy")
            return "bad"
        if kind == "bad":
            code = int(frame["reason"].split(":")[0])
            assert code in CODES and code != 53000, frame
            self._count(f"bad {code}")
            return "bad"
        if kind == "msg":
            body = frame["body"]
            if body["type"] == "error":
                assert body["code"] in CODES and body["code"] != 53000, body
                self._count(f"error {body['code']}")
            return str(body["type"])
        return str(kind)

    def _count(self, outcome: str) -> None:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1

    def close(self) -> None:
        if self.socket is not None:
            self.socket.close_socket()
            self.socket = None


def test_ten_thousand_fuzzed_signaling_frames_leave_the_server_and_a_live_room_unharmed(
    server: ServerProcess, pair: LivePair
) -> None:
    tokens = {
        "valid": token(server, "fuzzer"),
        "expired": token(server, "fuzzer", ttl=-60),
        "garbage": "eyJ.not.a-token",
        "empty": "",
    }
    # Conversations go out on SENDERS sockets at once: a fuzzed connect that is still
    # valid negotiates a real peer connection in the media worker, and the server
    # answers others meanwhile (as it must).
    idle: queue.Queue[Fuzzer] = queue.Queue()
    fuzzers = [Fuzzer(server, tokens) for _ in range(SENDERS)]
    for fuzzer in fuzzers:
        idle.put(fuzzer)
    in_flight = threading.Semaphore(2 * SENDERS)
    pending: list[Future[None]] = []
    before = pair.counts()
    started = time.monotonic()

    def talk(frames: list[str | bytes]) -> None:
        fuzzer = idle.get()
        try:
            for frame in frames:
                fuzzer.send(frame)
        finally:
            fuzzer.close()
            idle.put(fuzzer)
            in_flight.release()

    # No shrinking: against a live server a failure is reported as found (the frame
    # is in the assertion), not minimised over minutes of megabyte frames.
    @settings(max_examples=MESSAGES // PER_EXAMPLE, derandomize=True, deadline=None,
              database=None, suppress_health_check=list(HealthCheck),
              phases=[Phase.explicit, Phase.generate])
    @given(frames=st.lists(mutated_frame(tokens), min_size=PER_EXAMPLE, max_size=PER_EXAMPLE))
    def conversation(frames: list[str | bytes]) -> None:
        in_flight.acquire()
        pending.append(pool.submit(talk, frames))

    with ThreadPoolExecutor(SENDERS) as pool:
        conversation()
        for future in pending:
            future.result()
    seconds = time.monotonic() - started
    after = pair.healthy()
    sent = sum(f.sent for f in fuzzers)
    outcomes: dict[str, int] = {}
    for fuzzer in fuzzers:
        for outcome, count in fuzzer.outcomes.items():
            outcomes[outcome] = outcomes.get(outcome, 0) + count
    print(json.dumps({"fuzz_signaling": {"frames": sent, "seconds": round(seconds, 1),
                                         "outcomes": outcomes,
                                         "pair_before": before, "pair_after": after}}))
    assert sent >= MESSAGES
    refused = sum(n for outcome, n in outcomes.items()
                  if outcome.startswith(("error", "bad", "busy")))
    assert outcomes.get("survived", 0) > 0 and refused > 0
    assert after["alice_bad_frames"] == 0 and after["bob_bad_frames"] == 0
    assert tracebacks(server) == []
    assert server.process is not None and server.process.poll() is None
