"""The classroom on a real JupyterHub's video service: the hub's roles decide who
moderates (the teacher's custom:video:moderate scope), a student is refused, and a
locked room refuses a student's kernel with 53105. A teacher's widget channel, opened
with the token the teacher's own server relays from the service, moderates by the
hub's roles alone (the service lists no VideoApp.moderators); a student's does not,
and a student who edits the claim into their token is refused. A room locked before
the teacher's widget ever joined still admits the teacher's widget (the service
minted its moderator token) and refuses a student's."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from jupyter_video.account import Credentials
from jupyter_video.classroom import Classroom
from jupyter_video.classroom.channel import ClassroomChannel
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
        hub.start_server("teacher")
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


def widget_grant(hub: Hub, user: str, room: str) -> dict[str, Any]:
    """What a user's RoomWidget gets: ``/video/token`` of their own server, relayed."""
    response = requests.get(f"{hub.url}user/{user}/video/token?room={room}", timeout=30, headers={
        "Authorization": f"token {hub.user_token(user, [f'access:servers!server={user}/'])}"})
    assert response.status_code == 200, response.text
    grant: dict[str, Any] = response.json()
    return grant


def with_moderator_claim(token: str) -> str:
    """The token with the claim written into its payload, the signature left as it was."""
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["grants"]["video"]["classroom"] = {"moderator": True}
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    return f"{header}.{forged}.{signature}"


def test_a_teachers_widget_channel_moderates_by_the_hubs_roles(hub: Hub) -> None:
    created = requests.post(f"{hub.service_url}video/v1/Rooms", data={"UniqueName": "geometry"},
                            headers={"Authorization": f"token {service_token(hub, 'teacher')}"},
                            timeout=30)
    assert created.status_code == 201, created.text
    teacher = widget_grant(hub, "teacher", "geometry")
    student = widget_grant(hub, "s1", "geometry")
    assert (teacher["identity"], student["identity"]) == ("teacher", "s1")

    async def run() -> None:
        teachers = await ClassroomChannel.open(teacher["ws_server"], teacher["token"], "geometry")
        students = await ClassroomChannel.open(student["ws_server"], student["token"], "geometry")
        try:
            assert teachers.state["you"] == {"identity": "teacher", "moderator": True,
                                             "held": []}
            assert students.state["you"]["moderator"] is False
            with pytest.raises(VideoError) as refused:
                await students.act("lock")
            assert refused.value.code == 20403
            assert await teachers.act("lock") == {"locked": True}
            await students.wait(lambda m: m["type"] == "state" and m["locked"])
            assert await teachers.act("unlock") == {"locked": False}
        finally:
            await teachers.close()
            await students.close()
        with pytest.raises(VideoError) as forged:
            await ClassroomChannel.open(student["ws_server"],
                                        with_moderator_claim(student["token"]), "geometry")
        assert forged.value.code == 20107, forged.value.message  # the signature no longer fits

    asyncio.run(run())
    assert Classroom("geometry", server=hub.service_url,
                     hub_token=service_token(hub, "teacher")).state["locked"] is False


def test_a_room_locked_before_the_teachers_widget_joined_admits_it(hub: Hub) -> None:
    created = requests.post(f"{hub.service_url}video/v1/Rooms", data={"UniqueName": "calculus"},
                            headers={"Authorization": f"token {service_token(hub, 'teacher')}"},
                            timeout=30)
    assert created.status_code == 201, created.text
    raw = json.loads((hub.root / "service-data" / "jupyter_video" / "credentials.json")
                     .read_text())
    admin = Classroom("calculus", server=hub.service_url, credentials=Credentials(
        raw["account_sid"], raw["auth_token"], raw["api_key_sid"], raw["api_key_secret"],
        hub.service_url))
    assert admin.lock() == {"locked": True}  # the API key's holder: no hub user named
    teacher = widget_grant(hub, "teacher", "calculus")
    student = widget_grant(hub, "s1", "calculus")

    async def run() -> None:
        with pytest.raises(VideoError) as locked:
            await connect(student["token"], "calculus", hub.service_url,
                          ice_host_addresses=["127.0.0.1"])
        assert locked.value.code == 53105
        room = await connect(teacher["token"], "calculus", hub.service_url,
                             ice_host_addresses=["127.0.0.1"])
        try:
            assert room.local_participant.identity == "teacher"
        finally:
            await room.disconnect()

    asyncio.run(run())
