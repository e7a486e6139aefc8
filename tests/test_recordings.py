"""Per-track recordings in a real server: RecordingRules applied live, files that PyAV
plays, Twilio's REST resource and status callbacks, and a crash that loses at most the
last second.

A real ``jupyter server`` (media in a worker process, on 127.0.0.1), real Python
participants publishing a pattern whose frame index survives VP8, recordings and
everything else under the test's temporary directories.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import signal
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
import requests

from jupyter_video._aiortc import use_host_addresses
from jupyter_video.account import Credentials
from jupyter_video.client import LocalAudioTrack, LocalVideoTrack, Room, connect
from jupyter_video.recording import recordings

from .client.participants import LOOPBACK, room_name, token
from .client.test_client_e2e import LEVELS, decode_index, pattern_frames
from .conftest import make_twilio_client
from .server_process import ServerProcess
from .test_status_callbacks import Receiver, assert_signed_by

pytestmark = pytest.mark.timeout(120)

WAIT = 20.0


def video_config(root: Path) -> dict[str, Any]:
    return {
        "ice_host_addresses": LOOPBACK,
        "media_workers": 1,
        "session_timeout": 2.0,
        "recordings_dir": str(root / "recordings"),
    }


@pytest.fixture(autouse=True)
def loopback_only() -> Iterator[None]:
    use_host_addresses(LOOPBACK)
    yield
    use_host_addresses(None)


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    got = Receiver()
    yield got
    got.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("recordings")
    process = ServerProcess(root, video_config=video_config(root)).start()
    yield process
    process.stop()


@pytest.fixture
async def join(server: ServerProcess) -> AsyncIterator[Callable[..., Any]]:
    rooms: list[Room] = []

    async def _join(identity: str, name: str, *tracks: Any, to: ServerProcess = server) -> Room:
        room = await connect(token(to, identity), name, to.url, tracks=list(tracks),
                             ice_host_addresses=LOOPBACK)
        rooms.append(room)
        return room

    yield _join
    for room in rooms:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(room.disconnect(), 5)


def rest(server: ServerProcess, method: str, path: str, auth: bool = True,
         **data: Any) -> requests.Response:
    creds = server.credentials()
    return requests.request(
        method,
        path if path.startswith("http") else f"{server.url}video/v1/{path}",
        data=data or None if method != "GET" else None,
        params=data or None if method == "GET" else None,
        auth=(creds["api_key_sid"], creds["api_key_secret"]) if auth else None,
        timeout=10,
    )


def create_room(server: ServerProcess, **params: Any) -> dict[str, Any]:
    response = rest(server, "POST", "Rooms", UniqueName=room_name(), **params)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def room_recordings(server: ServerProcess, room_sid: str, **filters: Any) -> list[dict[str, Any]]:
    response = rest(server, "GET", f"Rooms/{room_sid}/Recordings?PageSize=100", **filters)
    assert response.status_code == 200, response.text
    return response.json()["recordings"]  # type: ignore[no-any-return]


async def wait_until(check: Callable[[], Any], timeout: float = WAIT) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = await asyncio.to_thread(check)
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout}s: {check}")
        await asyncio.sleep(0.2)


def tone(seconds: float, frequency: float = 440.0) -> np.ndarray:
    t = np.arange(int(48000 * seconds)) / 48000
    return (np.sin(2 * np.pi * frequency * t) * 12000).astype(np.int16)


def camera(name: str = "camera") -> LocalVideoTrack:
    return LocalVideoTrack.from_frames(pattern_frames(), fps=30, name=name)


def download(server: ServerProcess, recording: dict[str, Any], directory: Path) -> Path:
    response = rest(server, "GET", recording["links"]["media"])
    assert response.status_code == 200, response.text
    path = directory / f"{recording['sid']}.{recording['container_format']}"
    path.write_bytes(response.content)
    return path


def video_of(path: Path) -> tuple[str, float, list[int | None]]:
    """Codec, seconds and the pattern index of each decoded frame of a video file."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = list(container.decode(stream))
        codec = stream.codec_context.name
    indices = [decode_index(frame.to_ndarray(format="rgb24")) for frame in frames]
    span = float(frames[-1].time - frames[0].time) + 1 / 30
    return codec, span, indices


