"""The composer on track recordings made with PyAV: layout in space and time, letterboxing,
audio aligned at its offsets, both output formats, and the composer process pool."""

from __future__ import annotations

import asyncio
from pathlib import Path

import av
import numpy as np
import pytest

from jupyter_video.compositions import ComposerPool, CompositionError, Job, compose
from jupyter_video.compositions.layout import parse_layout
from jupyter_video.errors import VideoError

from .tracks import COLORS, tone_track, video_track

pytestmark = pytest.mark.timeout(60)


def decoded(path: Path) -> tuple[float, list[tuple[float, np.ndarray]], np.ndarray, int]:
    """Duration, (time, RGB) of every video frame, mono audio samples and their rate."""
    with av.open(str(path)) as container:
        duration = float(container.duration or 0) / 1e6
        frames = [(float(f.time), f.to_ndarray(format="rgb24"))
                  for f in container.decode(video=0)] if container.streams.video else []
    with av.open(str(path)) as container:
        audio = [f for f in container.decode(audio=0)] if container.streams.audio else []
    samples = np.concatenate([f.to_ndarray()[0] for f in audio]) if audio else np.zeros(0)
    return duration, frames, samples, audio[0].sample_rate if audio else 0


def color_at(frame: np.ndarray, x: int, y: int) -> str | None:
    """Which test color the 9x9 block around (x, y) shows (None: black or mixed)."""
    block = frame[y - 4:y + 5, x - 4:x + 5].reshape(-1, 3).astype(float)
    if block.std(axis=0).max() > 12:
        return None
    mean = block.mean(axis=0)
    name, rgb = min(COLORS.items(), key=lambda item: np.abs(mean - item[1]).sum())
    return name if np.abs(mean - rgb).max() < 40 else None


def frame_at(frames: list[tuple[float, np.ndarray]], moment: float) -> np.ndarray:
    return min(frames, key=lambda item: abs(item[0] - moment))[1]


def tone_level(samples: np.ndarray, rate: int, start: float, end: float, frequency: float) -> float:
    """Amplitude of ``frequency`` in [start, end) seconds of ``samples``."""
    window = samples[int(start * rate):int(end * rate)].astype(np.float64)
    spectrum = np.abs(np.fft.rfft(window * np.hanning(len(window))))
    freqs = np.fft.rfftfreq(len(window), 1 / rate)
    return float(spectrum[np.abs(freqs - frequency) < 15].max() / len(window))


@pytest.mark.parametrize("fmt, codecs", [("mp4", ("h264", "aac")), ("webm", ("vp8", "opus"))])
def test_two_regions_show_each_source_where_and_when_it_was_live(
    tmp_path: Path, fmt: str, codecs: tuple[str, str]
) -> None:
    tracks = [video_track(tmp_path / "a.mkv", "red", 3.0, 0.5),
              video_track(tmp_path / "b.mkv", "blue", 3.0, 2.0, size=(120, 160)),
              tone_track(tmp_path / "a.mka", 440, 3.0, 0.5),
              tone_track(tmp_path / "b.mka", 880, 3.0, 2.0)]
    layout = {"left": {"x_pos": 0, "y_pos": 0, "width": 160, "height": 240,
                       "video_sources": ["red"]},
              "right": {"x_pos": 160, "width": 160, "video_sources": ["*"],
                        "video_sources_excluded": ["red"]}}
    job = Job(str(tmp_path / f"out.{fmt}"), fmt, 320, 240, layout, ["tone*"], [], False,
              6.0, tracks)
    result = compose(job)
    assert abs(result.duration - 6.0) < 0.1
    with av.open(job.output) as container:
        assert (container.streams.video[0].codec_context.name,
                container.streams.audio[0].codec_context.name) == codecs
    duration, frames, samples, rate = decoded(Path(job.output))
    assert abs(duration - 6.0) < 0.5 and abs(len(frames) / 15 - 6.0) < 0.2
    # red (4:3) letterboxed in a 160x240 region: 160x120 in the middle; blue (3:4) fills
    # 160x213 of its 160x240 region.
    for moment, left, right in [(0.2, None, None), (1.0, "red", None), (2.8, "red", "blue"),
                                (4.5, None, "blue"), (5.5, None, None)]:
        frame = frame_at(frames, moment)
        assert (color_at(frame, 80, 120), color_at(frame, 240, 120)) == (left, right), moment
    early = frame_at(frames, 1.0)
    assert color_at(early, 80, 40) is None  # the letterbox above red stays black
    assert early[20, 80].max() < 30
    # audio: each tone while its track was live, silence before, after and between
    assert rate == 48000 and abs(len(samples) / rate - 6.0) < 0.1
    levels = {(start, freq): tone_level(samples, rate, start, start + 0.4, freq)
              for start in (0.0, 1.0, 2.5, 4.0, 5.6) for freq in (440, 880)}
    loud = {key for key, level in levels.items() if level > 0.02}
    assert loud == {(1.0, 440), (2.5, 440), (2.5, 880), (4.0, 880)}, levels


