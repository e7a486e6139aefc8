"""The classroom on a real JupyterHub's video service: the hub's roles decide who
moderates (the teacher's custom:video:moderate scope), a student is refused, and a
locked room refuses a student's kernel with 53105."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
import requests

from jupyter_video.classroom import Classroom
from jupyter_video.client import connect
from jupyter_video.errors import VideoError

from ..hub.hub_process import Hub, missing_prerequisites

pytestmark = [
    pytest.mark.skipif(bool(missing_prerequisites()),
                       reason="missing: " + ", ".join(missing_prerequisites())),
    pytest.mark.timeout(240),
]

SCOPES = ["access:services!service=video", "read:users:groups!user"]
MODERATE = "custom:video:moderate"


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    hub = Hub(tmp_path_factory.mktemp("classroom-hub")).start()
    try:
        hub.start_server("s1")
        yield hub
    finally:
        hub.stop()


def service_token(hub: Hub, user: str) -> str:
    return hub.user_token(user, [*SCOPES, MODERATE] if user == "teacher" else SCOPES)


def test_the_hubs_moderators_run_the_classroom_and_students_are_refused(hub: Hub) -> None:
    teacher = Classroom("algebra", server=hub.service_url,
                        hub_token=service_token(hub, "teacher"))
    created = requests.post(f"{hub.service_url}video/v1/Rooms", data={"UniqueName": "algebra"},
                            headers={"Authorization": f"token {service_token(hub, 'teacher')}"},
                            timeout=30)
    assert created.status_code == 201, created.text
    student = Classroom("algebra", server=hub.service_url, hub_token=service_token(hub, "s1"))
    with pytest.raises(VideoError) as refused:
        student.lock()
    assert refused.value.code == 20403
    assert student.state["locked"] is False
    student.send_chat("hello from s1")  # anyone chats, as themselves
    assert [(m["identity"], m["text"]) for m in teacher.history()] == [("s1", "hello from s1")]

    assert teacher.lock() == {"locked": True}
    grant = requests.get(f"{hub.url}user/s1/video/token?room=algebra", timeout=30, headers={
        "Authorization": f"token {hub.user_token('s1', ['access:servers!server=s1/'])}"}).json()
    with pytest.raises(VideoError) as locked:
        asyncio.run(connect(grant["token"], "algebra", hub.service_url,
                            ice_host_addresses=["127.0.0.1"]))
    assert locked.value.code == 53105 and "locked by its moderator" in locked.value.message
