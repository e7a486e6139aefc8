"""Nobody let in: credentials everywhere, identity and room only from the token, limits
with clear errors and the server unaffected, files that stay private.

The REST side of "credentials on every endpoint" (recording media and metrics
included) is test_fuzz_rest.py; here the rest, against a real server.
"""

from __future__ import annotations

import json
import os
import stat
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from websockets.sync.client import ClientConnection, connect

from jupyter_video.tokens import AccessToken, VideoGrant

from ..client.participants import room_name, token
from ..server_process import TOKEN, ServerProcess
from .conftest import tracebacks, video_config
from .live_pair import LivePair

pytestmark = [
    pytest.mark.timeout(180),
    pytest.mark.filterwarnings("ignore:connect\\(\\) must be used:DeprecationWarning"),
]

FIXTURES = Path(__file__).resolve().parent.parent / "signaling" / "fixtures"
TRACK_LIMIT = 3


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("security")
    process = ServerProcess(
        root, video_config=video_config(root, max_tracks_per_participant=TRACK_LIMIT)
    ).start()
    yield process
    process.stop()


def browser_hello() -> dict[str, Any]:
    frames = json.loads((FIXTURES / "capture_join.json").read_text())["frames"]
    hello: dict[str, Any] = next(
        f["frame"] for f in frames if f["dir"] == "in" and f["frame"]["type"] == "hello")
    return hello


def open_signaling(server: ServerProcess) -> ClientConnection:
    url = server.url.replace("http://", "ws://") + "video/signaling"
    return connect(url, open_timeout=10, compression=None, close_timeout=1, max_size=None)


def answer(ws: ClientConnection, timeout: float = 20.0) -> dict[str, Any]:
    """The first RSP ``connected`` or ``error`` (or a TCMP ``busy``) the server sends."""
    deadline = time.monotonic() + timeout
    while True:
        frame = json.loads(ws.recv(timeout=max(0.0, deadline - time.monotonic())))
        if frame["type"] == "busy":
            return frame  # type: ignore[no-any-return]
        if frame["type"] == "msg" and frame["body"]["type"] in ("connected", "error"):
            return frame["body"]  # type: ignore[no-any-return]


def join_as_browser(server: ServerProcess, jwt: str, room: str,
                    change: Any = None) -> tuple[ClientConnection, dict[str, Any]]:
    """Connect with twilio-video.js's own hello (a real Chromium offer), changed by
    ``change(body)``; the socket and the server's answer."""
    hello = browser_hello()
    hello["id"] = str(uuid.uuid4())
    hello["body"]["token"] = jwt
    hello["body"]["name"] = room
    if change is not None:
        change(hello["body"])
    ws = open_signaling(server)
    ws.send(json.dumps(hello))
    return ws, answer(ws)


def rest(server: ServerProcess) -> tuple[str, tuple[str, str]]:
    creds = server.credentials()
    return server.url + "video/v1/", (creds["api_key_sid"], creds["api_key_secret"])


# --------------------------------------------------------------------- identity, room

def test_the_identity_is_the_tokens_whatever_the_client_sends(server: ServerProcess) -> None:
    room = room_name()

    def claim_to_be_mallory(body: dict[str, Any]) -> None:
        body["identity"] = "mallory"
        body["participant"]["identity"] = "mallory"
        body["participant"]["sid"] = "PA" + "0" * 32

    ws, connected = join_as_browser(server, token(server, "alice"), room, claim_to_be_mallory)
    with ws:
        assert connected["type"] == "connected", connected
        assert connected["participant"]["identity"] == "alice"
        assert connected["participant"]["sid"] != "PA" + "0" * 32
        base, auth = rest(server)
        listed = requests.get(f"{base}Rooms/{room}/Participants", auth=auth, timeout=10).json()
        assert [p["identity"] for p in listed["participants"]] == ["alice"]


def test_a_token_for_one_room_joins_no_other(server: ServerProcess) -> None:
    creds = server.credentials()
    grant = AccessToken(creds["account_sid"], creds["api_key_sid"], creds["api_key_secret"],
                        identity="bob")
    grant.add_grant(VideoGrant(room="maths"))
    ws, refused = join_as_browser(server, grant.to_jwt(), "physics")
    with ws:
        assert refused["type"] == "error" and refused["code"] == 20106, refused
        assert "grants room 'maths'" in refused["message"]


def test_a_token_naming_a_room_sid_is_refused_after_that_room_ended(
    server: ServerProcess,
) -> None:
    base, auth = rest(server)
    name = room_name()
    room = requests.post(base + "Rooms", data={"UniqueName": name}, auth=auth, timeout=10).json()
    creds = server.credentials()
    access = AccessToken(creds["account_sid"], creds["api_key_sid"], creds["api_key_secret"],
                         identity="late")
    access.add_grant(VideoGrant(room=room["sid"]))
    jwt = access.to_jwt()
    ended = requests.post(f"{base}Rooms/{room['sid']}", data={"Status": "completed"},
                          auth=auth, timeout=10)
    assert ended.json()["status"] == "completed"
    for name_sent in (room["sid"], name):  # by SID, and by the unique name it had
        ws, refused = join_as_browser(server, jwt, name_sent)
        with ws:
            assert refused["type"] == "error" and refused["code"] == 53118, refused
    rooms = requests.get(base + "Rooms", params={"UniqueName": name, "Status": "in-progress"},
                         auth=auth, timeout=10).json()["rooms"]
    assert rooms == []  # and no new room was made under its name


