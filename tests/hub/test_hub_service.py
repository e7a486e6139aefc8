"""One video service for every user of a real JupyterHub.

A hub on 127.0.0.1 (DummyAuthenticator, SimpleLocalProcessSpawner, the
README's config block, configurable-http-proxy) runs ``jupyter-video-hub``;
``teacher`` (group ``teachers``), ``s1`` and ``s2`` (group ``students``) have
their own single-user servers, each of which relays to the service. The tests
go through the hub's proxy as users do.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import requests

from jupyter_video.client import RemoteVideoTrack, RoomEvent, connect
from jupyter_video.errors import VideoError

from ..widgets.browser import LOOPBACK, first_track, take_frames
from .hub_process import USERS, Hub, HubError, missing_prerequisites
from .kernels import UserKernel

pytestmark = [
    pytest.mark.skipif(bool(missing_prerequisites()),
                       reason="missing: " + ", ".join(missing_prerequisites())),
    pytest.mark.timeout(240),
]

SERVICE_SCOPE = "access:services!service=video"
MODERATE = "custom:video:moderate"


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


def server_token(hub: Hub, user: str) -> str:
    """A token for ``user``'s own server (what their JupyterLab page holds)."""
    return hub.user_token(user, [f"access:servers!server={user}/"])


def service_token(hub: Hub, user: str) -> str:
    """A token for the service itself, with whatever of the moderator scope ``user`` has."""
    scopes = [SERVICE_SCOPE, "read:users:groups!user"]
    return hub.user_token(user, [*scopes, MODERATE] if user == "teacher" else scopes)


def relay(hub: Hub, user: str, path: str, method: str = "GET",
          **kwargs: Any) -> requests.Response:
    """A request to ``user``'s own server, which relays it to the service."""
    return requests.request(method, f"{hub.url}user/{user}/{path}", timeout=30,
                            headers={"Authorization": f"token {server_token(hub, user)}"},
                            **kwargs)


def service(hub: Hub, user: str, path: str, method: str = "GET",
            **kwargs: Any) -> requests.Response:
    return requests.request(method, f"{hub.service_url}{path}", timeout=30,
                            headers={"Authorization": f"token {service_token(hub, user)}"},
                            **kwargs)


def create_room(hub: Hub, name: str) -> dict[str, Any]:
    response = service(hub, "teacher", "video/v1/Rooms", "POST", data={"UniqueName": name})
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def test_a_student_may_not_start_or_complete_a_room_and_the_teacher_may(hub: Hub) -> None:
    refused = relay(hub, "s1", "video/token?room=algebra")
    assert refused.status_code == 403
    assert refused.json()["code"] == 20403 and MODERATE in refused.json()["message"]
    created = service(hub, "s1", "video/v1/Rooms", "POST", data={"UniqueName": "algebra"})
    assert created.status_code == 403 and created.json()["code"] == 20403
    assert MODERATE in created.json()["message"]

    room = create_room(hub, "algebra")
    assert room["unique_name"] == "algebra" and room["status"] == "in-progress"
    # Once the room is in progress a student gets a token for it, as themselves.
    grant = relay(hub, "s1", "video/token?room=algebra&identity=teacher").json()
    assert grant["identity"] == "s1" and grant["room"] == "algebra"
    assert grant["ws_server"] == f"ws://127.0.0.1:{hub.port}/services/video/video/signaling"
    assert grant["rest_base"] == f"{hub.service_url}video/v1"

    completing = service(hub, "s1", f"video/v1/Rooms/{room['sid']}", "POST",
                         data={"Status": "completed"})
    assert completing.status_code == 403, completing.text
    body = completing.json()
    assert body["code"] == 20403 and body["status"] == 403 and MODERATE in body["message"]
    completed = service(hub, "teacher", f"video/v1/Rooms/{room['sid']}", "POST",
                        data={"Status": "completed"})
    assert completed.status_code == 200, completed.text
    assert completed.json()["status"] == "completed"
    # The student's grant named the room by its SID: the token joins nothing now, and
    # never creates a new "algebra" (a moderator's would).
    with pytest.raises(VideoError) as stale:
        asyncio.run(connect(grant["token"], "algebra", hub.service_url,
                            ice_host_addresses=["127.0.0.1"]))
    assert stale.value.code == 53118
    again = service(hub, "teacher", "video/v1/Rooms?UniqueName=algebra&Status=in-progress")
    assert again.json()["rooms"] == []


