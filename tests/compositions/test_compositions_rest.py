"""Compositions in a real server: a recorded room of real Python participants composed into
one mp4 and one webm through Twilio's helper library, status callbacks, a hook that
composes a room when it ends, a bad layout refused, and a server killed mid-composition.

Alice (red, a 440 Hz tone) joins first and leaves early; Bob (blue, 880 Hz) joins late
and leaves last. The composition's clock starts when the room was created.
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
from twilio.base.exceptions import TwilioRestException

import jupyter_video
from jupyter_video._aiortc import use_host_addresses
from jupyter_video.account import Credentials
from jupyter_video.client import LocalAudioTrack, LocalVideoTrack, Room, connect
from jupyter_video.errors import VideoError

from ..client.participants import LOOPBACK, room_name, token
from ..conftest import make_twilio_client
from ..server_process import ServerProcess
from ..test_status_callbacks import Receiver, assert_signed_by
from .test_composer import color_at, decoded, frame_at, tone_level
from .tracks import COLORS

pytestmark = pytest.mark.timeout(150)

WAIT = 30.0


def video_config(root: Path) -> dict[str, Any]:
    return {
        "ice_host_addresses": LOOPBACK,
        "media_workers": 1,
        "session_timeout": 2.0,
        "recordings_dir": str(root / "recordings"),
        "compositions_dir": str(root / "compositions"),
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
    root = tmp_path_factory.mktemp("compositions")
    process = ServerProcess(root, video_config=video_config(root)).start()
    yield process
    process.stop()


@pytest.fixture
async def join() -> AsyncIterator[Callable[..., Any]]:
    rooms: list[Room] = []

    async def _join(to: ServerProcess, identity: str, name: str, *tracks: Any) -> Room:
        room = await connect(token(to, identity), name, to.url, tracks=list(tracks),
                             ice_host_addresses=LOOPBACK)
        rooms.append(room)
        return room

    yield _join
    for room in rooms:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(room.disconnect(), 5)


def rest(server: ServerProcess, method: str, path: str, **data: Any) -> requests.Response:
    creds = server.credentials()
    return requests.request(
        method, path if path.startswith("http") else f"{server.url}video/v1/{path}",
        data=data or None if method != "GET" else None,
        params=data or None if method == "GET" else None,
        auth=(creds["api_key_sid"], creds["api_key_secret"]), timeout=10,
    )  # fmt: skip


def camera(color: str, name: str) -> LocalVideoTrack:
    picture = np.empty((240, 320, 3), np.uint8)
    picture[...] = COLORS[color]
    return LocalVideoTrack.from_frames(itertools.repeat(picture), fps=30, name=name)


def voice(frequency: float, name: str, seconds: float = 30) -> LocalAudioTrack:
    t = np.arange(int(48000 * seconds)) / 48000
    return LocalAudioTrack.from_array((np.sin(2 * np.pi * frequency * t) * 12000)
                                      .astype(np.int16), name=name)


async def wait_until(check: Callable[[], Any], timeout: float = WAIT) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = await asyncio.to_thread(check)
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout}s: {check}")
        await asyncio.sleep(0.1)


def recorded_room(server: ServerProcess) -> dict[str, Any]:
    response = rest(server, "POST", "Rooms", UniqueName=room_name(),
                    RecordParticipantsOnConnect="true")
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


async def wait_recording(server: ServerProcess, room_sid: str, count: int) -> None:
    """``count`` recordings of the room have media (their offset is known)."""
    await wait_until(lambda: sum(r["offset"] is not None for r in rest(
        server, "GET", f"Rooms/{room_sid}/Recordings").json()["recordings"]) >= count)


def end_room(server: ServerProcess, room_sid: str) -> None:
    response = rest(server, "POST", f"Rooms/{room_sid}", Status="completed")
    assert response.status_code == 200, response.text


def finished(server: ServerProcess, sid: str) -> dict[str, Any] | None:
    body = rest(server, "GET", f"Compositions/{sid}").json()
    return body if body["status"] in ("completed", "failed") else None


def download(server: ServerProcess, composition: dict[str, Any], directory: Path) -> Path:
    response = rest(server, "GET", composition["links"]["media"])  # follows Twilio's redirect
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == f"video/{composition['format']}"
    path = directory / f"{composition['sid']}.{composition['format']}"
    path.write_bytes(response.content)
    return path


# ----------------------------------------------------------------------- tests


async def test_a_recorded_lecture_becomes_one_mp4_and_one_webm_through_twilios_library(
    server: ServerProcess, receiver: Receiver, join: Callable[..., Any], tmp_path: Path
) -> None:
    created = time.time()
    room = recorded_room(server)
    name = room["unique_name"]
    moments: dict[str, float] = {}
    await asyncio.sleep(1.0)  # an empty room at first: the composition starts silent, black
    alice = await join(server, "alice", name, camera("red", "alice-cam"),
                       voice(440, "alice-mic"))
    moments["alice joined"] = time.time() - created
    await wait_recording(server, room["sid"], 2)
    await asyncio.sleep(1.5)
    bob = await join(server, "bob", name, camera("blue", "bob-cam"), voice(880, "bob-mic"))
    moments["bob joined"] = time.time() - created
    await wait_recording(server, room["sid"], 4)
    await asyncio.sleep(1.5)
    await alice.disconnect()
    moments["alice left"] = time.time() - created
    await asyncio.sleep(2.0)
    await bob.disconnect()
    moments["bob left"] = time.time() - created
    await asyncio.sleep(1.5)  # the room stays open a while with nobody in it
    end_room(server, room["sid"])
    room_seconds = time.time() - created

    twilio = make_twilio_client(server)
    callback = receiver.url("ok")
    side_by_side = {"alice": {"x_pos": 0, "y_pos": 0, "width": 160, "height": 240,
                              "video_sources": ["alice-*"]},
                    "bob": {"x_pos": 160, "width": 160, "video_sources": ["bob-cam"]}}
    mp4 = await asyncio.to_thread(
        twilio.video.v1.compositions.create, room_sid=room["sid"], video_layout=side_by_side,
        audio_sources=["*"], resolution="320x240", format="mp4", trim=False,
        status_callback=callback,
    )  # fmt: skip
    webm = await asyncio.to_thread(
        twilio.video.v1.compositions.create, room_sid=room["sid"],
        video_layout={"grid": {"video_sources": ["*"]}}, audio_sources=["*mic"],
        audio_sources_excluded=["bob*"], resolution="320x240", format="webm",
    )  # fmt: skip
    assert (mp4.status, mp4.format, mp4.trim, mp4.resolution) == ("enqueued", "mp4", False,
                                                                 "320x240")
    assert mp4.sid.startswith("CJ") and len(mp4.sid) == 34 and mp4.room_sid == room["sid"]
    assert mp4.video_layout == side_by_side and mp4.audio_sources == ["*"]
    for sid in (mp4.sid, webm.sid):
        await wait_until(lambda sid=sid: finished(server, sid), timeout=60)

    fetched = await asyncio.to_thread(twilio.video.v1.compositions(mp4.sid).fetch)
    assert fetched.status == "completed" and fetched.size > 0 and fetched.bitrate > 0
    listed = await asyncio.to_thread(twilio.video.v1.compositions.list, room_sid=room["sid"])
    assert {c.sid for c in listed} == {mp4.sid, webm.sid}
    assert len(await asyncio.to_thread(twilio.video.v1.compositions.list, status="completed",
                                       room_sid=room["sid"], page_size=1)) == 2  # paging
    assert fetched.links["media"] == fetched.url + "/Media"
    # Twilio's documented download: the helper's request, which does not follow redirects.
    media = await asyncio.to_thread(twilio.request, "GET", fetched.links["media"])
    assert media.status_code == 302
    assert json.loads(media.text)["redirect_to"].endswith(f"/Media/{mp4.sid}.mp4")

    # The mp4: as long as the room, each pattern in its region while its publisher was there.
    path = download(server, rest(server, "GET", f"Compositions/{mp4.sid}").json(), tmp_path)
    assert path.stat().st_size == fetched.size
    with av.open(str(path)) as container:
        assert [s.codec_context.name for s in container.streams] == ["h264", "aac"]
    duration, frames, samples, rate = decoded(path)
    assert abs(duration - room_seconds) < 0.5, (duration, room_seconds, moments)
    assert abs(fetched.duration - duration) <= 1
    checks = {
        0.1: (None, None),
        moments["alice joined"] + 1.2: ("red", None),
        moments["bob joined"] + 1.2: ("red", "blue"),
        moments["alice left"] + 1.0: (None, "blue"),
        # A recording's clock starts when its first frame lands: its end shows that late.
        moments["bob left"] + 0.8: (None, None),
    }
    for moment, expected in checks.items():
        frame = frame_at(frames, moment)
        assert (color_at(frame, 80, 120), color_at(frame, 240, 120)) == expected, (
            moment, moments)  # fmt: skip
    # Each tone where its publisher was talking, silence before and after.
    for moment, tones in {0.1: set(), moments["alice joined"] + 1.2: {440},
                          moments["bob joined"] + 1.2: {440, 880},
                          moments["alice left"] + 1.0: {880}}.items():
        heard = {f for f in (440, 880)
                 if tone_level(samples, rate, moment, moment + 0.4, f) > 0.02}
        assert heard == tones, (moment, moments)

    # The webm: trimmed to the media (Alice's first frame to Bob's last), Alice's voice only.
    webm_json = rest(server, "GET", f"Compositions/{webm.sid}").json()
    path = download(server, webm_json, tmp_path)
    with av.open(str(path)) as container:
        assert [s.codec_context.name for s in container.streams] == ["vp8", "opus"]
    duration, frames, samples, rate = decoded(path)
    span = moments["bob left"] - moments["alice joined"]
    assert span - 1.5 < duration < span + 0.5, (duration, moments)
    lead = duration - (moments["bob left"] - moments["alice joined"])  # <= 0: first frame late
    both = moments["bob joined"] - moments["alice joined"] + 1.2 + lead
    frame = frame_at(frames, both)  # a grid of two: side by side, letterboxed
    assert (color_at(frame, 80, 120), color_at(frame, 240, 120)) == ("red", "blue")
    assert tone_level(samples, rate, both, both + 0.4, 440) > 0.02
    assert tone_level(samples, rate, both, both + 0.4, 880) < 0.005

    # Status callbacks, Twilio's events in order, signed with the auth token.
    got = await asyncio.to_thread(receiver.wait_for_event, callback, "composition-available")
    events = [r.event for r in got]
    assert events[:2] == ["composition-enqueued", "composition-started"]
    assert events[-1] == "composition-available" and "composition-progress" in events
    progress = [r.params for r in got if r.event == "composition-progress"]
    assert all(0 <= int(p["PercentageDone"]) <= 100 for p in progress)
    assert all(p["CompositionSid"] == mp4.sid and p["RoomSid"] == room["sid"] for p in progress)
    available = got[-1].params
    assert available["MediaUri"] == available["CompositionUri"] + "/Media"
    assert int(available["Size"]) == fetched.size
    assert_signed_by(server.credentials()["auth_token"], got)

    # Deleting removes the media and keeps the record, deleted.
    assert await asyncio.to_thread(twilio.video.v1.compositions(webm.sid).delete) is True
    assert rest(server, "GET", f"Compositions/{webm.sid}").json()["status"] == "deleted"
    assert rest(server, "GET", webm_json["links"]["media"]).status_code == 404


async def test_bad_compositions_are_refused_with_twilios_code_and_one_of_no_track_fails(
    server: ServerProcess, join: Callable[..., Any], receiver: Receiver
) -> None:
    twilio = make_twilio_client(server)
    room = recorded_room(server)
    await join(server, "alice", room["unique_name"], camera("red", "cam"))
    await wait_recording(server, room["sid"], 1)

    def refused(**params: Any) -> TwilioRestException:
        with pytest.raises(TwilioRestException) as raised:
            twilio.video.v1.compositions.create(room_sid=room["sid"], **params)
        return raised.value

    live = await asyncio.to_thread(refused, audio_sources=["*"])
    assert (live.status, live.code) == (400, 20001) and "still in progress" in live.msg
    end_room(server, room["sid"])
    overflow = await asyncio.to_thread(
        refused, video_layout={"main": {"x_pos": 600, "width": 100, "video_sources": ["*"]}})
    assert (overflow.status, overflow.code) == (400, 20001)
    assert "overflows the 640x480 composition" in overflow.msg
    reuse = await asyncio.to_thread(
        refused, video_layout={"main": {"reuse": "sometimes", "video_sources": ["*"]}})
    assert reuse.code == 20001 and "reuse must be one of" in reuse.msg
    nothing = await asyncio.to_thread(refused, video_layout={"main": {}})
    assert nothing.code == 20001 and "Nothing to compose" in nothing.msg
    resolution = await asyncio.to_thread(refused, audio_sources=["*"], resolution="4000x10")
    assert resolution.code == 20001 and "between 16 and 1280" in resolution.msg
    assert rest(server, "POST", "Compositions", RoomSid=room["sid"], AudioSources="*",
                Format="avi").json()["code"] == 20001
    assert rest(server, "GET", "Compositions/CJ" + "0" * 32).status_code == 404

    # A layout that names no recorded track is valid, and its composition fails.
    callback = receiver.url("ok")
    empty = await asyncio.to_thread(
        twilio.video.v1.compositions.create, room_sid=room["sid"], status_callback=callback,
        video_layout={"main": {"video_sources": ["nobody*"]}},
    )  # fmt: skip
    failed = await wait_until(lambda: finished(server, empty.sid))
    assert (failed["status"], failed["size"], failed["date_completed"] is not None) == (
        "failed", None, True)  # fmt: skip
    got = await asyncio.to_thread(receiver.wait_for_event, callback, "composition-failed")
    assert [r.event for r in got] == ["composition-enqueued", "composition-started",
                                      "composition-failed"]
    assert got[-1].params["ErrorCode"] == "53626"
    assert rest(server, "GET", failed["links"]["media"]).status_code == 404


async def test_a_composition_hook_composes_every_room_that_ends(
    server: ServerProcess, join: Callable[..., Any], receiver: Receiver, tmp_path: Path
) -> None:
    twilio = make_twilio_client(server)
    callback = receiver.url("ok")
    hook = await asyncio.to_thread(
        twilio.video.v1.composition_hooks.create, friendly_name="lectures",
        video_layout={"grid": {"video_sources": ["*"]}}, audio_sources=["*"],
        resolution="320x240", format="mp4", status_callback=callback,
    )  # fmt: skip
    off = await asyncio.to_thread(
        twilio.video.v1.composition_hooks.create, friendly_name="off", enabled=False,
        audio_sources=["*"],
    )  # fmt: skip
    try:
        assert hook.sid.startswith("HK") and hook.enabled is True
        enabled = await asyncio.to_thread(twilio.video.v1.composition_hooks.list, enabled=True)
        assert [h.sid for h in enabled] == [hook.sid]
        updated = await asyncio.to_thread(twilio.video.v1.composition_hooks(off.sid).update,
                                          friendly_name="still off", trim=False)
        assert (updated.friendly_name, updated.trim, updated.enabled) == ("still off", False,
                                                                          False)
        with pytest.raises(TwilioRestException) as taken:
            await asyncio.to_thread(twilio.video.v1.composition_hooks.create,
                                    friendly_name="lectures", audio_sources=["*"])
        assert taken.value.code == 20001

        room = recorded_room(server)
        alice = await join(server, "alice", room["unique_name"], camera("green", "cam"),
                           voice(440, "mic"))
        await wait_recording(server, room["sid"], 2)
        await asyncio.sleep(1.5)
        await alice.disconnect()
        end_room(server, room["sid"])
        got = await asyncio.to_thread(receiver.wait_for_event, callback,
                                      "composition-available", 60)
        [composition] = rest(server, "GET", "Compositions",
                             RoomSid=room["sid"]).json()["compositions"]
        assert got[-1].params["CompositionSid"] == composition["sid"]
        assert composition["status"] == "completed" and composition["format"] == "mp4"
        duration, frames, samples, rate = decoded(download(server, composition, tmp_path))
        assert 1.0 < duration < 3.0
        assert color_at(frame_at(frames, duration / 2), 160, 120) == "green"
        assert tone_level(samples, rate, duration / 2, duration / 2 + 0.3, 440) > 0.02
    finally:
        for sid in (hook.sid, off.sid):
            await asyncio.to_thread(twilio.video.v1.composition_hooks(sid).delete)
    assert rest(server, "GET", f"CompositionHooks/{hook.sid}").status_code == 404


async def test_storage_settings_are_local_and_refuse_s3(server: ServerProcess) -> None:
    twilio = make_twilio_client(server)
    settings = await asyncio.to_thread(twilio.video.v1.composition_settings().create,
                                       friendly_name="lab")
    assert (settings.friendly_name, settings.aws_storage_enabled) == ("lab", False)
    fetched = await asyncio.to_thread(twilio.video.v1.composition_settings().fetch)
    assert fetched.friendly_name == "lab"
    with pytest.raises(TwilioRestException) as raised:
        await asyncio.to_thread(twilio.video.v1.recording_settings().create,
                                friendly_name="x", aws_storage_enabled=True)
    assert raised.value.code == 53114 and "own disk" in raised.value.msg


async def test_a_server_killed_mid_composition_retries_it_after_restart(
    tmp_path: Path, join: Callable[..., Any]
) -> None:
    root = tmp_path / "killed"
    crashing = ServerProcess(root, video_config=video_config(root)).start()
    try:
        room = recorded_room(crashing)
        alice = await join(crashing, "alice", room["unique_name"], camera("red", "cam"))
        await wait_recording(crashing, room["sid"], 1)
        await asyncio.sleep(4.0)
        await alice.disconnect()
        end_room(crashing, room["sid"])
        created = rest(crashing, "POST", "Compositions", RoomSid=room["sid"],
                       VideoLayout=json.dumps({"main": {"video_sources": ["*"]}}),
                       Resolution="1280x720", Format="webm")
        assert created.status_code == 201, created.text
        sid = created.json()["sid"]
        await wait_until(lambda: rest(crashing, "GET", f"Compositions/{sid}")
                         .json()["status"] == "processing", timeout=30)
        assert crashing.process is not None
        os.killpg(crashing.process.pid, signal.SIGKILL)  # the server and its composer
        crashing.process.wait(timeout=10)
    finally:
        crashing.stop(kill=True)

    restarted = ServerProcess(root, video_config=video_config(root)).start()
    try:
        done = await wait_until(lambda: finished(restarted, sid), timeout=60)
        assert done["status"] == "completed", done
        path = download(restarted, done, tmp_path)
        duration, frames, _, _ = decoded(path)
        assert 3.5 < duration < 6.0
        assert color_at(frame_at(frames, duration / 2), 640, 360) == "red"
        assert not list((root / "compositions").rglob("*.part"))  # nothing half-written left
    finally:
        restarted.stop()


async def test_compose_in_a_kernel_shows_progress_and_returns_a_playable_file(
    server: ServerProcess, join: Callable[..., Any], tmp_path: Path,
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    room = recorded_room(server)
    alice = await join(server, "alice", room["unique_name"], camera("yellow", "cam"),
                       voice(440, "mic"))
    await wait_recording(server, room["sid"], 2)
    await asyncio.sleep(2.0)
    await alice.disconnect()
    end_room(server, room["sid"])
    creds = server.credentials()
    kernel = Credentials(creds["account_sid"], creds["auth_token"], creds["api_key_sid"],
                         creds["api_key_secret"], url=server.url)
    with pytest.raises(VideoError, match="layout must be"):
        jupyter_video.compose(room["unique_name"], layout="mosaic", credentials=kernel)
    video = await asyncio.to_thread(jupyter_video.compose, room["unique_name"], format="mp4",
                                    resolution="320x240", directory=tmp_path,
                                    credentials=kernel)
    assert video.path.parent == tmp_path and video.path.suffix == ".mp4"
    assert video.size == video.path.stat().st_size
    err = capsys.readouterr().err
    assert f"composing {video.sid}: 100%" in err, err
    duration, frames, samples, rate = decoded(video.path)
    assert 1.5 < duration < 3.5
    assert color_at(frame_at(frames, duration / 2), 160, 120) == "yellow"
    assert tone_level(samples, rate, duration / 2, duration / 2 + 0.3, 440) > 0.02
    html = video._repr_html_()  # outside the notebook's folder: embedded
    assert html.startswith("<video") and "data:video/mp4;base64," in html
    monkeypatch.chdir(tmp_path.parent)  # inside it: played from where Jupyter serves it
    assert video._repr_html_() == (f'<video src="{tmp_path.name}/{video.path.name}" controls '
                      'style="max-width: 100%"></video>')