# ------------------------------------------------------------------------------ limits

def test_a_signaling_message_over_a_mebibyte_is_53004_and_the_room_goes_on(
    server: ServerProcess, pair: LivePair
) -> None:
    with open_signaling(server) as ws:
        ws.send(json.dumps({"type": "hello", "id": "big", "timeout": 5000, "version": 2}))
        ws.send(json.dumps({"type": "msg", "body": {"type": "update", "pad": "x" * (3 << 19)}}))
        refused = answer(ws)
    assert refused["code"] == 53004 and "over the limit of 1048576 bytes" in refused["message"]
    pair.healthy()


def test_tracks_beyond_the_limit_are_refused_with_53203_and_the_rest_published(
    server: ServerProcess,
) -> None:
    def publish_many(body: dict[str, Any]) -> None:
        tracks = body["participant"]["tracks"]
        for number in range(5):
            tracks.append({"enabled": True, "id": f"extra-{number}", "kind": "data",
                           "name": f"extra-{number}", "priority": "standard"})

    ws, connected = join_as_browser(server, token(server, "many"), room_name(), publish_many)
    with ws:
        assert connected["type"] == "connected", connected
        failed = [t for t in connected["published"]["tracks"] if t["state"] == "failed"]
        assert len(failed) == 8 - TRACK_LIMIT
        assert {t["error"]["code"] for t in failed} == {53203}
        assert "at most 3 tracks" in failed[0]["error"]["message"]
        ws.send(json.dumps({"type": "msg", "body": {"type": "disconnect", "version": 2,
                                                   "session": connected["session"]}}))


def test_joins_beyond_the_rate_of_one_address_are_told_busy_and_others_still_join(
    tmp_path: Path,
) -> None:
    fresh = ServerProcess(tmp_path / "server", video_config=video_config(
        tmp_path, joins_per_second=2.0, join_burst=3)).start()
    try:
        answers = []
        for number in range(6):  # six people behind one address
            ws, reply = join_as_browser(fresh, token(fresh, f"eager-{number}"), "rate-room")
            answers.append(reply)
            ws.close()
        kinds = [a["type"] for a in answers]
        assert kinds[:3] == ["connected"] * 3, answers
        busy = [a for a in answers if a["type"] == "busy"]
        assert busy and all(0 < a["retryAfter"] <= 1000 for a in busy), answers
        time.sleep(1.0)  # the bucket refills at 2 a second
        ws, reply = join_as_browser(fresh, token(fresh, "patient"), "rate-room")
        ws.close()
        assert reply["type"] == "connected", reply
        assert tracebacks(fresh) == []
    finally:
        fresh.stop()


# ---------------------------------------------------------------- sessions and files

def test_a_jupyter_session_of_another_server_is_refused(
    server: ServerProcess, tmp_path: Path
) -> None:
    other = ServerProcess(tmp_path / "other").start()
    try:
        with requests.Session() as browser:
            browser.get(f"{other.url}tree?token={TOKEN}", timeout=10)  # signs in to *other*
            cookie = next(c for c in browser.cookies if c.name.startswith("username-"))
        base, _ = rest(server)
        ours = f"username-127-0-0-1-{server.port}"  # the name *this* server's cookie has
        for path in ("Rooms", "Recordings", "../metrics", "../token"):
            response = requests.get(base + path, cookies={ours: cookie.value}, timeout=10)
            assert response.status_code in (401, 403), (path, response.status_code)
        with_session = requests.get(base + "Rooms", cookies={ours: cookie.value}, timeout=10)
        assert with_session.json()["code"] == 20003
        with requests.Session() as browser:  # the control: this server's own session works
            browser.get(f"{server.url}tree?token={TOKEN}", timeout=10)
            assert browser.get(base + "Rooms", timeout=10).status_code == 200
    finally:
        other.stop()


def test_recording_media_paths_cannot_leave_the_recordings_directory(
    server: ServerProcess,
) -> None:
    base, auth = rest(server)
    secret = server.credentials()["api_key_secret"]
    for sid in ("..%2F..%2Fcredentials.json", "..%2F..%2F..%2Fdata%2Fjupyter_video",
                "%2Fetc%2Fpasswd", "RT" + "0" * 32 + "%2F..%2F..", "....//....//"):
        for path in (f"Recordings/{sid}/Media", f"Rooms/{sid}/Recordings/{sid}/Media"):
            response = requests.get(base + path, auth=auth, timeout=10)
            assert response.status_code in (400, 404), (path, response.status_code)
            assert secret not in response.text and "root:" not in response.text


def test_the_credentials_file_stays_private(server: ServerProcess) -> None:
    path = server.root / "data" / "jupyter_video" / "credentials.json"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert os.stat(path).st_uid == os.getuid()