def test_the_service_exposes_nothing_else_of_jupyter(hub: Hub) -> None:
    for path in ("api/contents", "api/kernels", "api/terminals", "lab", "tree"):
        response = service(hub, "s1", path)
        assert response.status_code == 404, (path, response.status_code)
    assert service(hub, "s1", "api/status").status_code == 200
    assert service(hub, "s1", "video/v1/Rooms").status_code == 200
    # Without a hub token the video API answers Twilio's 20003, not a login page.
    anonymous = requests.get(f"{hub.service_url}video/v1/Rooms", timeout=30)
    assert anonymous.status_code in (401, 403) and anonymous.json()["code"] == 20003


def test_twilio_helper_library_works_against_the_service_with_its_api_key(hub: Hub) -> None:
    from twilio.rest import Client

    creds = json.loads((hub.root / "service-data" / "jupyter_video" / "credentials.json")
                       .read_text())
    client = Client(creds["api_key_sid"], creds["api_key_secret"], creds["account_sid"])
    client.video.base_url = hub.service_url + "video"
    room = client.video.v1.rooms.create(unique_name="staff-meeting")
    assert room.status == "in-progress" and room.unique_name == "staff-meeting"
    assert client.video.v1.rooms(room.sid).update(status="completed").status == "completed"


KERNEL_JOIN = """\
import asyncio, numpy as np, jupyter_video
from jupyter_video import LocalVideoTrack, RemoteVideoTrack

def pattern(color):
    frame = np.empty((240, 320, 3), np.uint8)
    frame[:] = color
    while True:
        yield frame

seen = {{}}

async def follow(track, who):
    async for frame in track.frames():
        seen[who] = frame

def on_subscribed(event):
    if isinstance(event.track, RemoteVideoTrack):
        asyncio.ensure_future(follow(event.track, event.participant.identity))

room = await jupyter_video.connect(
    None, "lecture", tracks=[LocalVideoTrack.from_frames(pattern({color}), fps=15)],
    ice_host_addresses=["127.0.0.1"])
room.on("track_subscribed", on_subscribed)
print(room.local_participant.identity, room.sid)
"""

KERNEL_FRAME = """\
for _ in range(200):
    if {who!r} in seen:
        break
    await asyncio.sleep(0.1)
frame = seen[{who!r}]
print(list(frame.shape), [round(float(frame[..., c].mean())) for c in range(3)])
"""

TEACHER_COLOR = (40, 200, 220)
S1_COLOR = (220, 120, 40)


def kernel_sees(kernel: UserKernel, who: str, color: tuple[int, int, int]) -> None:
    """``kernel``'s newest frame from ``who``: the right size and ``who``'s colour."""
    line = kernel.run(KERNEL_FRAME.format(who=who)).strip().splitlines()[-1]
    shape, _, means = line.partition("] [")
    assert json.loads(shape + "]") == [240, 320, 3], line
    channels = json.loads("[" + means)
    assert all(abs(mean - want) < 25 for mean, want in zip(channels, color, strict=True)), (
        f"{kernel.user} sees {who} as {channels}, sent {color}")


def participants(hub: Hub, room: str, status: str) -> list[dict[str, Any]]:
    response = service(hub, "teacher", f"video/v1/Rooms/{room}/Participants",
                       params={"Status": status})
    response.raise_for_status()
    return response.json()["participants"]  # type: ignore[no-any-return]


def last_activity(hub: Hub, user: str) -> datetime:
    stamp = hub.user_model(user)["servers"][""]["last_activity"]
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


