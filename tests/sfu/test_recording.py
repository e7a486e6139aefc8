"""The media plane records a publication's encoded frames into Matroska, in-process and in
a worker: no decode, no re-encode, RTP time kept (pauses are gaps), playable files."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import av
import numpy as np
import pytest

from jupyter_video.sfu.interface import (
    MediaPlane,
    RecordingEnded,
    RecordingStarted,
    RecordingSummary,
)
from jupyter_video.sfu.recording import h264_sps_size

from .peers import HEIGHT, WIDTH, PatternTrack, ToneTrack, pattern_error, read_index, wait_for_event

pytestmark = pytest.mark.timeout(60)

MAX_PATTERN_ERROR = 8.0


async def record(plane: MediaPlane, publisher_sid: str, track_sid: str, path: Path,
                 seconds: float, recording_sid: str = "RT" + "1" * 32,
                 ) -> tuple[RecordingSummary, float]:
    """Record ``seconds`` from the first recorded frame; the summary and the time recorded."""
    await plane.start_recording(publisher_sid, track_sid, recording_sid, str(path))
    started = await wait_for_event(
        plane, lambda e: isinstance(e, RecordingStarted) and e.recording_sid == recording_sid
    )
    began = time.monotonic()
    await asyncio.sleep(seconds)
    summary = await plane.stop_recording(recording_sid)
    elapsed = time.monotonic() - began
    assert summary is not None and summary.error is None
    assert isinstance(started, RecordingStarted) and started.codec == summary.codec
    return summary, elapsed


def first_channel(frame: av.AudioFrame) -> np.ndarray:
    samples = frame.to_ndarray()
    if frame.format.is_planar:
        return samples[0]
    return samples.reshape(-1)[:: len(frame.layout.channels)]


def decoded_video(path: Path) -> tuple[str, list[np.ndarray], list[float]]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [(f.to_ndarray(format="rgb24"), float(f.time)) for f in container.decode(stream)]
        return stream.codec_context.name, [f for f, _ in frames], [t for _, t in frames]


async def test_video_is_recorded_frame_for_frame_with_its_own_codec(
    plane: MediaPlane, clients, tmp_path: Path
) -> None:
    publisher = clients(1)
    await publisher.join()
    [track_sid] = await publisher.publish(PatternTrack())
    path = tmp_path / "video.mkv"

    summary, elapsed = await record(plane, publisher.sid, track_sid, path, 2.0)

    assert summary.codec == "vp8" and summary.size == path.stat().st_size > 0
    assert abs(summary.duration - elapsed) < 0.5
    codec, images, times = decoded_video(path)
    assert codec == "vp8" and images[0].shape == (HEIGHT, WIDTH, 3)
    assert times[0] == 0.0 and abs(times[-1] - elapsed) < 0.5
    assert all(pattern_error(image) < MAX_PATTERN_ERROR for image in images)
    indices = [read_index(image) for image in images]
    assert indices == [(indices[0] + i) % 256 for i in range(len(indices))]
    [stats] = await plane.stats()
    assert stats.recordings == 0


async def test_h264_is_recorded_without_transcoding(
    plane: MediaPlane, clients, tmp_path: Path
) -> None:
    publisher = clients(1)
    await publisher.join()
    [track_sid] = await publisher.publish(PatternTrack(), codec="video/H264")
    path = tmp_path / "video.mkv"

    summary, _ = await record(plane, publisher.sid, track_sid, path, 1.5)

    codec, images, _ = decoded_video(path)
    assert summary.codec == codec == "h264"
    assert images[0].shape == (HEIGHT, WIDTH, 3)
    assert all(pattern_error(image) < MAX_PATTERN_ERROR for image in images)


async def test_opus_audio_is_recorded_into_matroska_audio(
    plane: MediaPlane, clients, tmp_path: Path
) -> None:
    publisher = clients(1)
    await publisher.join()
    [track_sid] = await publisher.publish(ToneTrack(440.0))
    path = tmp_path / "audio.mka"

    summary, elapsed = await record(plane, publisher.sid, track_sid, path, 1.5)

    assert summary.codec == "opus" and abs(summary.duration - elapsed) < 0.5
    with av.open(str(path)) as container:
        assert container.format.name == "matroska,webm"
        stream = container.streams.audio[0]
        assert stream.codec_context.name == "opus"
        frames = list(container.decode(stream))
    audio = np.concatenate([first_channel(f) for f in frames[10:]])
    spectrum = np.abs(np.fft.rfft(audio.astype(np.float64)))
    peak = np.fft.rfftfreq(len(audio), 1 / frames[0].sample_rate)[int(np.argmax(spectrum))]
    assert abs(peak - 440.0) < 5.0


async def test_a_paused_track_leaves_a_gap_in_time_not_a_jump(
    plane: MediaPlane, clients, tmp_path: Path
) -> None:
    publisher = clients(1)
    await publisher.join()
    [track_sid] = await publisher.publish(PatternTrack())
    path = tmp_path / "paused.mkv"
    recording_sid = "RT" + "2" * 32
    await plane.start_recording(publisher.sid, track_sid, recording_sid, str(path))
    await wait_for_event(plane, lambda e: isinstance(e, RecordingStarted))
    began = time.monotonic()
    await asyncio.sleep(1.0)
    await plane.set_enabled(publisher.sid, track_sid, False)
    await asyncio.sleep(1.5)
    await plane.set_enabled(publisher.sid, track_sid, True)
    await asyncio.sleep(1.0)
    summary = await plane.stop_recording(recording_sid)
    elapsed = time.monotonic() - began

    assert summary is not None and abs(summary.duration - elapsed) < 0.5
    _, images, times = decoded_video(path)
    gaps = np.diff(times)
    assert gaps.max() > 1.2  # the pause
    assert abs(times[-1] - elapsed) < 0.5  # not squeezed out
    assert all(pattern_error(image) < MAX_PATTERN_ERROR for image in images)


async def test_a_recording_ends_with_its_publication(
    plane: MediaPlane, clients, tmp_path: Path
) -> None:
    publisher = clients(1)
    await publisher.join()
    [track_sid] = await publisher.publish(PatternTrack())
    path = tmp_path / "ended.mkv"
    recording_sid = "RT" + "3" * 32
    await plane.start_recording(publisher.sid, track_sid, recording_sid, str(path))
    await wait_for_event(plane, lambda e: isinstance(e, RecordingStarted))
    await asyncio.sleep(1.0)

    await plane.unpublish(publisher.sid, track_sid)

    ended = await wait_for_event(plane, lambda e: isinstance(e, RecordingEnded))
    assert isinstance(ended, RecordingEnded)
    assert ended.recording_sid == recording_sid and ended.error is None
    assert ended.duration > 0.5 and ended.size == path.stat().st_size
    assert await plane.stop_recording(recording_sid) is None
    assert decoded_video(path)[1]


async def test_a_recording_starts_with_the_frames_published_when_it_was_started(
    plane: MediaPlane, clients, tmp_path: Path
) -> None:
    # Not only the frames after the keyframe a PLI brings, which come after the
    # recording began (~1.2 s after, with aiortc's receivers): from the ring's last
    # keyframe, frames published before it, so the moment it began is in the file.
    publisher = clients(1)
    await publisher.join()
    source = PatternTrack()
    [track_sid] = await publisher.publish(source)
    # Past the keyframes of the start (the first one; aiortc's encoder starts anew
    # once, at the first REMB): the ring's last keyframe is a second or more back.
    while source.index < 75:
        await asyncio.sleep(0.05)
    published_at_start = source.index
    path = tmp_path / "from_the_start.mkv"
    await record(plane, publisher.sid, track_sid, path, 1.0)
    _, frames, _ = decoded_video(path)
    indices = [read_index(frame) for frame in frames]
    assert indices[0] <= published_at_start - 5
    assert indices == list(range(indices[0], indices[0] + len(indices)))


def test_h264_frame_size_is_read_from_the_sequence_parameter_set() -> None:
    # An SPS of libx264 for 320x176 (cropped from 11 x 12 macroblocks, 4:2:0, High).
    encoder = av.CodecContext.create("libx264", "w")
    encoder.width, encoder.height, encoder.pix_fmt = 320, 174, "yuv420p"
    encoder.open()
    frame = av.VideoFrame(320, 174, "yuv420p")
    frame.pts = 0
    data = b"".join(bytes(p) for p in [*encoder.encode(frame), *encoder.encode(None)])
    sps = next(n for n in data.split(b"\x00\x00\x01") if n and n[0] & 0x1F == 7)
    assert h264_sps_size(sps) == (320, 174)
