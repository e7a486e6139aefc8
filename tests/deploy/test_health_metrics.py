"""``/video/healthz`` and ``/video/metrics`` of the standalone server, and the media
plane's counters behind them."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from jupyter_video.client import LocalVideoTrack, RemoteVideoTrack, RoomEvent, connect

from ..widgets.browser import first_track, moving_frames, room_name, take_frames, token
from .standalone import StandaloneProcess

pytestmark = pytest.mark.timeout(90)

LOOPBACK = ["127.0.0.1"]


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StandaloneProcess]:
    process = StandaloneProcess(
        tmp_path_factory.mktemp("health"),
        video_config={"media_workers": 2, "ice_host_addresses": LOOPBACK, "metrics_public": True},
    ).start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def standalone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StandaloneProcess]:
    process = StandaloneProcess(
        tmp_path_factory.mktemp("metrics"),
        video_config={"media_workers": 1, "ice_host_addresses": LOOPBACK},
    ).start()
    yield process
    process.stop()


def healthz(server: StandaloneProcess) -> requests.Response:
    return requests.get(f"{server.url}video/healthz", timeout=10)  # no credentials


def scrape(server: StandaloneProcess, **kwargs: Any) -> dict[str, float]:
    """``/video/metrics`` as {'name{label="value"}': value}."""
    response = requests.get(f"{server.url}video/metrics", timeout=10, **kwargs)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/plain; version=")
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return samples


def api_key(server: StandaloneProcess) -> tuple[str, str]:
    creds = server.credentials()
    return creds["api_key_sid"], creds["api_key_secret"]


def test_healthz_answers_200_without_credentials_while_every_worker_runs(
    two_workers: StandaloneProcess,
) -> None:
    response = healthz(two_workers)
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert [(w["worker"], w["alive"]) for w in body["workers"]] == [(0, True), (1, True)]
    assert all(isinstance(w["pid"], int) and w["pid"] > 0 for w in body["workers"])


def test_healthz_answers_503_while_a_killed_media_worker_restarts(
    two_workers: StandaloneProcess,
) -> None:
    workers = healthz(two_workers).json()["workers"]
    victim = workers[1]["pid"]
    os.kill(victim, signal.SIGKILL)  # a worker of the server this test started
    deadline = time.monotonic() + 5
    down = None
    while time.monotonic() < deadline:
        response = healthz(two_workers)
        if response.status_code == 503:
            down = response.json()
            break
        time.sleep(0.02)
    assert down is not None, "healthz never reported the killed worker"
    # Seen as exited, or (a few ms earlier) as not answering because it exited.
    assert down["status"] == "unavailable" and "media worker 1" in down["problem"].lower()
    assert [w["worker"] for w in down["workers"] if not w["alive"]] in ([], [1])
    # The media plane starts a fresh process: healthy again, with another pid.
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and healthz(two_workers).status_code != 200:
        time.sleep(0.1)
    back = healthz(two_workers).json()
    assert back["status"] == "ok" and back["workers"][1]["pid"] != victim


def test_metrics_are_open_with_metrics_public(two_workers: StandaloneProcess) -> None:
    samples = scrape(two_workers)
    assert samples['jupyter_video_media_worker_up{worker="0"}'] == 1


def test_metrics_need_rest_credentials_by_default(standalone: StandaloneProcess) -> None:
    response = requests.get(f"{standalone.url}video/metrics", timeout=10)
    assert response.status_code == 401
    assert response.json()["code"] == 20003
    wrong = requests.get(f"{standalone.url}video/metrics", auth=(api_key(standalone)[0], "no"),
                         timeout=10)
    assert wrong.status_code == 401


async def test_metrics_count_rooms_participants_tracks_and_forwarded_media(
    standalone: StandaloneProcess,
) -> None:
    auth = api_key(standalone)
    before = await asyncio.to_thread(scrape, standalone, auth=auth)
    assert before['jupyter_video_rooms{type="group"}'] == 0
    room = room_name()
    publisher = await connect(token(standalone, "publisher"), room, standalone.url,
                              tracks=[LocalVideoTrack.from_frames(moving_frames())],
                              ice_host_addresses=LOOPBACK)
    viewer = await connect(token(standalone, "viewer"), room, standalone.url,
                           ice_host_addresses=LOOPBACK)
    try:
        tracks: list[RemoteVideoTrack] = []

        def on_subscribed(event: RoomEvent) -> None:
            if isinstance(event.track, RemoteVideoTrack):
                tracks.append(event.track)

        viewer.on("track_subscribed", on_subscribed)
        frames = await asyncio.wait_for(
            take_frames(await first_track(tracks, "the publisher's video"), 20), 30)
        assert not np.array_equal(frames[0], frames[-1])
        during = await asyncio.to_thread(scrape, standalone, auth=auth)
    finally:
        await publisher.disconnect()
        await viewer.disconnect()

    assert during['jupyter_video_rooms{type="group"}'] == 1
    assert during["jupyter_video_participants"] == 2
    assert during['jupyter_video_published_tracks{kind="video"}'] == 1
    assert during['jupyter_video_subscribed_tracks{kind="video"}'] == 1
    assert during['jupyter_video_published_tracks{kind="audio"}'] == 0
    # At least the 20 frames the viewer decoded went out, one packet or more each.
    forwarded = during["jupyter_video_packets_forwarded_total"]
    assert forwarded - before["jupyter_video_packets_forwarded_total"] >= 20
    assert during["jupyter_video_bytes_forwarded_total"] > forwarded * 10
    # The viewer's first frame was observed once; the publisher subscribes to nothing.
    assert during["jupyter_video_join_to_first_frame_seconds_count"] == 1
    assert 0 < during["jupyter_video_join_to_first_frame_seconds_sum"] < 30
    assert during['jupyter_video_join_to_first_frame_seconds_bucket{le="+Inf"}'] == 1
    assert during["jupyter_video_status_callback_queue_depth"] == 0
    [cpu] = [v for k, v in during.items() if k.startswith("jupyter_video_media_worker_cpu")]
    assert cpu > 0

    # They left: the room is still in progress (empty_room_timeout), with nobody in it.
    deadline = time.monotonic() + 10
    while True:
        after = await asyncio.to_thread(scrape, standalone, auth=auth)
        if after["jupyter_video_participants"] == 0 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    assert after["jupyter_video_participants"] == 0
    assert after['jupyter_video_subscribed_tracks{kind="video"}'] == 0
    assert after['jupyter_video_published_tracks{kind="video"}'] == 0
    assert after["jupyter_video_packets_forwarded_total"] >= forwarded