async def test_kernels_of_s1_and_the_teacher_share_one_room_across_a_service_restart(
    hub: Hub,
) -> None:
    room = create_room(hub, "lecture")
    teacher = UserKernel(hub.url, "teacher", server_token(hub, "teacher"))
    s1 = UserKernel(hub.url, "s1", server_token(hub, "s1"))
    guest = None
    try:
        # The same cell in each user's kernel; the identity is the hub user's.
        joined = {kernel.user: kernel.run(KERNEL_JOIN.format(color=color)).split()
                  for kernel, color in ((teacher, TEACHER_COLOR), (s1, S1_COLOR))}
        assert joined == {"teacher": ["teacher", room["sid"]], "s1": ["s1", room["sid"]]}
        kernel_sees(teacher, "s1", S1_COLOR)
        kernel_sees(s1, "teacher", TEACHER_COLOR)
        assert sorted(p["identity"] for p in participants(hub, "lecture", "connected")) == [
            "s1", "teacher"]

        # s2 joins from this process (not from their server): the service posts
        # s2's activity to the hub, so the idle culler keeps s2's server.
        before = last_activity(hub, "s2")
        grant = relay(hub, "s2", "video/token?room=lecture").json()
        assert grant["identity"] == "s2"
        guest = await connect(grant["token"], "lecture", grant["ws_server"],
                              ice_host_addresses=LOOPBACK)
        seen: list[RemoteVideoTrack] = []

        def on_subscribed(event: RoomEvent) -> None:
            if isinstance(event.track, RemoteVideoTrack):
                seen.append(event.track)

        guest.on("track_subscribed", on_subscribed)
        frames = await take_frames(await first_track(seen, "a kernel's video"), 3)
        assert frames[-1].shape == (240, 320, 3)
        deadline = time.monotonic() + 15
        while last_activity(hub, "s2") <= before and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
        assert last_activity(hub, "s2") > before, "no hub activity posted for s2"

        # Students change their own SubscribeRules, not anyone else's.
        rules = json.dumps([{"type": "exclude", "all": True}])
        own = relay(hub, "s2", "video/v1/Rooms/lecture/Participants/s2/SubscribeRules",
                    "POST", data={"Rules": rules})
        assert own.status_code == 200, own.text
        other = relay(hub, "s2", "video/v1/Rooms/lecture/Participants/teacher/SubscribeRules",
                      "POST", data={"Rules": rules})
        assert other.status_code == 403 and other.json()["code"] == 20403
        await guest.disconnect()
        guest = None

        # The hub restarts a service that died; the room's records are kept and
        # the participants join the same room again.
        pid = hub.service_pid()
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        await asyncio.to_thread(hub.wait_for_service, 60)
        assert hub.service_pid() not in (None, pid)
        kept = service(hub, "teacher", "video/v1/Rooms/lecture").json()
        assert kept["sid"] == room["sid"] and kept["status"] == "in-progress"
        for kernel, color in ((teacher, TEACHER_COLOR), (s1, S1_COLOR)):
            kernel.run("await room.disconnect()\nseen.clear()")
            assert kernel.run(KERNEL_JOIN.format(color=color)).split() == [
                kernel.user, room["sid"]]
        kernel_sees(teacher, "s1", S1_COLOR)
        kernel_sees(s1, "teacher", TEACHER_COLOR)
        records = service(hub, "teacher", "video/v1/Rooms/lecture/Participants").json()
        by_status = sorted((p["identity"], p["status"]) for p in records["participants"])
        assert by_status == [("s1", "connected"), ("s1", "disconnected"), ("s2", "disconnected"),
                             ("teacher", "connected"), ("teacher", "disconnected")]
    finally:
        if guest is not None:
            await guest.disconnect()
        for kernel in (teacher, s1):
            kernel.close()


def test_a_service_that_fails_to_start_is_reported_with_its_own_log_line(
    tmp_path: Path,
) -> None:
    broken = Hub(tmp_path / "broken", service_args=["--VideoApp.student_room_policy=("])
    with pytest.raises(HubError) as failure:
        broken.start(timeout=60)
    message = str(failure.value)
    assert "video service exited with status 1" in message
    assert "VideoApp.student_room_policy is not a regular expression" in message
    assert broken.leftover_pids() == []
