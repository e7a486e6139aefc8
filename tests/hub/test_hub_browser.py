"""A whole class in one room: JupyterLab pages of three hub users, through the hub.

``teacher``, ``s1`` and ``s2`` log in at ``/hub/login`` in headless Chromium
(fake cameras), open JupyterLab on their own servers behind the hub's proxy and
run the same cell, ``RoomWidget(room="lecture")``. Every page must show the two
others' video (decoded, changing), named by their hub user names; the teacher's
widget has the moderator's controls by the hub's roles alone, the students' none; the
teacher's chat reaches both students; a student's unsubscribe button works through their
own server's relay; a browser signs in to the service itself by Hub OAuth.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import pytest
import requests

from ..widgets.browser import SAMPLE_VIDEO, JupyterLab, requires_browser, write_notebook
from ..widgets.driver import PageDriver
from .hub_process import Hub, missing_prerequisites

pytestmark = [
    requires_browser,
    pytest.mark.skipif(bool(missing_prerequisites()),
                       reason="missing: " + ", ".join(missing_prerequisites())),
    pytest.mark.timeout(420),
]

CELL = """\
from jupyter_video import RoomWidget

RoomWidget(room="lecture")"""
USERS = ("teacher", "s1", "s2")


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    hub = Hub(tmp_path_factory.mktemp("hub")).start()
    try:
        for user in USERS:
            hub.start_server(user)
        yield hub
    finally:
        hub.stop()
    assert hub.leftover_pids() == [], "processes the hub started outlived it"


class HubLab(JupyterLab):
    """JupyterLab of one hub user, reached by logging in at the hub."""

    def __init__(self, driver: PageDriver, hub: Hub, user: str) -> None:
        self.driver = driver
        self.hub = hub
        self.user = user
        self.dialogs: list[str] = []

    def open(self, notebook: str) -> None:
        base = f"{self.hub.url}user/{self.user}/"
        token = self.hub.user_token(self.user, [f"access:servers!server={self.user}/"])
        headers = {"Authorization": f"token {token}"}
        write_notebook(self.hub.root / "home" / self.user / notebook, CELL)
        # As JupyterLab's own test does: the kernel first (no kernel dialog), no news toast.
        requests.post(f"{base}api/sessions", headers=headers, timeout=60, json={
            "path": notebook, "name": notebook, "type": "notebook", "kernel": {"name": "python3"},
        }).raise_for_status()
        requests.put(
            f"{base}lab/api/settings/@jupyterlab/apputils-extension:notification",
            headers=headers, timeout=30, json={"raw": json.dumps({"fetchNews": "false"})},
        ).raise_for_status()
        # The hub's login form, which sends the browser on to the notebook (in a
        # workspace of its own, so that nothing a previous page opened is restored).
        workspace = uuid.uuid4().hex[:8]
        after = f"/user/{self.user}/lab/workspaces/{workspace}/tree/{notebook}?reset"
        self.driver.call("goto", url=f"{self.hub.url}hub/login?{urlencode({'next': after})}")
        self.driver.call("fill", selector="#username_input", text=self.user)
        self.driver.call("fill", selector="#password_input", text="any password")
        self.driver.call("click", selector="#login_submit")
        self.driver.call("wait", selector=".jp-Notebook .jp-Cell .cm-content", timeout=90000,
                         wait=100)
        self.driver.wait_for(
            """() => {
              const accept = document.querySelector('.jp-Dialog .jp-mod-accept');
              if (accept) { accept.click(); return false; }
              return document.querySelector(
                '.jp-Notebook-ExecutionIndicator[data-status="idle"]');
            }""",
            timeout=90,
        )


def text_in(selector: str) -> str:
    return f"""(text) => [...document.querySelectorAll({selector!r})]
        .some((node) => node.textContent === text)"""


async def call(driver: PageDriver, op: str, **fields: Any) -> Any:
    return await asyncio.to_thread(driver.call, op, **fields)


async def sample(driver: PageDriver, identity: str) -> dict[str, Any]:
    found: dict[str, Any] = await asyncio.to_thread(driver.wait_for, SAMPLE_VIDEO, identity, 90)
    return found


async def moving(driver: PageDriver, identity: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Two samples of ``identity``'s tile a second or more apart, the later one new.

    A tile scrolled into view is switched on again by twilio-video's render hints
    (docs/quality.md): its first frames after that wait for a keyframe, so a frozen
    picture for a second is not yet a frozen video. Ten seconds of it is.
    """
    first = await sample(driver, identity)
    later = first
    for _ in range(10):
        await asyncio.sleep(1.0)
        later = await sample(driver, identity)
        if later["hash"] != first["hash"] and later["frames"] > first["frames"]:
            break
    return first, later


