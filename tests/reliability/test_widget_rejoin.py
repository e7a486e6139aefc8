"""The RoomWidget after its Jupyter server was SIGKILLed and started again (same port,
root and store): it shows a clear error, not a hang, with a "Rejoin" button; the
button joins again with a token the page fetches itself (the kernel went down with
the old server), REST shows the new participant connected, and a Python
participant's video plays in the widget again."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from jupyter_video.client import LocalVideoTrack, Room, connect

from .. import server_process
from ..server_process import ServerProcess
from ..widgets.browser import (
    LOOPBACK,
    MEDIA_ON_LOOPBACK,
    SAMPLE_VIDEO,
    JupyterLab,
    moving_frames,
    requires_browser,
    room_name,
    token,
    write_notebook,
)
from ..widgets.driver import DriverError, PageDriver
from ..widgets.test_room_widget_browser import Page, wait_until

pytestmark = [requires_browser, pytest.mark.timeout(300)]

CELL = """\
from jupyter_video import RoomWidget
RoomWidget(room={room!r}, identity="lab-user")
"""
STATE = "() => (document.querySelector('.jv-state') || {dataset: {}}).dataset.state"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    process = ServerProcess(tmp_path_factory.mktemp("rejoin-server"),
                            video_config=MEDIA_ON_LOOPBACK).start()
    yield process
    process.stop()


def connected_identities(server: ServerProcess, room: str) -> dict[str, str]:
    """identity -> participant SID of the room's connected participants (REST)."""
    creds = server.credentials()
    auth = (creds["api_key_sid"], creds["api_key_secret"])
    rooms = requests.get(f"{server.url}video/v1/Rooms", params={"UniqueName": room},
                         auth=auth, timeout=10).json()["rooms"]
    found = {}
    for record in rooms:
        listed = requests.get(f"{server.url}video/v1/Rooms/{record['sid']}/Participants",
                              params={"Status": "connected"}, auth=auth, timeout=10).json()
        found.update({p["identity"]: p["sid"] for p in listed["participants"]})
    return found


async def publisher(server: ServerProcess, room: str) -> Room:
    return await connect(token(server, "camera"), room, server.url, ice_host_addresses=LOOPBACK,
                         tracks=[LocalVideoTrack.from_frames(moving_frames(), fps=15)])


async def plays(page: Page, identity: str) -> dict[str, Any]:
    """Two samples of ``identity``'s video in the widget: decoded, lit and changing."""
    first = await page.wait_for(SAMPLE_VIDEO, identity, timeout=40)
    await asyncio.sleep(1.0)
    second = await page.wait_for(SAMPLE_VIDEO, identity, timeout=20)
    assert first["mean"] > 40 and second["frames"] > first["frames"], (first, second)
    assert first["hash"] != second["hash"], "the video is frozen"
    return second


async def test_after_a_server_restart_the_widget_says_so_and_rejoins(
    server: ServerProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    room = room_name()
    write_notebook(server.root / "notebooks" / "rejoin.ipynb", CELL.format(room=room))
    camera = await publisher(server, room)
    driver = PageDriver(timeout=150)
    page = Page(driver)
    try:
        lab = JupyterLab(driver, server)
        await asyncio.to_thread(lab.open, "rejoin.ipynb")
        await asyncio.to_thread(lab.run_first_cell)
        await page.wait_for(f"() => ({STATE})() === 'connected'", timeout=60)
        await plays(page, "camera")
        before = await asyncio.to_thread(connected_identities, server, room)
        assert "lab-user" in before

        await asyncio.to_thread(server.stop, True)  # SIGKILL: no goodbye to anyone
        port = server.port
        monkeypatch.setattr(server_process, "free_port", lambda: port)  # the same address
        await asyncio.to_thread(server.start)
        # twilio-video tries to reconnect (sync) and gives up: the server was gone (53000)
        # or has no such session (53001). An error with the Rejoin button, not a page
        # stuck in "reconnecting".
        await page.wait_for(
            """() => document.querySelector('.jv-state').dataset.state === 'disconnected'
                 && !document.querySelector('.jv-rejoin').hidden""", timeout=60)
        shown = await page.eval("() => document.querySelector('.jv-error').textContent")
        assert any(f"Error {code}" in shown for code in (53000, 53001, 53002)), shown
        assert "Check" in shown or "again" in shown, shown  # the remedy
        await camera.disconnect()
        camera = await publisher(server, room)  # the Python participant joins again too

        # JupyterLab says its server connection was lost in a dialog of its own (over
        # the page, as a user sees it): dismissed first, as a user does.
        for attempt in range(5):
            await page.eval("""() => document.querySelectorAll(
                '.jp-Dialog .jp-Dialog-footer button').forEach((b) => b.click())""")
            await asyncio.sleep(0.3)
            try:
                await page.call("click", selector=".jv-rejoin", timeout=3000)
                break
            except DriverError:
                if attempt == 4:
                    raise
        await page.wait_for(f"() => ({STATE})() === 'connected'", timeout=60)
        assert await page.eval("() => document.querySelector('.jv-rejoin').hidden")
        after = await wait_until(
            lambda: (ids := connected_identities(server, room)).get("lab-user") and ids,
            what="the rejoined widget in REST")
        assert after["lab-user"] != before["lab-user"]  # a new participant
        sample = await plays(page, "camera")
        print(json.dumps({"widget_rejoin": {"error": shown[:80], "sample": sample}}))
    finally:
        await camera.disconnect()
        await asyncio.to_thread(driver.close)
