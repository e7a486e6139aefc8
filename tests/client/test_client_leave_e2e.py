"""A participant who leaves is announced to the others (needs the server to handle
``disconnect``, ``bye`` and the close arriving together, as twilio-video sends them)."""

from __future__ import annotations

import pytest

from jupyter_video.client import LocalDataTrack, RoomEvent, RoomState

from .participants import room_name

pytestmark = pytest.mark.timeout(90)


async def test_a_participant_who_leaves_is_announced_to_the_others(join) -> None:
    name = room_name()
    alice, seen = await join("alice", name)
    bob, _ = await join("bob", name, tracks=[LocalDataTrack(name="chat")])
    bob_sid = bob.local_participant.sid

    def from_bob(event: RoomEvent) -> bool:
        return event.participant is not None and event.participant.sid == bob_sid

    await seen.wait("track_subscribed", from_bob)
    await bob.disconnect()
    assert bob.state is RoomState.DISCONNECTED
    await seen.wait("participant_disconnected", from_bob, timeout=10)
    assert bob_sid not in alice.participants
    unsubscribed = await seen.wait("track_unsubscribed", from_bob)
    assert unsubscribed.publication is not None and not unsubscribed.publication.is_subscribed
