"""twilio-video.js participants in Peer-to-Peer and Go rooms, in headless Chromium: each
pair of participants negotiates its own peer connection through the server, media goes
straight between the pages, and the SFU forwards nothing."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import numpy as np
import pytest

from jupyter_video.client import (
    LocalDataTrack,
    LocalVideoTrack,
    RemoteAudioTrack,
    RemoteDataTrack,
    RemoteVideoTrack,
    connect,
)

from ..client.participants import Recorder, subscribed_to
from ..conftest import make_twilio_client
from ..server_process import ServerProcess
from ..widgets.browser import (
    LOOPBACK,
    media_on_loopback_server,
    moving_frames,
    requires_browser,
    room_name,
    take_frames,
    token,
)
from .mesh import MeshPage, media_plane_counters

pytestmark = [requires_browser, pytest.mark.timeout(240)]


server = media_on_loopback_server("p2p-browser")


@pytest.fixture
def pages(server: ServerProcess) -> Iterator[list[MeshPage]]:
    opened: list[MeshPage] = []
    yield opened
    for page in opened:
        page.close()


def open_pages(server: ServerProcess, pages: list[MeshPage], count: int) -> list[MeshPage]:
    pages.extend(MeshPage(server) for _ in range(count))
    return pages


def forwarded(server: ServerProcess) -> tuple[float, float]:
    counters = media_plane_counters(server)
    return (counters["jupyter_video_packets_forwarded_total"],
            counters["jupyter_video_bytes_forwarded_total"])


def test_two_pages_in_a_peer_to_peer_room_see_and_hear_each_other_with_the_sfu_idle(
    server: ServerProcess, pages: list[MeshPage]
) -> None:
    room = make_twilio_client(server).video.v1.rooms.create(
        unique_name=room_name(), type="peer-to-peer")
    alice, bob = open_pages(server, pages, 2)
    before = forwarded(server)
    for page, key in ((alice, "alice"), (bob, "bob")):
        joined = page.connect(key, room.unique_name, camera=True, tone=True, data=True)
        assert joined.get("error") is None, joined
        assert joined["sid"] == room.sid
        page.call("loud", key, True)
    alice.wait("alice", lambda s: s["participants"] == ["bob"])
    bob.wait("bob", lambda s: s["participants"] == ["alice"])

    for page in (alice, bob):
        page.receives(video=1, audio=1)
        assert page.mesh("peerConnections")["connected"] == 1
    frame = alice.poll("sample", {"key": "alice", "identity": "bob"})
    assert frame["mean"] > 20 and (frame["width"], frame["height"]) == (320, 240)
    frame = bob.poll("sample", {"key": "bob", "identity": "alice"})
    assert frame["mean"] > 20 and (frame["width"], frame["height"]) == (320, 240)

    # data tracks, both ways, straight between the pages
    alice.call("whenPublishedSend", "alice", ["hello bob"])
    bob.call("whenPublishedSend", "bob", ["hello alice"])
    bob.wait("bob", lambda s: {"identity": "alice", "data": "hello bob"} in s["messages"])
    alice.wait("alice", lambda s: {"identity": "bob", "data": "hello alice"} in s["messages"])

    assert forwarded(server) == before  # not one RTP packet through the SFU
    client = make_twilio_client(server)
    participants = client.video.v1.rooms(room.sid).participants.list(status="connected")
    assert sorted(p.identity for p in participants) == ["alice", "bob"]
    for participant in participants:
        published = client.video.v1.rooms(room.sid).participants(participant.sid) \
            .published_tracks.list()
        assert sorted(track.kind for track in published) == ["audio", "data", "video"]


def test_three_pages_form_a_mesh_and_one_leaving_closes_only_its_pairs(
    server: ServerProcess, pages: list[MeshPage]
) -> None:
    name = room_name()
    make_twilio_client(server).video.v1.rooms.create(unique_name=name, type="peer-to-peer")
    keys = ["ann", "ben", "cat"]
    mesh = open_pages(server, pages, 3)
    for page, key in zip(mesh, keys, strict=True):
        joined = page.connect(key, name, camera=True, tone=True)
        assert joined.get("error") is None, joined
        page.call("loud", key, True)
    for page, key in zip(mesh, keys, strict=True):
        page.wait(key, lambda s, key=key: sorted(s["participants"]) ==
                  sorted(k for k in keys if k != key))
        page.receives(video=2, audio=2)
        assert page.mesh("peerConnections")["connected"] == 2
        for other in keys:
            if other != key:
                frame = page.poll("sample", {"key": key, "identity": other})
                assert (frame["width"], frame["height"]) == (320, 240)

    mesh[2].call("disconnect", "cat")
    for page, key in zip(mesh[:2], keys[:2], strict=True):
        page.wait(key, lambda s: "cat" not in s["participants"])
        page.until("cat's pair closed", lambda page=page: page.mesh("peerConnections")
                   ["states"].count("closed") == 1)
        assert page.mesh("peerConnections")["connected"] == 1
    # ann and ben still see each other after cat left
    frame = mesh[0].poll("sample", {"key": "ann", "identity": "ben"})
    assert frame["mean"] > 20


def test_a_go_room_takes_two_participants_and_refuses_a_third_with_53105(
    server: ServerProcess, pages: list[MeshPage]
) -> None:
    room = make_twilio_client(server).video.v1.rooms.create(unique_name=room_name(), type="go")
    first, second = open_pages(server, pages, 2)
    assert first.connect("one", room.unique_name, camera=True).get("error") is None
    assert second.connect("two", room.unique_name, camera=True).get("error") is None
    first.receives(video=1, audio=0)
    third = first.connect("three", room.unique_name)
    assert third["error"]["code"] == 53105, third
    assert first.call("state", "one")["participants"] == ["two"]


async def test_a_python_participant_and_a_browser_share_a_go_room(
    server: ServerProcess, pages: list[MeshPage]
) -> None:
    room = make_twilio_client(server).video.v1.rooms.create(unique_name=room_name(), type="go")
    [page] = open_pages(server, pages, 1)
    before = forwarded(server)
    chat = LocalDataTrack(name="notes")
    kernel = await connect(token(server, "kernel"), room.unique_name, server.url,
                           ice_host_addresses=LOOPBACK,
                           tracks=[LocalVideoTrack.from_frames(moving_frames()), chat])
    events = Recorder(kernel)
    try:
        joined = await asyncio.to_thread(page.connect, "browser", room.unique_name,
                                         camera=True, tone=True, data=True)
        assert joined.get("error") is None, joined
        await asyncio.to_thread(page.call, "loud", "browser", True)

        # the browser's camera, decoded in Python at the size it was captured
        video = (await events.wait("track_subscribed", subscribed_to("video"))).track
        assert isinstance(video, RemoteVideoTrack)
        frames = await asyncio.wait_for(take_frames(video, 10), 30)
        assert frames[-1].shape == (240, 320, 3) and frames[-1].mean() > 20
        # the browser's tone, heard in Python
        sound = (await events.wait("track_subscribed", subscribed_to("audio"))).track
        assert isinstance(sound, RemoteAudioTrack)

        async def loudest(samples: int) -> float:
            peak, heard = 0.0, 0
            async for chunk in sound.frames():
                peak, heard = max(peak, float(np.abs(chunk).max())), heard + len(chunk)
                if peak > 3000 or heard >= samples:
                    break
            return peak

        assert await asyncio.wait_for(loudest(48000 * 5), 20) > 3000  # the tone, not silence
        # the kernel's frames, shown in the page
        frame = await asyncio.to_thread(page.poll, "sample",
                                        {"key": "browser", "identity": "kernel"})
        assert frame["mean"] > 60 and (frame["width"], frame["height"]) == (320, 240)

        # data both ways
        notes = (await events.wait("track_subscribed", subscribed_to("data"))).track
        assert isinstance(notes, RemoteDataTrack)
        await asyncio.to_thread(page.call, "whenPublishedSend", "browser", ["from the page"])
        await events.wait("track_message", lambda e: e.message == "from the page")
        chat.send("from the kernel")
        await asyncio.to_thread(page.wait, "browser", lambda s: {
            "identity": "kernel", "data": "from the kernel"} in s["messages"])

        assert forwarded(server) == before
    finally:
        await kernel.disconnect()
