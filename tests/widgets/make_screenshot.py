"""Make docs/room_widget.png: RoomWidget in JupyterLab with a Python participant and a chat.

    .venv/bin/python -m tests.widgets.make_screenshot [docs/room_widget.png]

Needs what the browser tests need (``make browser-deps``).
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from jupyter_video.client import LocalDataTrack, LocalVideoTrack, connect

from ..server_process import ServerProcess
from .browser import LOOPBACK, MEDIA_ON_LOOPBACK, REPO, JupyterLab, token, write_notebook
from .driver import PageDriver

CELL = """from jupyter_video import RoomWidget

room = RoomWidget(room="lab", identity="ada")
room"""


def colour_bars(width: int = 640, height: int = 480) -> Iterator[np.ndarray]:
    x = np.arange(width)
    t = 0
    while True:
        frame = np.empty((height, width, 3), np.uint8)
        frame[..., 0] = (x + 4 * t) % 256
        frame[..., 1] = 150
        frame[..., 2] = 255 - (x + 4 * t) % 256
        frame[height // 3: 2 * height // 3, width // 3: 2 * width // 3] = (250, 250, 250)
        yield frame
        t += 1


async def main(out: Path) -> None:
    with tempfile.TemporaryDirectory() as root:
        server = ServerProcess(Path(root), video_config=MEDIA_ON_LOOPBACK).start()
        driver = PageDriver(timeout=150, size="1200x820")
        python = None
        try:
            write_notebook(server.root / "notebooks" / "room.ipynb", CELL)
            lab = JupyterLab(driver, server)
            await asyncio.to_thread(lab.open, "room.ipynb")
            await asyncio.to_thread(lab.run_first_cell)
            if lab.dialogs:
                print("accepted JupyterLab dialogs:", lab.dialogs)
            connected = '.jv-state[data-state="connected"]'
            await asyncio.to_thread(driver.call, "wait", selector=connected, timeout=90000,
                                    wait=100)
            chat = LocalDataTrack(name="chat")
            python = await connect(token(server, "kernel-bot"), "lab", server.url,
                                   tracks=[LocalVideoTrack.from_frames(colour_bars()), chat],
                                   ice_host_addresses=LOOPBACK)
            await asyncio.to_thread(driver.wait_for, """() => {
                const v = document.querySelector('.jv-tile[data-identity="kernel-bot"] video');
                return v && v.videoWidth > 0; }""", None, 30)
            chat.send("Hi Ada, frames from the kernel are on their way")
            await asyncio.sleep(1)
            await asyncio.to_thread(driver.call, "fill", selector=".jv-chat-input",
                                    text="Got them, looks great!")
            await asyncio.to_thread(driver.call, "press", selector=".jv-chat-input", key="Enter")
            await asyncio.sleep(2)
            await asyncio.to_thread(driver.call, "screenshot", path=str(out.resolve()),
                                    selector=".jp-Notebook .jp-Cell")
        finally:
            if python is not None:
                await python.disconnect()
            await asyncio.to_thread(driver.close)
            server.stop()


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "docs" / "room_widget.png"
    asyncio.run(main(target))
    print(target)