def assert_pattern(indices: list[int | None]) -> None:
    """Past the encoder's first blurry frames, the frames show the pattern, in order.

    As a subscriber sees it (test_client_e2e): the kernel track may repeat or skip a
    frame when it runs late, and a keyframe forced by a PLI (someone subscribing) can
    come out too blurry to read.
    """
    read = [index for index in indices[5:] if index is not None]
    assert len(read) > 20 and len(read) >= 0.95 * len(indices[5:]), str(indices)
    steps = [(b - a) % LEVELS for a, b in itertools.pairwise(read)]
    assert all(0 <= step <= 10 for step in steps), str(read)
    assert sum(step == 1 for step in steps) >= len(steps) // 2, str(read)


def audio_peak(path: Path) -> tuple[str, float, float]:
    """Codec, seconds and the strongest frequency of an audio file."""
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        frames = list(container.decode(stream))
        codec = stream.codec_context.name
    samples = np.concatenate([f.to_ndarray()[0] for f in frames[10:]]).astype(np.float64)
    spectrum = np.abs(np.fft.rfft(samples))
    peak = float(np.fft.rfftfreq(len(samples), 1 / frames[0].sample_rate)[np.argmax(spectrum)])
    return codec, float(frames[-1].time - frames[0].time) + 0.02, peak


# ----------------------------------------------------------------------- tests


async def test_a_recorded_room_gives_each_published_track_a_playable_file(
    server: ServerProcess, receiver: Receiver, join: Callable[..., Any], tmp_path: Path
) -> None:
    callback = receiver.url("ok")
    room = create_room(server, RecordParticipantsOnConnect="true", StatusCallback=callback)
    alice = await join("alice", room["unique_name"], camera(),
                       LocalAudioTrack.from_array(tone(20), name="voice"))
    bob = await join("bob", room["unique_name"], camera("bob-camera"))
    got = await asyncio.to_thread(
        receiver.wait_for, callback,
        lambda got: sum(r.event == "recording-started" for r in got) == 3,
    )  # fmt: skip
    started = {r.params["SourceSid"]: r.at for r in got if r.event == "recording-started"}
    await asyncio.sleep(3.0)
    stopped: dict[str, tuple[float, float]] = {}  # participant -> leaving began, ended
    for participant in (alice, bob):
        leaving = time.monotonic()
        await participant.disconnect()
        stopped[participant.local_participant.sid] = (leaving, time.monotonic())

    got = await asyncio.to_thread(
        receiver.wait_for, callback,
        lambda got: sum(r.event == "recording-completed" for r in got) == 3,
    )  # fmt: skip
    assert_signed_by(server.credentials()["auth_token"], got)
    listed = room_recordings(server, room["sid"])
    # key=repr: a record with no codec (None) must show in the failure, not raise TypeError
    assert sorted(((r["type"], r["container_format"], r["codec"], r["status"]) for r in listed),
                  key=repr) == [
        ("audio", "mka", "opus", "completed"),
        ("video", "mkv", "vp8", "completed"),
        ("video", "mkv", "vp8", "completed"),
    ]
    tracks = {p.sid: p for p in (alice.local_participant, bob.local_participant)}
    for recording in listed:
        publisher = tracks[recording["grouping_sids"]["participant_sid"]]
        names = {sid: t.track_name for sid, t in publisher.tracks.items()}
        assert names[recording["source_sid"]] == recording["track_name"]
        assert recording["grouping_sids"]["room_sid"] == room["sid"]
        # From the recording-started callback to the publisher leaving.
        leaving, left = stopped[publisher.sid]
        began = started[recording["source_sid"]]
        path = download(server, recording, tmp_path)
        assert path.stat().st_size == recording["size"]
        if recording["type"] == "video":
            codec, seconds, indices = video_of(path)
            assert codec == "vp8"
            assert_pattern(indices)
        else:
            codec, seconds, peak = audio_peak(path)
            assert codec == "opus" and abs(peak - 440.0) < 5.0
        assert leaving - began - 0.5 < seconds < left - began + 0.5, (
            recording["type"], seconds, leaving - began, left - began
        )  # fmt: skip
        assert abs(recording["duration"] - seconds) <= 1
    completed = [r for r in got if r.event == "recording-completed"]
    for request in completed:
        params = request.params
        assert params["MediaUri"] == params["RecordingUri"] + "/Media"
        assert params["Container"] in ("mkv", "mka") and params["Codec"] in ("vp8", "opus")
        assert int(params["Size"]) > 0 and int(params["Duration"]) >= 2
        assert params["RoomSid"] == room["sid"]