def test_trim_cuts_the_stretches_where_nothing_was_recorded(tmp_path: Path) -> None:
    tracks = [video_track(tmp_path / "a.mkv", "red", 1.0, 1.0),
              video_track(tmp_path / "b.mkv", "green", 1.0, 4.0)]
    job = Job(str(tmp_path / "out.mp4"), "mp4", 160, 120, {"main": {"video_sources": ["*"]}},
              [], [], True, 10.0, tracks)
    result = compose(job)
    duration, frames, samples, _ = decoded(Path(job.output))
    assert abs(result.duration - 2.0) < 0.1 and abs(duration - 2.0) < 0.3
    assert len(samples) == 0  # no audio sources: a video-only file
    assert color_at(frame_at(frames, 0.5), 80, 60) == "red"
    assert color_at(frame_at(frames, 1.5), 80, 60) == "green"


def test_a_show_newest_grid_with_more_sources_than_cells_shows_the_latest(
    tmp_path: Path,
) -> None:
    # red from 0, green from 1, blue from 2, all until 4; two cells side by side.
    tracks = [video_track(tmp_path / f"{color}.mkv", color, 4.0 - start, start)
              for start, color in enumerate(("red", "green", "blue"))]
    grid = {"video_sources": ["*"], "max_columns": 2, "max_rows": 1}
    cases = {"show_newest": {0.5: ("red",), 1.5: ("red", "green"), 2.5: ("green", "blue")},
             "show_oldest": {0.5: ("red",), 1.5: ("red", "green"), 2.5: ("red", "green")}}
    for reuse, expected in cases.items():
        job = Job(str(tmp_path / f"{reuse}.mp4"), "mp4", 320, 120,
                  {"grid": {**grid, "reuse": reuse}}, [], [], True, 4.0, tracks)
        compose(job)
        _, frames, _, _ = decoded(Path(job.output))
        for moment, colors in expected.items():
            frame = frame_at(frames, moment)
            if len(colors) == 1:  # one source: the whole region
                assert color_at(frame, 160, 60) == colors[0], (reuse, moment)
            else:
                assert (color_at(frame, 80, 60), color_at(frame, 240, 60)) == colors, (
                    reuse, moment)


def test_reuse_none_keeps_each_source_in_its_own_cell_and_cells_excluded_stay_empty(
    tmp_path: Path,
) -> None:
    tracks = [video_track(tmp_path / "red.mkv", "red", 1.0, 0.0),
              video_track(tmp_path / "green.mkv", "green", 1.0, 1.0)]
    layout = {"grid": {"video_sources": ["*"], "reuse": "none", "max_rows": 1,
                       "cells_excluded": [0]}}
    job = Job(str(tmp_path / "out.mp4"), "mp4", 480, 120, layout, [], [], True, 2.0, tracks)
    compose(job)
    _, frames, _, _ = decoded(Path(job.output))
    # Three columns (cell 0 excluded): red in cell 1, green in cell 2, even once red ended.
    first, second = frame_at(frames, 0.5), frame_at(frames, 1.5)
    assert [color_at(first, x, 60) for x in (80, 240, 400)] == [None, "red", None]
    assert [color_at(second, x, 60) for x in (80, 240, 400)] == [None, None, "green"]


