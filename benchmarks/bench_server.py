"""Shared pieces of the benchmarks that go through a real server: a server
process, tokens, generated video, and percentiles."""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from jupyter_video.tokens import AccessToken, VideoGrant
from tests.server_process import ServerProcess

LOOPBACK = ["127.0.0.1"]


class BenchServer:
    """A ``jupyter server`` with the extension in a temporary directory."""

    def __init__(self, **video_config: Any) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="jv-bench-"))
        self.process = ServerProcess(
            self.root, video_config={"ice_host_addresses": LOOPBACK, **video_config}
        )

    def __enter__(self) -> ServerProcess:
        return self.process.start()

    def __exit__(self, *exc: object) -> None:
        self.process.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def token(server: ServerProcess, identity: str) -> str:
    creds = server.credentials()
    access = AccessToken(
        creds["account_sid"], creds["api_key_sid"], creds["api_key_secret"], identity=identity
    )
    access.add_grant(VideoGrant())
    return access.to_jwt()


def moving_bars(width: int = 640, height: int = 480) -> Iterator[np.ndarray]:
    """Frames with texture and motion, so VP8 spends a realistic bitrate."""
    x = np.arange(width, dtype=np.int32)
    y = np.arange(height, dtype=np.int32)[:, None]
    index = 0
    while True:
        frame = np.empty((height, width, 3), np.uint8)
        frame[..., 0] = ((x + 4 * index) % 256).astype(np.uint8)
        frame[..., 1] = ((y * 2 + index) % 256).astype(np.uint8)
        frame[..., 2] = (((x // 16 + y // 16 + index) % 2) * 200).astype(np.uint8)
        yield frame
        index += 1


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")
