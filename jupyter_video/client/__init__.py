"""Python participants: join rooms from a kernel or a script.

    room = await connect(token, "lab", tracks=[LocalVideoTrack.from_frames(frames)])
    room.on("track_subscribed", lambda event: print(event.track))
    await room.disconnect()

Speaks to the server what twilio-video.js 2.x speaks (docs/signaling.md).
"""

from .events import RoomEvent
from .participant import LocalParticipant, ParticipantState, RemoteParticipant
from .publication import LocalTrackPublication, RemoteTrackPublication
from .room import Room, RoomState, connect
from .track import (
    LocalAudioTrack,
    LocalDataTrack,
    LocalVideoTrack,
    RemoteAudioTrack,
    RemoteDataTrack,
    RemoteVideoTrack,
    TrackKind,
)

__all__ = [
    "LocalAudioTrack",
    "LocalDataTrack",
    "LocalParticipant",
    "LocalTrackPublication",
    "LocalVideoTrack",
    "ParticipantState",
    "RemoteAudioTrack",
    "RemoteDataTrack",
    "RemoteParticipant",
    "RemoteTrackPublication",
    "RemoteVideoTrack",
    "Room",
    "RoomEvent",
    "RoomState",
    "TrackKind",
    "connect",
]
