"""Track recordings as the media plane writes them (VP8 in .mkv, Opus in .mka, timestamps
from the first frame), made with PyAV from known patterns and tones, for the composer."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from jupyter_video.compositions.composer import TrackFile

COLORS = {"red": (220, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 220),
          "white": (235, 235, 235), "yellow": (220, 220, 30)}


def video_track(path: Path, color: str, seconds: float, offset: float,
                size: tuple[int, int] = (160, 120), name: str | None = None,
                fps: int = 15) -> TrackFile:
    """A solid ``color`` VP8 recording lasting ``seconds``, starting ``offset`` s in."""
    width, height = size
    with av.open(str(path), "w", format="matroska") as container:
        stream = container.add_stream("libvpx", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"deadline": "realtime", "cpu-used": "8"}
        picture = np.empty((height, width, 3), np.uint8)
        picture[...] = COLORS[color]
        for index in range(round(seconds * fps)):
            frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
            frame.pts, frame.time_base = index, Fraction(1, fps)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return TrackFile("RT" + path.stem.ljust(32, "0")[:32], "MT" + "0" * 32, name or color,
                     "video", str(path), offset)


def tone_track(path: Path, frequency: float, seconds: float, offset: float,
               name: str | None = None) -> TrackFile:
    """An Opus recording of a ``frequency`` Hz tone lasting ``seconds``."""
    rate = 48000
    samples = (0.3 * np.sin(2 * np.pi * frequency * np.arange(int(rate * seconds)) / rate))
    with av.open(str(path), "w", format="matroska") as container:
        stream = container.add_stream("libopus", rate=rate)
        stream.layout = "mono"
        for index, start in enumerate(range(0, len(samples) - 959, 960)):
            chunk = samples[start:start + 960].astype(np.float32).reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(chunk, format="flt", layout="mono")
            frame.sample_rate, frame.pts = rate, index * 960
            frame.time_base = Fraction(1, rate)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return TrackFile("RT" + path.stem.ljust(32, "0")[:32], "MT" + "1" * 32,
                     name or f"tone{int(frequency)}", "audio", str(path), offset)
