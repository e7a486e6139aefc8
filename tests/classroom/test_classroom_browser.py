"""The classroom in JupyterLab, in real headless Chromium: RoomWidget cells (the teacher's
and a student's) with Python participants.

The teacher's widget lists a raised hand with its waiting time (and the kernel's
``hands`` has it), shows the chat from before it joined, and its Mute button stops a
student's microphone. A student's widget says "muted by the teacher" and holds its
microphone button, and moves into a breakout and back without a page reload. A
widget's channel that the server drops (a close frame, or the TCP stream cut) opens
again while the room goes on, and the teacher's mute still reaches the page.

``JUPYTER_VIDEO_SCREENSHOT=docs/classroom_teacher.png`` writes the teacher's view.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from typing import Any

import pytest

from ..server_process import REPO, ServerProcess
from ..waiting import wait_until
from ..widgets.browser import LOOPBACK, JupyterLab, kernel_state, requires_browser, write_notebook
from ..widgets.driver import PageDriver
from .conftest import media_tracks, room_name

pytestmark = [requires_browser, pytest.mark.timeout(300)]

CELL = """\
import json, pathlib
from jupyter_video import RoomWidget

w = RoomWidget(room={room!r}, identity={identity!r})

def save(change=None):
    state = {{"state": w.state, "identity": w.identity, "hands": w.hands,
              "classroom": w.classroom, "room_sid": w.room_sid}}
    pathlib.Path("state.tmp").write_text(json.dumps(state))
    pathlib.Path("state.tmp").replace({state_file!r})

w.observe(save, names=["state", "classroom", "room_sid"])
w
"""


@pytest.fixture(scope="module")
def video_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """Media in the server's process on 127.0.0.1, where Chromium looks for it."""
    process = ServerProcess(
        tmp_path_factory.mktemp("classroom-browser"), driver=True,
        video_config={"media_workers": 0, "ice_host_addresses": LOOPBACK,
                      "moderators": ["teacher"]},
    ).start()
    yield process
    process.stop()


class Lab:
    """JupyterLab with one RoomWidget cell, driven from a thread (the peers live on)."""

    def __init__(self, server: ServerProcess, room: str, identity: str) -> None:
        self.server = server
        self.state_file = f"{identity}-state.json"
        self.notebook = f"{identity}.ipynb"
        write_notebook(server.root / "notebooks" / self.notebook,
                       CELL.format(room=room, identity=identity, state_file=self.state_file), "")
        self.driver = PageDriver(timeout=280, size="1280x900")
        self.lab = JupyterLab(self.driver, self.server)

    async def start(self) -> None:
        lab = self.lab
        await asyncio.to_thread(lab.open, self.notebook)
        await asyncio.to_thread(lab.run_first_cell)
        await self.call("wait", selector='.jv-state[data-state="connected"]', timeout=90000,
                        wait=100)

    def kernel(self) -> dict[str, Any]:
        return kernel_state(self.server, self.state_file)

    async def call(self, op: str, **fields: Any) -> Any:
        return await asyncio.to_thread(self.driver.call, op, **fields)

    async def wait_for(self, expression: str, arg: Any = None, timeout: float = 30.0) -> Any:
        return await asyncio.to_thread(self.driver.wait_for, expression, arg, timeout)

    async def click(self, selector: str) -> None:
        await self.call("click", selector=selector, timeout=10000)

    def close(self) -> None:
        self.driver.close()


def published(classroom: Any, identity: str, kind: str) -> bool:
    for participant in classroom.participants:
        if participant["identity"] == identity:
            return bool(next(t for t in participant["tracks"] if t["kind"] == kind)["enabled"])
    raise AssertionError(f"{identity} is not connected")


