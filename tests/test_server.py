"""The extension as a whole: enabled on install, records kept across restarts, timeouts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any

import pytest

from .conftest import make_twilio_client
from .server_process import ServerProcess


def test_extension_is_enabled_by_the_installed_config() -> None:
    listing = subprocess.run(
        [sys.executable, "-m", "jupyter", "server", "extension", "list"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    text = listing.stdout + listing.stderr
    assert "jupyter_video \x1b[32menabled" in text or "jupyter_video enabled" in text, text
    assert "jupyter_video 0.1.0 \x1b[32mOK" in text or "jupyter_video 0.1.0 OK" in text, text


@pytest.mark.parametrize("kill", [False, True], ids=["stopped", "killed"])
def test_records_survive_a_restart(fresh_server: ServerProcess, kill: bool) -> None:
    fresh_server.driver = True
    fresh_server.start()
    client = make_twilio_client(fresh_server)
    ended = client.video.v1.rooms.create(unique_name="ended")
    alice = fresh_server.drive("participants", room=ended.sid, identity="alice")["sid"]
    time.sleep(1.1)  # so that durations are at least one second
    client.video.v1.rooms(ended.sid).update(status="completed")
    live = client.video.v1.rooms.create(unique_name="live")
    bob = fresh_server.drive("participants", room=live.sid, identity="bob")["sid"]
    before = {room.sid: room for room in client.video.v1.rooms.list()}
    alice_before = client.video.v1.rooms(ended.sid).participants(alice).fetch()

    fresh_server.stop(kill=kill)
    fresh_server.start()
    client = make_twilio_client(fresh_server)

    after = {room.sid: room for room in client.video.v1.rooms.list()}
    assert set(after) == set(before)
    for sid, room in before.items():
        for field in ("unique_name", "status", "date_created", "end_time", "duration", "type"):
            assert getattr(after[sid], field) == getattr(room, field), (sid, field)
    assert after[ended.sid].duration >= 1
    alice_after = client.video.v1.rooms(ended.sid).participants(alice).fetch()
    for field in ("sid", "identity", "status", "start_time", "end_time", "duration"):
        assert getattr(alice_after, field) == getattr(alice_before, field), field
    # Bob's connection died with the old server: he is recorded as disconnected,
    # and his room stays in progress until its empty-room timeout.
    bob_after = client.video.v1.rooms(live.sid).participants(bob).fetch()
    assert bob_after.status == "disconnected" and bob_after.end_time is not None
    assert client.video.v1.rooms(live.sid).fetch().status == "in-progress"


def wait_for(check: Any, timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"not true within {timeout}s")


def test_rooms_complete_after_their_unused_and_empty_timeouts(fresh_server: ServerProcess) -> None:
    # One timeout "minute" lasts 0.5 s here, so a 1-minute timeout is 0.5 s.
    fresh_server.video_config = {"timeout_minute_seconds": 0.5}
    fresh_server.driver = True
    fresh_server.start()
    client = make_twilio_client(fresh_server)
    unused = client.video.v1.rooms.create(unique_name="unused", unused_room_timeout=1)
    used = client.video.v1.rooms.create(
        unique_name="used", unused_room_timeout=1, empty_room_timeout=2
    )
    carol = fresh_server.drive("participants", room=used.sid, identity="carol")["sid"]
    wait_for(lambda: client.video.v1.rooms(unused.sid).fetch().status == "completed")
    # An occupied room never times out.
    time.sleep(1.5)
    assert client.video.v1.rooms(used.sid).fetch().status == "in-progress"
    client.video.v1.rooms(used.sid).participants(carol).update(status="disconnected")
    left = time.monotonic()
    ended = wait_for(
        lambda: (room := client.video.v1.rooms(used.sid).fetch()).status == "completed" and room
    )
    assert time.monotonic() - left >= 0.9  # two half-second minutes, minus the check interval
    assert ended.end_time is not None


def test_kernel_of_the_same_user_gets_credentials_and_url(server: ServerProcess) -> None:
    from jupyter_client.manager import start_new_kernel

    env = {**server.env, "PYTHONPATH": os.getcwd()}
    manager, kernel = start_new_kernel(kernel_name="python3", env=env)
    try:
        outputs: list[str] = []
        kernel.execute_interactive(
            "import json, jupyter_video\nprint(json.dumps(jupyter_video.credentials().__dict__))",
            timeout=60,
            output_hook=lambda msg: outputs.append(msg["content"].get("text", "")),
        )
    finally:
        kernel.stop_channels()
        manager.shutdown_kernel(now=True)
    seen = json.loads("".join(outputs))
    stored = server.credentials()
    for field in ("account_sid", "auth_token", "api_key_sid", "api_key_secret"):
        assert seen[field] == stored[field]
    assert seen["url"] == server.url