async def test_recording_rules_updated_over_rest_start_and_stop_track_recordings(
    server: ServerProcess, join: Callable[..., Any]
) -> None:
    room = create_room(server)
    alice = await join("alice", room["unique_name"], camera(),
                       LocalAudioTrack.from_array(tone(30), name="voice"))
    await asyncio.sleep(1.0)
    assert room_recordings(server, room["sid"]) == []
    assert alice.is_recording is False
    video_sid = next(sid for sid, t in alice.local_participant.tracks.items() if t.kind == "video")

    rules = [{"type": "include", "kind": "video"}]
    response = rest(server, "POST", f"Rooms/{room['sid']}/RecordingRules", Rules=json.dumps(rules))
    assert response.status_code == 200, response.text
    [recording] = await wait_until(lambda: room_recordings(server, room["sid"]))
    assert (recording["source_sid"], recording["status"]) == (video_sid, "processing")
    await wait_until(lambda: alice.is_recording)  # twilio-video's room.isRecording
    await asyncio.sleep(1.5)

    rest(server, "POST", f"Rooms/{room['sid']}/RecordingRules",
         Rules=json.dumps([{"type": "exclude", "all": True}]))
    await wait_until(
        lambda: room_recordings(server, room["sid"], Status="completed")
    )
    assert [r["sid"] for r in room_recordings(server, room["sid"])] == [recording["sid"]]
    await wait_until(lambda: not alice.is_recording)

    rest(server, "POST", f"Rooms/{room['sid']}/RecordingRules",
         Rules=json.dumps([{"type": "include", "all": True}]))
    processing = await wait_until(
        lambda: len(found := room_recordings(server, room["sid"], Status="processing")) == 2
        and found
    )
    assert sorted(r["type"] for r in processing) == ["audio", "video"]
    await asyncio.sleep(1.5)
    await alice.disconnect()
    await wait_until(lambda: len(room_recordings(server, room["sid"], Status="completed")) == 3)


async def test_recordings_are_listed_fetched_downloaded_and_deleted_over_rest(
    server: ServerProcess, join: Callable[..., Any], tmp_path: Path
) -> None:
    room = create_room(server, RecordParticipantsOnConnect="true")
    alice = await join("alice", room["unique_name"], camera(),
                       LocalAudioTrack.from_array(tone(10), name="voice"))
    alice_sid = alice.local_participant.sid
    await asyncio.sleep(2.0)
    await alice.disconnect()
    await wait_until(lambda: len(room_recordings(server, room["sid"], Status="completed")) == 2)

    def listing(**filters: str) -> list[dict[str, Any]]:
        response = rest(server, "GET", "Recordings", **filters)
        assert response.status_code == 200, response.text
        return response.json()["recordings"]  # type: ignore[no-any-return]

    assert {r["type"] for r in listing(GroupingSid=alice_sid)} == {"audio", "video"}
    [audio] = listing(GroupingSid=room["sid"], MediaType="audio")
    assert listing(SourceSid=audio["source_sid"]) == [audio]
    assert listing(GroupingSid=alice_sid, Status="failed") == []
    first = rest(server, "GET", "Recordings", GroupingSid=alice_sid, PageSize="1").json()
    assert len(first["recordings"]) == 1 and first["meta"]["key"] == "recordings"
    second = rest(server, "GET", first["meta"]["next_page_url"]).json()
    assert {first["recordings"][0]["sid"], second["recordings"][0]["sid"]} == {
        r["sid"] for r in listing(GroupingSid=alice_sid)
    }

    fetched = rest(server, "GET", f"Recordings/{audio['sid']}").json()
    assert fetched["url"].endswith(f"/video/v1/Recordings/{audio['sid']}")
    assert fetched["links"]["media"] == fetched["url"] + "/Media"
    assert rest(server, "GET", fetched["links"]["media"], auth=False).status_code in (401, 403)
    media = rest(server, "GET", fetched["links"]["media"])
    assert media.headers["Content-Type"] == "audio/x-matroska"
    assert len(media.content) == fetched["size"]

    # Kernel side: the same recordings, as files and frames.
    creds = server.credentials()
    kernel = Credentials(creds["account_sid"], creds["auth_token"], creds["api_key_sid"],
                         creds["api_key_secret"], url=server.url)
    found = await asyncio.to_thread(recordings, room["unique_name"], credentials=kernel)
    video = next(r for r in found if r.type == "video")
    path = await asyncio.to_thread(video.path, tmp_path)
    assert path.stat().st_size == video.size
    frames = await asyncio.to_thread(lambda: list(video.frames()))
    assert_pattern([decode_index(frame) for frame in frames])

    # Twilio's helper library, changed only in its base URL.
    twilio = make_twilio_client(server)
    mine = await asyncio.to_thread(twilio.video.v1.recordings.list, grouping_sid=[alice_sid])
    assert {r.sid for r in mine} == {r["sid"] for r in listing(GroupingSid=alice_sid)}
    in_room = await asyncio.to_thread(twilio.video.v1.rooms(room["sid"]).recordings.list)
    assert {r.sid for r in in_room} == {r.sid for r in mine}
    helper = await asyncio.to_thread(twilio.video.v1.recordings(audio["sid"]).fetch)
    assert (helper.codec, helper.container_format, helper.size) == ("opus", "mka", audio["size"])
    assert helper.grouping_sids == {"room_sid": room["sid"], "participant_sid": alice_sid}
    assert await asyncio.to_thread(twilio.video.v1.recordings(audio["sid"]).delete) is True
    assert rest(server, "GET", f"Recordings/{audio['sid']}").json()["status"] == "deleted"
    assert rest(server, "GET", fetched["links"]["media"]).json()["code"] == 20404
    assert rest(server, "GET", "Recordings/RT" + "0" * 32).status_code == 404
    assert listing(GroupingSid=alice_sid, Status="deleted") == [
        rest(server, "GET", f"Recordings/{audio['sid']}").json()
    ]


