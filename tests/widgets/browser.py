"""Helpers of the browser tests: prerequisites, a media-capable server, JupyterLab in a page."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

import nbformat
import numpy as np
import pytest
import requests

from jupyter_video.client import RemoteVideoTrack
from jupyter_video.tokens import AccessToken, VideoGrant
from jupyter_video.widgets._frontend import BUNDLE

from ..server_process import TOKEN, ServerProcess
from .driver import DriverError, PageDriver

REPO = Path(__file__).resolve().parent.parent.parent
CHROMIUM = Path("/usr/bin/chromium")
PLAYWRIGHT = REPO / "tests" / "browser" / "node_modules" / "playwright-core"
LOOPBACK = ["127.0.0.1"]
MEDIA_ON_LOOPBACK = {"media_workers": 0, "ice_host_addresses": LOOPBACK}


def missing_prerequisites() -> list[str]:
    """What the browser tests need and this machine lacks (``make test`` installs it all)."""
    missing = []
    if shutil.which("node") is None:
        missing.append("node")
    if not CHROMIUM.exists():
        missing.append(f"{CHROMIUM} (apt-get install chromium)")
    if not PLAYWRIGHT.exists():
        missing.append("tests/browser/node_modules (cd tests/browser && npm ci)")
    if not BUNDLE.exists():
        missing.append("jupyter_video/static/widget.js (pip install -e ., or npm run build in js/)")
    return missing


def media_on_loopback_server(name: str) -> Any:
    """A module's ``server`` fixture: ``jupyter server`` with the extension, its media
    plane in process on 127.0.0.1, where Chromium looks for it; ``name`` names its
    directory."""

    @pytest.fixture(scope="module")
    def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
        process = ServerProcess(tmp_path_factory.mktemp(name),
                                video_config=MEDIA_ON_LOOPBACK).start()
        yield process
        process.stop()

    return server


requires_browser = pytest.mark.skipif(
    bool(missing_prerequisites()), reason="missing: " + ", ".join(missing_prerequisites())
)


def room_name() -> str:
    return f"widget-{uuid.uuid4().hex[:8]}"


def token(server: ServerProcess, identity: str) -> str:
    """An Access Token for any room, signed with the server's API key."""
    creds = server.credentials()
    access = AccessToken(
        creds["account_sid"], creds["api_key_sid"], creds["api_key_secret"], identity=identity
    )
    access.add_grant(VideoGrant())
    return access.to_jwt()


def moving_frames(shape: tuple[int, int] = (240, 320)) -> Iterator[np.ndarray]:
    """Bright frames whose colours change every frame: easy to tell from black or frozen."""
    index = 0
    while True:
        frame = np.empty((*shape, 3), np.uint8)
        frame[..., 0] = (60 + 7 * index) % 256
        frame[..., 1] = 200
        frame[..., 2] = (250 - 5 * index) % 256
        yield frame
        index += 1


T = TypeVar("T")


async def first_track(tracks: list[T], what: str, timeout: float = 20.0) -> T:
    """The first of ``tracks`` (filled by a ``track_subscribed`` listener), waited for."""
    deadline = time.monotonic() + timeout
    while not tracks and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert tracks, f"never subscribed to {what}"
    return tracks[0]


async def take_frames(track: RemoteVideoTrack, count: int) -> list[np.ndarray]:
    """The next ``count`` decoded frames of ``track``."""
    frames: list[np.ndarray] = []
    async for frame in track.frames():
        frames.append(frame)
        if len(frames) == count:
            break
    return frames


def write_notebook(path: Path, *sources: str) -> None:
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(source) for source in sources]
    notebook.metadata["kernelspec"] = {
        "name": "python3", "display_name": "Python 3", "language": "python"
    }
    nbformat.write(notebook, path)


# Samples the video element in a tile: mean brightness (0-255) and a checksum of
# the pixels, drawn small on a canvas; null while nothing has been decoded.
SAMPLE_VIDEO = """(identity) => {
  const video = document.querySelector(`.jv-tile[data-identity="${identity}"] video`);
  // In view, as a user looking at it: the widget's twilio-video switches off the
  // video of a tile out of view (clientTrackSwitchOffControl 'auto', docs/quality.md).
  if (video) { video.scrollIntoView({ block: 'nearest' }); }
  if (!video || video.readyState < 2 || !video.videoWidth) { return null; }
  if (video.closest('.jv-switched-off')) { return null; }  // until it is switched on
  const canvas = document.createElement('canvas');
  canvas.width = 64; canvas.height = 48;
  const context = canvas.getContext('2d');
  context.drawImage(video, 0, 0, 64, 48);
  const data = context.getImageData(0, 0, 64, 48).data;
  let sum = 0, hash = 0;
  for (let i = 0; i < data.length; i += 4) {
    sum += data[i] + data[i + 1] + data[i + 2];
    hash = (hash * 31 + data[i] + 7 * data[i + 1] + 13 * data[i + 2]) >>> 0;
  }
  const quality = video.getVideoPlaybackQuality ? video.getVideoPlaybackQuality() : {};
  return { mean: sum / (data.length / 4 * 3), hash, frames: quality.totalVideoFrames || 0,
           width: video.videoWidth, height: video.videoHeight };
}"""