async def test_the_teachers_widget_lists_hands_shows_earlier_chat_and_mutes_a_student(
        video_server, seat, classroom) -> None:
    name = room_name()
    s1 = await seat("s1", name, tracks=media_tracks)
    s2 = await seat("s2", name)
    await s1.send_chat("Can you share the slides?")
    lab = Lab(video_server, name, "teacher")
    try:
        await lab.start()
        # The chat from before the teacher joined.
        await lab.wait_for("""() => [...document.querySelectorAll('.jv-message.jv-history')]
            .some((n) => n.textContent.includes('Can you share the slides?'))""")
        # A raised hand: in the widget with how long it has waited, and in Python.
        await s2.raise_hand()
        await lab.wait_for("""() => {
            const item = document.querySelector('.jv-hand-item[data-identity="s2"] .jv-wait');
            return item && / s$/.test(item.textContent); }""")
        kernel = await wait_until(lambda: lab.kernel().get("hands"), what="hands in the kernel")
        assert [hand["identity"] for hand in kernel] == ["s2"]
        assert lab.kernel()["classroom"]["you"]["moderator"] is True
        # The teacher's controls: Mute on s1's tile stops s1's microphone.
        await lab.wait_for("""() => document.querySelector(
            '.jv-tile[data-identity="s1"] .jv-mod-mute')""")
        if os.environ.get("JUPYTER_VIDEO_SCREENSHOT"):
            await s1.raise_hand()
            await lab.wait_for("() => document.querySelectorAll('.jv-hand-item').length === 2")
            await asyncio.sleep(3.5)  # videos decoded, waiting times counted
            await lab.call("screenshot", selector=".jv-room",
                           path=str(REPO / os.environ["JUPYTER_VIDEO_SCREENSHOT"]))
        # A student's reaction floats over their tile; the teacher's reaches the kernels.
        await s2.react("heart")
        await lab.wait_for("""() => document.querySelector(
            '.jv-tile[data-identity="s2"] .jv-reaction')""")
        await lab.click(".jv-react-open")
        await lab.click('.jv-react[data-reaction="clap"]')
        await s1.channel.wait(lambda m: m["type"] == "reaction" and m["identity"] == "teacher"
                              and m["reaction"] == "clap")
        assert published(classroom(name), "s1", "audio") is True
        await lab.click('.jv-tile[data-identity="s1"] .jv-mod-mute')
        await s1.channel.wait(lambda m: m["type"] == "muted" and m["by"] == "teacher")
        await wait_until(lambda: not published(classroom(name), "s1", "audio"), what="muted")
        # Lowering from the widget.
        await lab.click('.jv-hand-item[data-identity="s2"] .jv-lower')
        await wait_until(lambda: all(h["identity"] != "s2" for h in classroom(name).hands),
                         what="s2's hand lowered")
        # A student joining after the teacher gets the moderator's buttons on their tile.
        await seat("latecomer", name)
        await lab.wait_for("""() => document.querySelector(
            '.jv-tile[data-identity="latecomer"] .jv-mod-mute')""")
        # The widget's own chat goes on its data track and into the room's history.
        await lab.call("fill", selector=".jv-chat-input", text="Slides are on the hub")
        await lab.call("press", selector=".jv-chat-input", key="Enter")
        await wait_until(lambda: any(m["identity"] == "teacher"
                                     and m["text"] == "Slides are on the hub"
                                     for m in classroom(name).history()),
                         what="the widget's chat in the history")
        # The room monitor in the next cell: the browser's and the kernels' series.
        cell = f"from jupyter_video import RoomMonitor; RoomMonitor(room={name!r})"
        await asyncio.to_thread(lab.lab.run_new_cell, cell)
        await lab.wait_for("""() => document.querySelector(
            '.jv-monitor-card[data-series^="teacher · send"]') &&
            document.querySelector('.jv-monitor-card[data-series^="s1 · send"]')""",
                           timeout=40)
        def browser_bitrates() -> list[float]:
            return [r["bitrate_kbps"] for r in classroom(name).monitor_data()["series"]
                    if r["identity"] == "teacher" and r["source"] == "browser"
                    and r["direction"] == "send" and r["bitrate_kbps"]]

        await wait_until(browser_bitrates, timeout=20, what="the browser's send bitrate")
        # Who is speaking: the SFU's dominant speaker, as the teacher's page was told
        # (s1 unmutes itself: the room lets students do so).
        for publication in s1.room.local_participant.tracks.values():
            if publication.kind == "audio":
                publication.track.enable()
        await lab.wait_for("""() => /^Speaking: s1/.test(
            document.querySelector('.jv-speaking').textContent)""", timeout=20)
        assert max(browser_bitrates()) > 20  # Chromium's fake camera and microphone
    finally:
        await asyncio.to_thread(lab.close)


