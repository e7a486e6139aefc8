"""A media worker killed with SIGKILL under a call: its room moves to a live worker.

twilio-video.js 2.36 in Chromium and a Python participant share a room whose
tracks are recorded (``RecordParticipantsOnConnect``), on a server with two media
workers. The worker holding the room is SIGKILLed. Both clients see their media
stop, fire ``reconnecting`` (53405) and restart ICE on the same peer connection;
the server has restored their peers on the live worker (``RestorePeer``), which
answers the restart offers (sfu/peer.py ``SessionResume``). Media and data flow
again both ways under the same participant SIDs, REST shows them ``connected``
throughout, the recordings the kill cut are ``completed`` with playable files up
to the kill, and new ones record each track on the new worker.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import av
import pytest
import requests

from jupyter_video.client import LocalDataTrack, LocalVideoTrack, connect

from ..client.participants import LOOPBACK, token
from ..server_process import ServerProcess
from ..widgets.browser import requires_browser
from ..widgets.driver import PageDriver
from .conftest import video_config
from .test_failover_ice_restart import (
    PYTHON_RED,
    PYTHON_SHAPE,
    SAMPLE,
    PythonSide,
    chatter,
    join_page,
    python_frames,
    until,
)

pytestmark = [pytest.mark.timeout(150), requires_browser]


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("failover")
    process = ServerProcess(root, video_config=video_config(
        root, media_workers=2, session_timeout=20.0)).start()
    yield process
    process.stop()


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry))
    return found


def worker_with_peers(server: ServerProcess) -> int:
    """The media worker process that has UDP sockets (ICE): the one holding the room."""
    udp = set()
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        with open(table) as lines:
            udp |= {line.split()[9] for line in list(lines)[1:]}
    for pid in _children(server.process.pid):
        if b"jupyter_video.sfu" not in Path(f"/proc/{pid}/cmdline").read_bytes():
            continue
        sockets = set()
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                sockets.add(target[8:-1])
        if sockets & udp:
            return pid
    raise AssertionError("no media worker holds a UDP socket")


def rest(server: ServerProcess, path: str, method: str = "GET", **data: str) -> dict:
    creds = server.credentials()
    response = requests.request(method, f"{server.url}video/v1/{path}", data=data or None,
                                auth=(creds["api_key_sid"], creds["api_key_secret"]), timeout=10)
    assert response.status_code < 300, response.text
    return response.json()  # type: ignore[no-any-return]


def recordings(server: ServerProcess, room_sid: str) -> list[dict]:
    return rest(server, f"Rooms/{room_sid}/Recordings?PageSize=100")["recordings"]  # type: ignore[no-any-return]


def decoded_frames(server: ServerProcess, recording: dict, directory: Path) -> int:
    creds = server.credentials()
    response = requests.get(f"{server.url}video/v1/{recording['links']['media'].split('/v1/')[-1]}"
                            if not recording["links"]["media"].startswith("http")
                            else recording["links"]["media"],
                            auth=(creds["api_key_sid"], creds["api_key_secret"]), timeout=20)
    assert response.status_code == 200, response.text
    path = directory / f"{recording['sid']}.{recording['container_format']}"
    path.write_bytes(response.content)
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(container.streams.video[0]))


async def test_a_killed_media_worker_moves_its_room_to_a_live_one_and_recordings_carry_on(
        two_workers: ServerProcess, tmp_path: Path) -> None:
    server = two_workers
    room = rest(server, "Rooms", "POST", UniqueName=f"failover-{time.time_ns()}",
                RecordParticipantsOnConnect="true")
    name, room_sid = room["unique_name"], room["sid"]
    page = PageDriver(timeout=140)
    side = PythonSide()
    chat = LocalDataTrack(name="chat")
    python = None

    async def sample() -> dict | None:
        result: dict | None = await asyncio.to_thread(page.eval, SAMPLE)
        return result

    try:
        python = await connect(token(server, "python"), name, server.url,
                               ice_host_addresses=LOOPBACK,
                               tracks=[LocalVideoTrack.from_frames(python_frames(), fps=10),
                                       chat])
        python_events: list[tuple[str, int | None, float]] = []
        for event in ("reconnecting", "reconnected", "disconnected"):
            python.on(event, lambda e: python_events.append(
                (e.name, getattr(e.error, "code", None), time.monotonic())))
        python.on("track_subscribed", side.received)
        side.tasks.append(asyncio.ensure_future(chatter(chat)))
        joined = await join_page(page, server, name)

        async def page_gets_media() -> bool:
            now = await sample()
            return bool(now and now["decoded"] > 10 and now["messages"] > 10)

        await until("media both ways before the kill",
                    lambda: side.frames > 10 and side.messages > 10, 40)
        await until("the page decodes the Python participant", page_gets_media, 40)
        await until("both video tracks recording", lambda: sum(
            r["type"] == "video" and r["status"] == "processing"
            for r in recordings(server, room_sid)) == 2, 20)
        await asyncio.sleep(2)  # two seconds of recorded video before the kill
        before = {r["sid"] for r in recordings(server, room_sid)}
        participants = {p["identity"]: p["sid"] for p in
                        rest(server, f"Rooms/{room_sid}/Participants")["participants"]}

        os.kill(worker_with_peers(server), signal.SIGKILL)
        killed = time.monotonic()
        killed_at = await asyncio.to_thread(page.eval, "() => performance.now()")

        statuses: list[str] = []

        def still_connected() -> bool:
            listing = rest(server, f"Rooms/{room_sid}/Participants")["participants"]
            statuses.extend(p["status"] for p in listing)
            return True

        await until("the page reconnected", lambda: asyncio.to_thread(page.eval, (
            "() => window.events.some((e) => e.event === 'reconnected')")), 40)
        await until("the Python participant reconnected",
                    lambda: still_connected() and any(
                        e[0] == "reconnected" for e in python_events), 40)
        events = await asyncio.to_thread(page.eval, "() => window.events")
        assert [e["event"] for e in events[:2]] == ["reconnecting", "reconnected"], events
        assert events[0]["code"] == 53405 and events[1]["sid"] == joined["sid"], events
        assert [e[:2] for e in python_events[:2]] == [("reconnecting", 53405),
                                                       ("reconnected", None)], python_events

        page_before = await sample()
        assert page_before is not None
        frames, messages, bad = side.frames, side.messages, side.bad_frames

        first_frame: dict[str, float] = {}

        async def page_resumed() -> bool:
            now = await sample()
            if now and now["decoded"] > page_before["decoded"]:
                first_frame.setdefault("page", time.monotonic())
            if side.frames > frames:
                first_frame.setdefault("python", time.monotonic())
            return bool(now and now["decoded"] >= page_before["decoded"] + 10
                        and now["messages"] >= page_before["messages"] + 10)

        page_back = await until("the page's media resumes", page_resumed, 30)
        first_frame.setdefault("python", time.monotonic())
        python_back = await until(
            lambda: f"the Python participant's media resumes: {side.frames - frames} frames, "
                    f"{side.messages - messages} messages",
            lambda: side.frames >= frames + 10 and side.messages >= messages + 10, 30)
        now = await sample()
        assert now is not None
        assert (now["width"], now["height"]) == (PYTHON_SHAPE[1], PYTHON_SHAPE[0]), now
        assert abs(now["red"] - PYTHON_RED) <= 20, now
        assert side.bad_frames - bad <= 2, side.bad_frames

        listing = rest(server, f"Rooms/{room_sid}/Participants")["participants"]
        assert {p["identity"]: p["sid"] for p in listing} == participants
        assert {p["status"] for p in listing} == {"connected"}
        assert set(statuses) == {"connected"}, statuses

        # The recordings the kill cut are completed, playable up to the kill; a new
        # one records each video track on the new worker.
        cut = [r for r in recordings(server, room_sid) if r["sid"] in before]
        assert {r["status"] for r in cut} == {"completed"}, cut
        for recording in cut:
            if recording["type"] == "video":
                assert decoded_frames(server, recording, tmp_path) >= 10, recording
        await until("new recordings of both video tracks", lambda: sum(
            r["type"] == "video" and r["status"] == "processing" and r["sid"] not in before
            for r in recordings(server, room_sid)) == 2, 20)
        print(json.dumps({"media_worker_killed": {
            "page_reconnecting_after_kill_s": round((events[0]["at"] - killed_at) / 1000, 2),
            "page_reconnected_after_kill_s": round((events[1]["at"] - killed_at) / 1000, 2),
            "python_reconnected_after_kill_s": round(python_events[1][2] - killed, 2),
            "page_first_frame_after_kill_s": round(first_frame["page"] - killed, 2),
            "python_first_frame_after_kill_s": round(first_frame["python"] - killed, 2),
            "page_media_back_after_kill_s": round(page_back - killed, 2),
            "python_media_back_after_kill_s": round(python_back - killed, 2),
        }}))
        await asyncio.to_thread(page.eval, "() => room.disconnect()")
        await python.disconnect()
        python = None
        rest(server, f"Rooms/{room_sid}", "POST", Status="completed")
        await until("no recording left processing", lambda: all(
            r["status"] in ("completed", "failed") for r in recordings(server, room_sid)), 20)
        assert all(r["status"] == "completed" for r in recordings(server, room_sid))
    finally:
        for task in side.tasks:
            task.cancel()
        if python is not None:
            await python.disconnect()
        await asyncio.to_thread(page.close)
