"""The composer: a room's track recordings decoded, laid out, mixed and encoded into one file.

Input is the per-track Matroska files the media plane wrote (their timestamps
count from each track's first frame; ``offset`` places that frame on the
composition's clock, which starts when the room did). Video is drawn each
frame from :func:`layout.schedule`'s scenes, each source scaled to fit its cell
(letterboxed); audio is decoded to 48 kHz and summed at each track's offset,
silence where nobody speaks. Output is H.264 + AAC in MP4 or VP8 + Opus in WebM.

With ``trim`` the stretches where no selected source has media are cut
(https://www.twilio.com/docs/video/api/compositions-resource#understanding-trim);
without it the composition lasts as long as the room.

Runs in a process of its own (``python -m jupyter_video.compositions``): decoding
and encoding never share a core's time slice with a live room's event loop.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import av.container
import numpy as np

from . import layout
from .layout import Interval, Rect, Region, SourceName

FRAME_RATE = 15
"""Frames per second of the composed video: a lecture's faces and slides, at a cost
that lets a 2-core machine compose faster than real time."""
SAMPLE_RATE = 48_000
CODECS = {"mp4": ("libx264", "aac"), "webm": ("libvpx", "libopus")}
VIDEO_BITRATE = {"libvpx": 1_000_000}
PROGRESS_EVERY = 0.5  # seconds of compute between progress reports

Progress = Callable[[float], None]


@dataclass(frozen=True)
class TrackFile:
    """One track recording to compose."""

    recording_sid: str
    track_sid: str
    track_name: str
    kind: str  # audio | video
    path: str
    offset: float  # seconds from the composition's origin (the room's start) to its first frame

    @property
    def name(self) -> SourceName:
        return SourceName(self.track_name, self.track_sid, self.recording_sid)


@dataclass(frozen=True)
class Job:
    """Everything the composer needs, as JSON between processes."""

    output: str
    format: str  # mp4 | webm
    width: int
    height: int
    video_layout: dict[str, Any]
    audio_sources: list[str]
    audio_sources_excluded: list[str]
    trim: bool
    room_duration: float  # seconds; the length without trim
    tracks: list[TrackFile] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Job:
        data = json.loads(text)
        data["tracks"] = [TrackFile(**track) for track in data["tracks"]]
        return cls(**data)


@dataclass(frozen=True)
class Result:
    duration: float
    size: int


class CompositionError(Exception):
    """The composition cannot be made from these recordings (says why)."""


# ------------------------------------------------------------------ sources


@dataclass(frozen=True)
class Probe:
    start: float  # composition seconds of the first frame
    end: float  # ... and just after the last
    width: int = 0
    height: int = 0


def probe(track: TrackFile) -> Probe | None:
    """Where a recording's media lies on the composition's clock (demuxed, not decoded)."""
    try:
        with av.open(track.path) as container:
            stream = container.streams[0]
            times = sorted(
                float(packet.pts * packet.time_base)
                for packet in container.demux(stream)
                if packet.pts is not None and packet.time_base is not None
            )
            width = getattr(stream.codec_context, "width", 0) or 0
            height = getattr(stream.codec_context, "height", 0) or 0
    except (OSError, av.FFmpegError, IndexError):
        return None
    if not times:
        return None
    step = times[-1] - times[-2] if len(times) > 1 else 1 / FRAME_RATE
    return Probe(track.offset + times[0], track.offset + times[-1] + step, width, height)


Planes = tuple[np.ndarray, np.ndarray, np.ndarray]
"""A 4:2:0 picture's Y, U and V planes: drawn as they are encoded, no RGB in between."""
BLACK = (16, 128, 128)  # Y, U, V of black in the limited range encoders expect