async def test_teacher_and_students_see_and_chat_with_each_other_through_the_hub(
    hub: Hub,
) -> None:
    drivers = {user: PageDriver(timeout=380) for user in USERS}
    try:
        # The teacher first: only a moderator starts the room.
        for user in USERS:
            lab = HubLab(drivers[user], hub, user)
            await asyncio.to_thread(lab.open, "lecture.ipynb")
            await asyncio.to_thread(lab.run_first_cell)
            await call(drivers[user], "wait", selector='.jv-state[data-state="connected"]',
                       timeout=120000, wait=130)
        for user, driver in drivers.items():
            own = await asyncio.to_thread(driver.eval, "() => [...document.querySelectorAll("
                                          "'.jv-tile[data-identity]')].map((t) => t.dataset"
                                          ".identity)")
            assert sorted(own) == sorted(USERS), (user, own)
            for other in USERS:
                if other == user:
                    continue
                first, later = await moving(driver, other)
                assert later["mean"] > 10, f"{user} sees {other}'s video black: {later}"
                assert later["hash"] != first["hash"], f"{user} sees {other}'s video frozen"

        # The hub's roles reach the widgets' classroom channels (the token the service
        # minted says who moderates): the teacher's page has the moderator's controls,
        # the students' pages have none.
        await asyncio.to_thread(drivers["teacher"].wait_for, """() =>
            !document.querySelector('.jv-teacher').hidden
            && document.querySelector('.jv-tile[data-identity="s1"] .jv-mod-mute')""", None, 30)
        for student in ("s1", "s2"):
            await asyncio.to_thread(drivers[student].wait_for, """() =>
                document.querySelector('.jv-hand:not([disabled])')""", None, 30)
            controls = await asyncio.to_thread(drivers[student].eval, """() =>
                String(document.querySelector('.jv-teacher').hidden
                       && !document.querySelector('.jv-mod-mute'))""")
            assert controls == "true", f"{student}'s widget shows a moderator's controls"

        # One room for everyone, with the hub user names as identities.
        token = hub.user_token("teacher", ["access:services!service=video"])
        listed = requests.get(f"{hub.service_url}video/v1/Rooms/lecture/Participants",
                              params={"Status": "connected"}, timeout=30,
                              headers={"Authorization": f"token {token}"}).json()
        assert sorted(p["identity"] for p in listed["participants"]) == sorted(USERS)

        # The teacher's chat reaches both students.
        await call(drivers["teacher"], "fill", selector=".jv-chat-input", text="page 42, please")
        await call(drivers["teacher"], "press", selector=".jv-chat-input", key="Enter")
        for student in ("s1", "s2"):
            await asyncio.to_thread(drivers[student].wait_for, text_in(".jv-message .jv-text"),
                                    "page 42, please", 30)

        # s1 unsubscribes from the teacher's video: SubscribeRules through s1's relay.
        tile = '.jv-tile[data-identity="teacher"]'
        await call(drivers["s1"], "click", selector=f'{tile} .jv-sub[data-kind="video"]')
        await asyncio.to_thread(
            drivers["s1"].wait_for,
            f"() => !document.querySelector('{tile} video') && document.querySelector("
            f"'{tile} .jv-sub[data-kind=\"video\"][data-subscribed=\"false\"]')", None, 30)

        # The service's own Hub OAuth: s2's browser, logged in to the hub, signs in
        # to the service with no password and no confirmation page, and is s2 there.
        token_path = "/services/video/video/token?room=lecture"
        await call(drivers["s2"], "goto", url=f"{hub.service_url}login?"
                   + urlencode({"next": token_path}))
        text = await asyncio.to_thread(
            drivers["s2"].wait_for,
            "(path) => location.pathname + location.search === path"
            " && document.body && document.body.innerText", token_path, 30)
        grant = json.loads(text)
        assert grant["identity"] == "s2 (2)" and grant["room"] == "lecture"  # s2's 2nd tab
    finally:
        for driver in drivers.values():
            await asyncio.to_thread(driver.close)
