"""TCMP v2 framing and session order, as twilio-video.js 2.36 speaks it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from jupyter_video.errors import SignalingError
from jupyter_video.signaling import tcmp
from jupyter_video.signaling.tcmp import ClientSession, ServerSession, SessionState

# Exactly what twilio-video sent in tests/signaling/fixtures/capture_join.json, minus the body.
HELLO = json.dumps({"id": "dfaf0c53-1929-4461-826d-b1423b465cc0", "timeout": 5000,
                    "type": "hello", "version": 2,
                    "body": {"type": "connect", "version": 2}})
MSG = json.dumps({"body": {"session": "s", "type": "update", "version": 2}, "type": "msg"})
HEARTBEAT = '{"type":"heartbeat"}'
BYE = '{"type":"bye"}'


def capture(name: str) -> list[dict[str, Any]]:
    """Frames of a capture in tests/signaling/fixtures/."""
    path = Path(__file__).parent / "fixtures" / name
    return list(json.loads(path.read_text())["frames"])


def open_session(now: float = 0.0) -> ServerSession:
    session = ServerSession(now)
    session.receive(HELLO, now)
    return session


# --- parsing ---------------------------------------------------------------------------------

def test_hello_parses_with_its_rsp_body() -> None:
    frame = tcmp.parse_client_frame(HELLO)
    assert frame == tcmp.Hello(id="dfaf0c53-1929-4461-826d-b1423b465cc0", timeout=5000,
                               body={"type": "connect", "version": 2})


def test_each_client_frame_type_parses_to_its_class() -> None:
    assert isinstance(tcmp.parse_client_frame(MSG), tcmp.Msg)
    assert tcmp.parse_client_frame(HEARTBEAT) == tcmp.Heartbeat()
    assert tcmp.parse_client_frame(BYE) == tcmp.Bye()


@pytest.mark.parametrize(("text", "problem"), [
    ("not json", "not JSON"),
    ("[1, 2]", "JSON object"),
    ('{"id": "x"}', "no string 'type'"),
    ('{"type": "welcome", "negotiatedTimeout": 5000}', "unknown client frame type 'welcome'"),
    ('{"type": "msg"}', "missing 'body'"),
    ('{"type": "msg", "body": "text"}', "'body' has type str"),
    ('{"type": "hello", "id": "x", "timeout": 5000, "version": 1}', "unsupported version 1"),
    ('{"type": "hello", "id": "x", "version": 2}', "missing 'timeout'"),
    ('{"type": "hello", "id": "x", "timeout": true, "version": 2}', "boolean"),
    ('{"type": "hello", "id": "x", "timeout": 0, "version": 2}', "must be positive"),
    ('{"type": "hello", "timeout": 5000, "version": 2}', "missing 'id'"),
])
def test_malformed_client_frame_is_rejected_with_53004_saying_why(text: str, problem: str) -> None:
    with pytest.raises(SignalingError) as info:
        tcmp.parse_client_frame(text)
    assert info.value.code == 53004
    assert problem in info.value.message


def test_server_frames_parse_and_malformed_ones_raise_53003() -> None:
    assert tcmp.parse_server_frame(tcmp.welcome(5000)) == tcmp.Welcome(5000)
    assert tcmp.parse_server_frame(tcmp.busy(-1)) == tcmp.Busy(retry_after=-1)
    assert tcmp.parse_server_frame(tcmp.bad("no")) == tcmp.Bad("no")
    with pytest.raises(SignalingError) as info:
        tcmp.parse_server_frame('{"type": "welcome"}')
    assert info.value.code == 53003


def test_builders_produce_the_frames_twilio_video_reads() -> None:
    assert json.loads(tcmp.welcome(5000)) == {"type": "welcome", "negotiatedTimeout": 5000}
    assert json.loads(tcmp.msg({"type": "update"})) == {"type": "msg", "body": {"type": "update"}}
    assert json.loads(tcmp.heartbeat()) == {"type": "heartbeat"}
    assert json.loads(tcmp.bye()) == {"type": "bye"}
    assert json.loads(tcmp.bad("why")) == {"type": "bad", "reason": "why"}
    assert json.loads(tcmp.busy(1000, keep_alive=True, cookie="c")) == {
        "type": "busy", "retryAfter": 1000, "keepAlive": True, "cookie": "c"}
    assert json.loads(tcmp.hello("id1", {"type": "connect"})) == {
        "id": "id1", "timeout": 5000, "type": "hello", "version": 2, "body": {"type": "connect"}}


# --- server session order ------------------------------------------------------------------

def test_server_session_opens_on_hello_and_welcomes_with_the_requested_timeout() -> None:
    session = ServerSession(now=0.0)
    assert session.state is SessionState.AWAITING_HELLO
    session.receive(HELLO, 0.1)
    assert session.state is SessionState.OPEN
    assert json.loads(session.welcome_frame(0.1)) == {"type": "welcome",
                                                      "negotiatedTimeout": 5000}


def test_negotiated_timeout_is_capped_by_the_server() -> None:
    session = ServerSession(0.0, max_timeout_ms=2000)
    session.receive(HELLO, 0.0)
    assert session.negotiated_timeout == 2000


@pytest.mark.parametrize("frame", [MSG, HEARTBEAT, BYE])
def test_anything_before_hello_is_an_error(frame: str) -> None:
    session = ServerSession(0.0)
    with pytest.raises(SignalingError) as info:
        session.receive(frame, 0.0)
    assert info.value.code == 53004
    assert "before hello" in info.value.message


def test_hello_after_the_welcome_is_an_error() -> None:
    session = open_session()
    session.welcome_frame(0.0)
    with pytest.raises(SignalingError, match="already open"):
        session.receive(HELLO, 1.0)


def test_hello_retried_before_the_welcome_is_accepted_and_counted() -> None:
    # capture_no_welcome.json: the client re-sends hello every 5 s until welcomed.
    hellos = [row["frame"] for row in capture("capture_no_welcome.json")
              if row["dir"] == "in" and row["frame"]["type"] == "hello"]
    assert len(hellos) == 3
    session = ServerSession(0.0)
    for i, hello in enumerate(hellos):
        frame = session.receive(json.dumps(hello), 5.0 * i)
        assert isinstance(frame, tcmp.Hello) and frame.id == hello["id"]
    assert session.hello_retries == 2
    assert session.hello is not None and session.hello.id == hellos[-1]["id"]
    session.welcome_frame(10.0)
    with pytest.raises(SignalingError):
        session.welcome_frame(10.1)


def test_bye_closes_the_session_and_later_frames_are_errors() -> None:
    session = open_session()
    session.receive(BYE, 1.0)
    assert session.state is SessionState.CLOSED
    with pytest.raises(SignalingError, match="after the session closed"):
        session.receive(MSG, 1.1)
    with pytest.raises(SignalingError):
        session.msg_frame({"type": "update"}, 1.2)


def test_msg_cannot_be_sent_before_the_hello() -> None:
    session = ServerSession(0.0)
    with pytest.raises(SignalingError):
        session.msg_frame({"type": "connected"}, 0.0)
    with pytest.raises(SignalingError):
        session.welcome_frame(0.0)


# --- heartbeats ----------------------------------------------------------------------------

def test_client_is_expired_after_three_silent_timeouts() -> None:
    session = open_session(now=10.0)
    assert session.receive_deadline == pytest.approx(25.0)
    assert not session.is_expired(24.9)
    assert session.is_expired(25.1)


def test_any_received_frame_pushes_the_deadline() -> None:
    session = open_session(now=0.0)
    session.receive(MSG, 12.0)
    assert not session.is_expired(26.0)
    session.receive(HEARTBEAT, 20.0)
    assert session.receive_deadline == pytest.approx(35.0)


def test_heartbeat_is_due_200ms_before_the_timeout_unless_something_was_sent() -> None:
    session = open_session(now=0.0)
    session.welcome_frame(0.0)
    assert not session.heartbeat_due(4.7)
    assert session.heartbeat_due(4.8)
    session.msg_frame({"type": "update"}, 4.0)  # any frame counts as a heartbeat
    assert not session.heartbeat_due(8.7)
    assert json.loads(session.heartbeat_frame(8.8)) == {"type": "heartbeat"}
    assert session.next_heartbeat_at == pytest.approx(13.6)


def test_a_closed_session_never_expires_or_heartbeats() -> None:
    session = open_session()
    session.close()
    assert not session.is_expired(1000.0)
    assert not session.heartbeat_due(1000.0)


# --- client session ------------------------------------------------------------------------

def test_client_session_handshake_then_messages() -> None:
    session = ClientSession(0.0)
    hello = json.loads(session.hello_frame("id", {"type": "connect"}, 0.0))
    assert hello["type"] == "hello" and hello["timeout"] == 5000
    assert session.state is SessionState.AWAITING_WELCOME
    with pytest.raises(SignalingError) as info:
        session.receive(tcmp.msg({"type": "connected"}), 0.1)
    assert info.value.code == 53003
    session.receive(tcmp.welcome(3000), 0.2)
    assert session.state is SessionState.OPEN
    assert session.negotiated_timeout == 3000
    assert isinstance(session.receive(tcmp.msg({"type": "connected"}), 0.3), tcmp.Msg)


def test_terminal_busy_and_bad_before_welcome_close_the_client() -> None:
    busy = ClientSession(0.0)
    busy.hello_frame("id", None, 0.0)
    busy.receive(tcmp.busy(-1), 0.1)
    assert busy.state is SessionState.CLOSED
    bad = ClientSession(0.0)
    bad.hello_frame("id", None, 0.0)
    bad.receive(tcmp.bad("no"), 0.1)
    assert bad.state is SessionState.CLOSED


# --- the captured conversations, frame by frame ---------------------------------------------

@pytest.mark.parametrize("name", sorted(p.name for p in (Path(__file__).parent / "fixtures")
                                        .glob("capture_*.json")))
def test_captured_conversations_replay_through_both_sessions(name: str) -> None:
    rows = [r for r in capture(name) if r["dir"] in ("in", "out", "open", "close")]
    server: ServerSession | None = None
    client: ClientSession | None = None
    for row in rows:
        if row["dir"] == "open":
            server, client = ServerSession(row["t"]), ClientSession(row["t"])
            continue
        assert server is not None and client is not None
        if row["dir"] == "close":
            server.close()
            continue
        text = json.dumps(row["frame"])
        if row["dir"] == "in":
            frame = server.receive(text, row["t"])
            if isinstance(frame, tcmp.Hello) and client.state is SessionState.AWAITING_HELLO:
                client.hello_frame(frame.id, frame.body, row["t"])
        else:
            if row["frame"]["type"] == "welcome":
                server.welcome_frame(row["t"])
            if row["frame"]["type"] == "msg" and client.state is not SessionState.OPEN:
                continue  # capture_error_before_welcome.json: the client drops it
            client.receive(text, row["t"])