def planes(packed: np.ndarray, width: int, height: int) -> Planes:
    """Y, U, V of PyAV's packed yuv420p array (the planes one after the other)."""
    flat = packed.reshape(-1)
    luma = width * height
    chroma = luma // 4
    return (
        flat[:luma].reshape(height, width),
        flat[luma : luma + chroma].reshape(height // 2, width // 2),
        flat[luma + chroma : luma + 2 * chroma].reshape(height // 2, width // 2),
    )


class VideoSource:
    """A video recording decoded in order; ``frame_at(t)`` is the frame showing at ``t``."""

    def __init__(self, track: TrackFile, span: Probe) -> None:
        self.track = track
        self.span = span
        self._container = av.open(track.path)
        self._frames = self._container.decode(video=0)
        self._current: av.VideoFrame | None = None
        self._next: av.VideoFrame | None = None
        self._done = False
        self._scaled: tuple[int, Rect, Planes] | None = None  # frame id, size, pixels

    def _time(self, frame: av.VideoFrame) -> float:
        return self.track.offset + float(frame.time or 0.0)

    def frame_at(self, moment: float) -> av.VideoFrame | None:
        while not self._done:
            if self._next is None:
                try:
                    self._next = next(self._frames)
                except (StopIteration, av.FFmpegError):
                    self._done = True
                    break
            if self._time(self._next) > moment:
                break
            self._current, self._next = self._next, None
        return self._current

    def pixels(self, moment: float, cell: Rect) -> tuple[Rect, Planes] | None:
        """The frame at ``moment`` scaled to fit ``cell``: where it goes, and its Y, U, V."""
        frame = self.frame_at(moment)
        if frame is None:
            return None
        box = layout.fit(frame.width, frame.height, cell)
        if self._scaled is None or self._scaled[0] != id(frame) or self._scaled[1] != box:
            scaled = frame.reformat(
                width=box.width, height=box.height, format="yuv420p", interpolation="BILINEAR"
            )
            self._scaled = (id(frame), box, planes(scaled.to_ndarray(), box.width, box.height))
        return box, self._scaled[2]

    def close(self) -> None:
        self._container.close()


class AudioSource:
    """An audio recording decoded to 48 kHz mono, added into the mix at its offset."""

    def __init__(self, track: TrackFile) -> None:
        self.track = track
        self._container = av.open(track.path)
        self._frames = self._decode()
        self._pending: list[tuple[int, np.ndarray]] = []  # (first sample, samples)
        self._reach = -1
        self._done = False

    def _decode(self) -> Iterator[tuple[int, np.ndarray]]:
        resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
        expected: int | None = None
        for frame in self._container.decode(audio=0):
            position = round((self.track.offset + float(frame.time or 0.0)) * SAMPLE_RATE)
            # Keep consecutive frames sample-exact; a real gap (a pause) stays a gap.
            if expected is not None and abs(position - expected) <= 2:
                position = expected
            for out in resampler.resample(frame):
                samples = out.to_ndarray().reshape(-1)
                yield position, samples
                position += len(samples)
            expected = position

    def mix_into(self, out: np.ndarray, first: int) -> None:
        """Add this source's samples for ``[first, first + len(out))`` into ``out``."""
        last = first + len(out)
        while not self._done and self._reach < last:
            try:
                position, samples = next(self._frames)
            except (StopIteration, av.FFmpegError):
                self._done = True
                break
            self._pending.append((position, samples))
            self._reach = position + len(samples)
        keep = []
        for position, samples in self._pending:
            end = position + len(samples)
            low, high = max(position, first), min(end, last)
            if low < high:
                out[low - first : high - first] += samples[low - position : high - position]
            if end > last:
                keep.append((position, samples))
        self._pending = keep

    def close(self) -> None:
        self._container.close()


# ------------------------------------------------------------------ the composer


@dataclass(frozen=True)
class Plan:
    """What the composer draws and mixes, and over which stretches of time."""

    regions: list[Region]
    scenes: list[layout.Scene]
    video: dict[str, TrackFile]
    spans: dict[str, Probe]
    audio: list[TrackFile]
    segments: list[tuple[float, float]]

    @property
    def duration(self) -> float:
        return sum(end - start for start, end in self.segments)


def plan(job: Job) -> Plan:
    """Choose the sources, place them over time, and find the stretches to compose."""
    regions = layout.parse_layout(job.video_layout, job.width, job.height)
    spans = {t.recording_sid: s for t in job.tracks if (s := probe(t)) is not None}
    usable = [t for t in job.tracks if t.recording_sid in spans]
    video = {t.recording_sid: t for t in usable if t.kind == "video"}
    by_region: dict[str, list[Interval]] = {}
    shown: set[str] = set()
    for region in regions:
        chosen = [t for t in video.values() if region.selects(t.name)]
        by_region[region.name] = [_interval(t, spans[t.recording_sid]) for t in chosen]
        shown.update(t.recording_sid for t in chosen)
    audio = [
        t for t in usable if t.kind == "audio"
        and layout.matches_any(job.audio_sources, t.name)
        and not layout.matches_any(job.audio_sources_excluded, t.name)
    ]  # fmt: skip
    if not shown and not audio:
        raise CompositionError(
            "no recording with media matches the VideoLayout's video_sources or the AudioSources"
        )
    active = [spans[key] for key in shown] + [spans[t.recording_sid] for t in audio]
    if job.trim:
        segments = _union([(s.start, s.end) for s in active])
    else:
        segments = [(0.0, max(job.room_duration, max(s.end for s in active)))]
    return Plan(
        regions,
        layout.schedule(regions, by_region),
        {key: video[key] for key in shown},
        spans,
        audio,
        segments,
    )


def _interval(track: TrackFile, span: Probe) -> Interval:
    aspect = span.width / span.height if span.width and span.height else 4 / 3
    return Interval(track.recording_sid, span.start, span.end, aspect)


def _union(spans: list[tuple[float, float]]) -> list[tuple[float, float]]:
    merged: list[tuple[float, float]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def compose(job: Job, progress: Progress | None = None) -> Result:
    """Write the composition ``job`` describes; its duration and size."""
    chosen = plan(job)
    if chosen.duration <= 0:
        raise CompositionError("the selected recordings hold no media to compose")
    Path(job.output).parent.mkdir(parents=True, exist_ok=True)
    partial = job.output + ".part"
    video_codec, audio_codec = CODECS[job.format]
    with av.open(partial, "w", format=job.format) as container:
        video_stream = None
        if chosen.video:
            video_stream = container.add_stream(video_codec, rate=FRAME_RATE)
            video_stream.width, video_stream.height = job.width, job.height
            video_stream.pix_fmt = "yuv420p"
            if video_codec == "libx264":
                video_stream.options = {"preset": "veryfast", "crf": "23"}
            else:  # libvpx: a bitrate target and realtime speed (its default is very slow)
                video_stream.bit_rate = VIDEO_BITRATE[video_codec]
                video_stream.options = {"deadline": "realtime", "cpu-used": "8"}
        audio_stream = None
        if chosen.audio:
            audio_stream = container.add_stream(audio_codec, rate=SAMPLE_RATE)
            audio_stream.layout = "mono"
        _Renderer(job, chosen, container, video_stream, audio_stream, progress).run()
    os.replace(partial, job.output)
    return Result(chosen.duration, os.path.getsize(job.output))


class _Renderer:
    """The loop: frame by frame over the composition's stretches, video drawn and audio mixed."""

    def __init__(
        self,
        job: Job,
        chosen: Plan,
        container: av.container.OutputContainer,
        video_stream: Any,
        audio_stream: Any,
        progress: Progress | None,
    ) -> None:
        self.job, self.plan, self.container = job, chosen, container
        self.video_stream, self.audio_stream = video_stream, audio_stream
        self.progress = progress
        self.videos = {key: VideoSource(t, chosen.spans[key]) for key, t in chosen.video.items()}
        self.audios = [AudioSource(t) for t in chosen.audio]
        self.canvas = np.empty(job.width * job.height * 3 // 2, np.uint8)
        self.planes = planes(self.canvas, job.width, job.height)
        self.frames = 0
        self.samples = 0
        self.fifo = av.AudioFifo() if audio_stream is not None else None
        self._scene = 0
        self._reported = time.monotonic()

    def run(self) -> None:
        total = self.plan.duration
        done = 0.0
        if self.progress is not None:
            self.progress(0.0)  # begun: whoever waits learns at once that it runs
        try:
            for start, end in self.plan.segments:
                count = max(1, round((end - start) * FRAME_RATE))
                first_sample = round(start * SAMPLE_RATE)
                for index in range(count):
                    moment = start + index / FRAME_RATE
                    if self.video_stream is not None:
                        self._draw(moment)
                    if self.audio_stream is not None:
                        low = first_sample + index * SAMPLE_RATE // FRAME_RATE
                        high = first_sample + (index + 1) * SAMPLE_RATE // FRAME_RATE
                        self._mix(low, high)
                    self._report((done + (index + 1) / FRAME_RATE) / total)
                done += count / FRAME_RATE
            self._flush()
        finally:
            for video in self.videos.values():
                video.close()
            for audio in self.audios:
                audio.close()

    def _report(self, fraction: float) -> None:
        now = time.monotonic()
        if self.progress is not None and now - self._reported >= PROGRESS_EVERY:
            self._reported = now
            self.progress(min(fraction, 0.99))

    def _scene_at(self, moment: float) -> layout.Scene | None:
        scenes = self.plan.scenes
        while self._scene + 1 < len(scenes) and scenes[self._scene + 1].start <= moment:
            self._scene += 1
        if not scenes or scenes[self._scene].start > moment:
            return None
        return scenes[self._scene]

    def _draw(self, moment: float) -> None:
        for plane, value in zip(self.planes, BLACK, strict=True):
            plane[...] = value
        scene = self._scene_at(moment)
        for placement in scene.placements if scene is not None else ():
            drawn = self.videos[placement.key].pixels(moment, placement.cell)
            if drawn is None:
                continue
            box, pictures = drawn
            for index, (plane, picture) in enumerate(zip(self.planes, pictures, strict=True)):
                shift = 1 if index else 0  # chroma planes are half as wide and high
                x, y = box.x >> shift, box.y >> shift
                plane[y : y + picture.shape[0], x : x + picture.shape[1]] = picture
        frame = av.VideoFrame.from_ndarray(
            self.canvas.reshape(self.job.height * 3 // 2, self.job.width), format="yuv420p"
        )
        frame.pts = self.frames
        frame.time_base = Fraction(1, FRAME_RATE)
        self.frames += 1
        self.container.mux(self.video_stream.encode(frame))

    def _mix(self, low: int, high: int) -> None:
        assert self.fifo is not None
        mixed = np.zeros(high - low, np.float32)
        for source in self.audios:
            source.mix_into(mixed, low)
        np.clip(mixed, -1.0, 1.0, out=mixed)
        frame = av.AudioFrame.from_ndarray(mixed.reshape(1, -1), format="flt", layout="mono")
        frame.sample_rate = SAMPLE_RATE
        frame.pts = self.samples
        frame.time_base = Fraction(1, SAMPLE_RATE)
        self.samples += len(mixed)
        self.fifo.write(frame)
        self._encode_audio(self.audio_stream.codec_context.frame_size or 1024)

    def _encode_audio(self, size: int, last: bool = False) -> None:
        assert self.fifo is not None
        while self.fifo.samples >= size or (last and self.fifo.samples):
            frame = self.fifo.read(min(size, self.fifo.samples) if last else size)
            if frame is None:
                break
            if frame.samples < size:  # the encoder takes whole frames: pad the last one
                padded = np.zeros((1, size), np.float32)
                padded[0, : frame.samples] = frame.to_ndarray()[0]
                pts = frame.pts
                frame = av.AudioFrame.from_ndarray(padded, format="flt", layout="mono")
                frame.sample_rate, frame.pts = SAMPLE_RATE, pts
                frame.time_base = Fraction(1, SAMPLE_RATE)
            self.container.mux(self.audio_stream.encode(frame))

    def _flush(self) -> None:
        if self.audio_stream is not None:
            self._encode_audio(self.audio_stream.codec_context.frame_size or 1024, last=True)
            self.container.mux(self.audio_stream.encode(None))
        if self.video_stream is not None:
            self.container.mux(self.video_stream.encode(None))