async def test_a_students_widget_is_muted_by_the_teacher_and_moves_to_a_breakout_and_back(
        video_server, seat, classroom) -> None:
    name = room_name()
    partner = await seat("s1", name)
    lab = Lab(video_server, name, "s3")
    try:
        await lab.start()
        teacher = classroom(name)
        teacher.settings(self_unmute=False)
        await wait_until(lambda: any(p["identity"] == "s3" for p in teacher.participants))
        teacher.mute("s3", "audio")
        await lab.wait_for("""() => {
            const notice = document.querySelector('.jv-notice');
            return notice && notice.textContent.includes('muted by the teacher'); }""")
        await lab.wait_for("""() => document.querySelector('.jv-mic[data-held="true"]')""")
        # A student's widget has no moderator's controls.
        assert await lab.wait_for("""() => String(document.querySelector('.jv-teacher').hidden
            && !document.querySelector('.jv-mod-mute'))""") == "true"
        assert not published(teacher, "s3", "audio")
        await wait_until(lambda: (lab.kernel().get("classroom") or {}).get("you", {}).get(
            "held") == ["audio"], what="the kernel's classroom state holding the microphone")
        # The teacher allows it: the button is the student's again, and they unmute.
        teacher.allow_unmute("s3", "audio")
        await lab.wait_for("""() => {
            const mic = document.querySelector('.jv-mic');
            return !mic.hasAttribute('data-held') && !mic.disabled; }""")
        await lab.click(".jv-mic")
        await wait_until(lambda: published(teacher, "s3", "audio"), what="s3 unmuted")
        # A hand raised from Python (the widget's raise_hand()) reaches the teacher.
        await asyncio.to_thread(lab.lab.run_new_cell, "w.raise_hand()")
        await wait_until(lambda: [h["identity"] for h in teacher.hands] == ["s3"],
                         what="s3's hand")
        await lab.wait_for("() => document.querySelector('.jv-hand.jv-raised')")

        # Breakouts: the page moves into its group's room and back, without reloading.
        marker = await lab.wait_for("() => (window.__jvPage = window.__jvPage || Math.random())")
        opened = teacher.breakout(names=[f"{name}-a", f"{name}-b"], duration=120,
                                  assignment={"s3": f"{name}-a", "s1": f"{name}-a"})
        assert opened["assignment"]["s3"] == f"{name}-a"
        await lab.wait_for("(room) => document.querySelector('.jv-title').textContent === room",
                           f"{name}-a")
        await lab.wait_for("""() => document.querySelector(
            '.jv-state[data-state="connected"]') &&
            document.querySelector('.jv-tile[data-identity="s1"]')""")
        await partner.wait_in(f"{name}-a")
        await lab.wait_for("""() => {
            const countdown = document.querySelector('.jv-countdown');
            return !countdown.hidden && /^breakouts end in 1 min/.test(countdown.textContent); }""")
        teacher.recall()
        await lab.wait_for("(room) => document.querySelector('.jv-title').textContent === room",
                           name)
        await lab.wait_for("""() => document.querySelector('.jv-state[data-state="connected"]')
            && document.querySelector('.jv-tile[data-identity="s1"]')""")
        assert await lab.wait_for("() => window.__jvPage") == marker  # the same page
        assert {p["identity"] for p in teacher.participants} == {"s1", "s3"}
    finally:
        await asyncio.to_thread(lab.close)



def channel_ids(server: ServerProcess, room: str, identity: str,
                drop: str | None = None) -> list[int]:
    """The server's classroom channels of ``identity`` in ``room`` (the test-only driver
    drops them: ``close`` with a close frame, ``abort`` cutting the TCP stream)."""
    body = server.drive("classroom_channels", room=room, **({"drop": drop} if drop else {}))
    return [i for i, who in zip(body["ids"], body["identities"], strict=True) if who == identity]


async def test_a_widgets_dropped_channel_opens_again(video_server, classroom) -> None:
    name = room_name()
    lab = Lab(video_server, name, "s5")
    try:
        await lab.start()
        teacher = classroom(name)
        first = await wait_until(lambda: channel_ids(video_server, name, "s5"),
                                 what="the widget's channel")
        for drop in ("close", "abort"):
            assert channel_ids(video_server, name, "s5", drop) == first
            first = await wait_until(
                lambda before=first: (ids := channel_ids(video_server, name, "s5"))
                and ids != before and ids,
                what=f"the widget's channel open again after a {drop}")
            assert len(first) == 1
        await lab.wait_for("""() => document.querySelector('.jv-state[data-state="connected"]')""")
        teacher.mute("s5", "audio")
        await lab.wait_for("""() => {
            const notice = document.querySelector('.jv-notice');
            return notice && notice.textContent.includes('muted by the teacher'); }""")
    finally:
        await asyncio.to_thread(lab.close)