def test_z_pos_draws_the_higher_region_on_top(tmp_path: Path) -> None:
    tracks = [video_track(tmp_path / "red.mkv", "red", 1.0, 0.0),
              video_track(tmp_path / "white.mkv", "white", 1.0, 0.0)]
    layout = {"pip": {"x_pos": 200, "y_pos": 120, "width": 96, "height": 72, "z_pos": 2,
                      "video_sources": ["white"]},
              "main": {"z_pos": 1, "video_sources": ["red"]}}
    job = Job(str(tmp_path / "out.webm"), "webm", 320, 240, layout, [], [], True, 1.0, tracks)
    compose(job)
    _, frames, _, _ = decoded(Path(job.output))
    frame = frame_at(frames, 0.5)
    assert (color_at(frame, 100, 100), color_at(frame, 248, 156)) == ("red", "white")


def test_nothing_to_compose_is_an_error_that_says_so(tmp_path: Path) -> None:
    tracks = [video_track(tmp_path / "red.mkv", "red", 1.0, 0.0)]
    job = Job(str(tmp_path / "out.mp4"), "mp4", 320, 240, {"main": {"video_sources": ["x*"]}},
              [], [], True, 1.0, tracks)
    with pytest.raises(CompositionError, match="no recording"):
        compose(job)


@pytest.mark.parametrize("layout, message", [
    ([], "JSON object of regions"),
    ({"a": {"x_pos": 400}}, "x_pos is 400"),
    ({"a": {"width": 200, "x_pos": 200}}, "overflows"),
    ({"a": {"z_pos": 100}}, "z_pos is 100"),
    ({"a": {"reuse": "always"}}, "reuse must be one of"),
    ({"a": {"colour": "red"}}, "unknown properties colour"),
    ({"a": {"max_columns": 1, "max_rows": 1, "cells_excluded": [0]}}, "leaves no cell"),
    ({"a": {"video_sources": "*", "max_rows": 0}}, "max_rows is 0"),
])
def test_a_bad_layout_is_refused_with_what_to_fix(layout: object, message: str) -> None:
    with pytest.raises(VideoError, match=message) as raised:
        parse_layout(layout, 320, 240)
    assert (raised.value.code, raised.value.status) == (20001, 400)


async def test_the_pool_runs_compositions_in_child_processes_with_progress(tmp_path: Path) -> None:
    tracks = [video_track(tmp_path / "red.mkv", "red", 4.0, 0.0, size=(640, 480))]
    jobs = [Job(str(tmp_path / f"out{i}.webm"), "webm", 640, 480, {"m": {"video_sources": ["*"]}},
                [], [], True, 4.0, tracks) for i in range(2)]
    pool = ComposerPool(concurrency=1)
    progress: list[list[float]] = [[], []]
    results = await asyncio.gather(*(pool.run(job, progress[i].append)
                                      for i, job in enumerate(jobs)))
    assert [round(r.duration) for r in results] == [4, 4]
    for job, result in zip(jobs, results, strict=True):
        assert Path(job.output).stat().st_size == result.size
    assert all(p and p[0] == 0 and p == sorted(p) and all(0 <= x < 1 for x in p)
               for p in progress), progress
    broken = Job(str(tmp_path / "bad.mp4"), "mp4", 320, 240, {"m": {"video_sources": ["*"]}},
                 [], [], True, 1.0, [])
    with pytest.raises(CompositionError, match="no recording"):
        await pool.run(broken)