async def test_a_server_killed_mid_recording_leaves_a_playable_file_and_a_finished_record(
    tmp_path: Path, join: Callable[..., Any]
) -> None:
    root = tmp_path / "killed"
    crashing = ServerProcess(root, video_config=video_config(root)).start()
    try:
        room = create_room(crashing, RecordParticipantsOnConnect="true")
        await join("alice", room["unique_name"], camera(), to=crashing)
        [recording] = await wait_until(lambda: room_recordings(crashing, room["sid"]))
        await wait_until(
            lambda: rest(crashing, "GET", f"Recordings/{recording['sid']}").json()["codec"]
        )
        began = time.monotonic()
        await asyncio.sleep(3.0)
        # The server and its media worker, at once: nothing gets to finish the file.
        assert crashing.process is not None
        os.killpg(crashing.process.pid, signal.SIGKILL)
        killed = time.monotonic()
        crashing.process.wait(timeout=10)
    finally:
        crashing.stop(kill=True)

    restarted = ServerProcess(root, video_config=video_config(root)).start()
    try:
        fetched = rest(restarted, "GET", f"Recordings/{recording['sid']}").json()
        assert fetched["status"] == "completed"
        assert room_recordings(restarted, room["sid"], Status="processing") == []
        path = download(restarted, fetched, tmp_path)
        with av.open(str(path)) as container:  # its recorder never got to close it
            assert container.duration is None
        codec, seconds, indices = video_of(path)
        assert codec == "vp8"
        assert_pattern(indices)
        # Up to the last cluster (1 s) may be lost, no more.
        assert killed - began - 1.5 < seconds <= killed - began + 0.5
        assert abs(fetched["duration"] - seconds) <= 1
        assert fetched["size"] == path.stat().st_size
    finally:
        restarted.stop()


async def test_a_server_stopping_finishes_its_recordings(
    tmp_path: Path, join: Callable[..., Any]
) -> None:
    root = tmp_path / "stopped"
    stopping = ServerProcess(root, video_config=video_config(root)).start()
    try:
        room = create_room(stopping, RecordParticipantsOnConnect="true")
        await join("alice", room["unique_name"], camera(), to=stopping)
        [recording] = await wait_until(lambda: room_recordings(stopping, room["sid"]))
        await wait_until(
            lambda: rest(stopping, "GET", f"Recordings/{recording['sid']}").json()["codec"]
        )
        await asyncio.sleep(2.0)
        await asyncio.to_thread(stopping.stop)  # SIGTERM
    finally:
        stopping.stop(kill=True)

    restarted = ServerProcess(root, video_config=video_config(root)).start()
    try:
        fetched = rest(restarted, "GET", f"Recordings/{recording['sid']}").json()
        assert fetched["status"] == "completed" and fetched["duration"] >= 2
        path = download(restarted, fetched, tmp_path)
        with av.open(str(path)) as container:  # closed by its recorder: duration and cues
            assert container.duration is not None and container.duration >= 1.8e6
        codec, seconds, indices = video_of(path)
        assert codec == "vp8" and seconds >= 1.8
        assert_pattern(indices)
    finally:
        restarted.stop()
