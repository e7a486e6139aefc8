"""The RoomWidget in JupyterLab with Twilio's recommended options: its tiles' size
chooses the layer of a simulcast camera it receives (twilio-video's automatic
content preferences -> render hints), and a tile it hides is switched off (shown
as such) and back on when shown."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from ..server_process import ServerProcess
from ..widgets.browser import (
    MEDIA_ON_LOOPBACK,
    SAMPLE_VIDEO,
    JupyterLab,
    requires_browser,
    room_name,
    token,
    write_notebook,
)
from ..widgets.driver import PageDriver
from ..widgets.test_twilio_video_page import TWILIO_VIDEO

pytestmark = [requires_browser, pytest.mark.timeout(300)]

CELL = """\
from jupyter_video import RoomWidget
RoomWidget(room={room!r}, identity="lab-user", layout="grid", video=False, audio=False)
"""

SIMULCAST_PAGE = """async ({token, wsServer, name}) => {
  const track = await Twilio.Video.createLocalVideoTrack({width: 640, height: 360, frameRate: 24});
  const room = await Twilio.Video.connect(token, {
    name, wsServer, iceServers: [], insights: false, tracks: [track],
    preferredVideoCodecs: 'auto'});
  window.room = room;
  return {sid: room.sid, state: room.state};
}"""

TILE = '.jv-tile[data-identity="camera-page"]'


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    process = ServerProcess(tmp_path_factory.mktemp("widget-quality"),
                            video_config=MEDIA_ON_LOOPBACK).start()
    yield process
    process.stop()


async def test_the_widgets_tile_size_picks_the_layer_and_a_hidden_tile_is_switched_off(
    server: ServerProcess,
) -> None:
    room = room_name()
    write_notebook(server.root / "notebooks" / "quality.ipynb", CELL.format(room=room))
    lab_driver, camera = PageDriver(timeout=200), PageDriver(timeout=200)
    try:
        lab = JupyterLab(lab_driver, server)
        await asyncio.to_thread(lab.open, "quality.ipynb")
        await asyncio.to_thread(lab.run_first_cell)
        await asyncio.to_thread(lab_driver.call, "wait", wait=70, timeout=60000,
                                selector='.jv-state[data-state="connected"]')
        await asyncio.to_thread(camera.call, "blank")
        await asyncio.to_thread(camera.call, "addScript",
                                path=str(TWILIO_VIDEO / "twilio-video.min.js"))
        signaling = f"ws://127.0.0.1:{server.port}{server.base_url}video/signaling"
        joined = await asyncio.to_thread(camera.eval, SIMULCAST_PAGE, {
            "token": token(server, "camera-page"), "wsServer": signaling, "name": room})
        assert joined["state"] == "connected"

        async def received() -> dict[str, Any]:
            sample: dict[str, Any] = await asyncio.to_thread(
                lab_driver.wait_for, SAMPLE_VIDEO, "camera-page", 60)
            rendered = await asyncio.to_thread(lab_driver.eval, f"""() => {{
                const video = document.querySelector('{TILE} video');
                return video ? [video.clientWidth, video.clientHeight] : null; }}""")
            sample["rendered"] = rendered
            return sample

        # The tile is rendered with fewer pixels than 320x180: that layer is enough.
        deadline = asyncio.get_running_loop().time() + 45
        while True:
            sample = await received()
            width, height = sample["rendered"]
            assert width * height <= 320 * 180, sample  # a small tile, as laid out
            if sample["width"] == 320:
                break
            assert asyncio.get_running_loop().time() < deadline, sample
            await asyncio.sleep(0.5)

        # Hidden, the tile's video is switched off (and the tile says so); shown again,
        # it is switched on and plays.
        await asyncio.to_thread(lab_driver.eval, f"""() => {{
            document.querySelector('{TILE} video').style.display = 'none'; return true; }}""")
        await asyncio.to_thread(lab_driver.call, "wait", wait=40, timeout=30000,
                                selector=f"{TILE}.jv-switched-off")
        await asyncio.to_thread(lab_driver.eval, f"""() => {{
            document.querySelector('{TILE} video').style.display = ''; return true; }}""")
        await asyncio.to_thread(lab_driver.call, "wait", wait=40, timeout=30000,
                                selector=f"{TILE}:not(.jv-switched-off) video")
        before = (await received())["frames"]
        await asyncio.sleep(1.5)
        assert (await received())["frames"] > before
    finally:
        await asyncio.to_thread(camera.close)
        await asyncio.to_thread(lab_driver.close)