class JupyterLab:
    """JupyterLab of ``server`` in a driven page: open a notebook, run its first cell."""

    def __init__(self, driver: PageDriver, server: ServerProcess) -> None:
        self.driver = driver
        self.server = server
        self.dialogs: list[str] = []

    def open(self, notebook: str) -> None:
        """Open ``notebook`` (relative to the server's root) with a running python3 kernel."""
        headers = {"Authorization": f"token {TOKEN}"}
        # A session made beforehand: JupyterLab attaches to its kernel instead of asking
        # which kernel to start (a dialog that would swallow the keys that run the cell).
        requests.post(f"{self.server.url}api/sessions", headers=headers, timeout=30, json={
            "path": notebook, "name": notebook, "type": "notebook", "kernel": {"name": "python3"},
        }).raise_for_status()
        # No "get notified about news?" toast over the page.
        requests.put(
            f"{self.server.url}lab/api/settings/@jupyterlab/apputils-extension:notification",
            headers=headers, timeout=30, json={"raw": json.dumps({"fetchNews": "false"})},
        ).raise_for_status()
        # A workspace of its own, so that notebooks a previous page opened are not restored.
        workspace = uuid.uuid4().hex[:8]
        self.driver.call("goto", url=f"{self.server.url}lab/workspaces/{workspace}/tree/"
                         f"{notebook}?reset&token={TOKEN}")
        self.driver.call("wait", selector=".jp-Notebook .jp-Cell .cm-content", timeout=60000,
                         wait=70)
        self.driver.wait_for(
            """() => {
              const accept = document.querySelector('.jp-Dialog .jp-mod-accept');
              if (accept) { accept.click(); return false; }
              return document.querySelector(
                '.jp-Notebook-ExecutionIndicator[data-status="idle"]');
            }""",
            timeout=60,
        )

    def accept_dialogs(self) -> list[str]:
        """Accept the dialogs JupyterLab may open while starting (kernel choice, ...)."""
        texts: list[str] = self.driver.eval(
            """() => [...document.querySelectorAll('.jp-Dialog')].map((dialog) => {
                const accept = dialog.querySelector('.jp-mod-accept');
                if (accept) { accept.click(); }
                return dialog.textContent; })"""
        )
        self.dialogs.extend(texts)
        return texts

    def run_first_cell(self) -> None:
        """Run the notebook's first cell as a user does (click it, Shift+Enter).

        Keys pressed while JupyterLab is still settling can go nowhere: press again
        while the cell's prompt shows it was not queued ("[ ]:"), never once it was.
        """
        queued = (
            "() => /\\[(\\*|\\d+)\\]/.test("
            "document.querySelector('.jp-Notebook .jp-InputPrompt').textContent)"
        )
        for _ in range(4):
            self.accept_dialogs()
            try:
                self.driver.call("click", selector=".jp-Notebook .jp-Cell .cm-content",
                                 timeout=5000)
                self.driver.call("press", key="Shift+Enter")
                self.driver.wait_for(queued, timeout=10)
                return
            except DriverError:
                continue
        raise DriverError(f"the first cell never ran (dialogs: {self.dialogs})\n"
                          + self.driver.console_tail())


    def run_new_cell(self, code: str) -> None:
        """Type one line of ``code`` into the notebook's last (empty) cell and run it."""
        cells = self.driver.eval("() => document.querySelectorAll('.jp-Notebook .jp-Cell').length")
        last = f".jp-Notebook .jp-Cell:nth-child({cells})"
        self.driver.call("click", selector=f"{last} .cm-content")
        self.driver.call("type", text=code)
        self.driver.call("press", key="Shift+Enter")
        self.driver.wait_for(
            "(last) => /\\[(\\*|\\d+)\\]/.test("
            "document.querySelector(`${last} .jp-InputPrompt`).textContent)",
            last, timeout=20,
        )


def kernel_state(server: ServerProcess, name: str = "widget_state.json") -> dict[str, Any]:
    """What the notebook's observer last wrote about its RoomWidget ({} before it wrote)."""
    path = server.root / "notebooks" / name
    try:
        state: dict[str, Any] = json.loads(path.read_text())
        return state
    except (OSError, ValueError):
        return {}
