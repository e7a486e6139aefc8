"""Twilio Video v1 JSON representations of the model's records."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote

from ..model import (
    Participant,
    PublishedTrack,
    Recording,
    RecordingRules,
    Room,
    SubscribedTrack,
    SubscribeRules,
)


def iso(value: datetime | None) -> str | None:
    """Twilio's ISO 8601 form: UTC, whole seconds, ``Z``."""
    if value is None:
        return None
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class Urls:
    """Absolute resource URLs under ``root`` (``http://host:port{base_url}video/v1``)."""

    def __init__(self, root: str) -> None:
        self.root = root.rstrip("/")

    def room(self, room_sid: str) -> str:
        return f"{self.root}/Rooms/{quote(room_sid, safe='')}"

    def participant(self, room_sid: str, participant_sid: str) -> str:
        return f"{self.room(room_sid)}/Participants/{participant_sid}"

    def recording(self, recording_sid: str, room_sid: str | None = None) -> str:
        """``/Recordings/RT...``, or ``/Rooms/RM.../Recordings/RT...`` when listed by room."""
        parent = self.room(room_sid) if room_sid is not None else self.root
        return f"{parent}/Recordings/{recording_sid}"


def room_json(room: Room, urls: Urls) -> dict[str, Any]:
    url = urls.room(room.sid)
    return {
        "sid": room.sid,
        "status": room.status.value,
        "date_created": iso(room.date_created),
        "date_updated": iso(room.date_updated),
        "account_sid": room.account_sid,
        "enable_turn": room.enable_turn,
        "unique_name": room.unique_name,
        "status_callback": room.status_callback,
        "status_callback_method": room.status_callback_method,
        "end_time": iso(room.end_time),
        "duration": room.duration,
        "type": room.type.value,
        "max_participants": room.max_participants,
        "max_participant_duration": room.max_participant_duration,
        "max_concurrent_published_tracks": room.max_concurrent_published_tracks,
        "record_participants_on_connect": room.record_participants_on_connect,
        "video_codecs": list(room.video_codecs),
        "media_region": room.media_region,
        "audio_only": room.audio_only,
        "empty_room_timeout": room.empty_room_timeout,
        "unused_room_timeout": room.unused_room_timeout,
        "large_room": room.large_room,
        "url": url,
        "links": {
            "participants": f"{url}/Participants",
            "recordings": f"{url}/Recordings",
            "recording_rules": f"{url}/RecordingRules",
            "transcriptions": f"{url}/Transcriptions",
        },
    }


def participant_json(participant: Participant, urls: Urls) -> dict[str, Any]:
    url = urls.participant(participant.room_sid, participant.sid)
    return {
        "sid": participant.sid,
        "room_sid": participant.room_sid,
        "account_sid": participant.account_sid,
        "status": participant.status.value,
        "identity": participant.identity,
        "date_created": iso(participant.date_created),
        "date_updated": iso(participant.date_updated),
        "start_time": iso(participant.start_time),
        "end_time": iso(participant.end_time),
        "duration": participant.duration,
        "url": url,
        "links": {
            "published_tracks": f"{url}/PublishedTracks",
            "subscribed_tracks": f"{url}/SubscribedTracks",
            "subscribe_rules": f"{url}/SubscribeRules",
            "anonymize": f"{url}/Anonymize",
        },
    }


def published_track_json(track: PublishedTrack, urls: Urls) -> dict[str, Any]:
    return {
        "sid": track.sid,
        "participant_sid": track.participant_sid,
        "room_sid": track.room_sid,
        "name": track.name,
        "date_created": iso(track.date_created),
        "date_updated": iso(track.date_updated),
        "enabled": track.enabled,
        "kind": track.track_kind.value,
        "url": f"{urls.participant(track.room_sid, track.participant_sid)}"
        f"/PublishedTracks/{track.sid}",
    }


def subscribed_track_json(subscription: SubscribedTrack, urls: Urls) -> dict[str, Any]:
    return {
        "sid": subscription.track_sid,
        "participant_sid": subscription.participant_sid,
        "publisher_sid": subscription.publisher_sid,
        "room_sid": subscription.room_sid,
        "name": subscription.name,
        "date_created": iso(subscription.date_created),
        "date_updated": iso(subscription.date_updated),
        "enabled": subscription.enabled,
        "kind": subscription.track_kind.value,
        "url": f"{urls.participant(subscription.room_sid, subscription.participant_sid)}"
        f"/SubscribedTracks/{subscription.track_sid}",
    }


def subscribe_rules_json(rules: SubscribeRules) -> dict[str, Any]:
    return {
        "participant_sid": rules.sid,
        "room_sid": rules.room_sid,
        "rules": rules.rules,
        "date_created": iso(rules.date_created),
        "date_updated": iso(rules.date_updated),
    }


def recording_rules_json(rules: RecordingRules) -> dict[str, Any]:
    return {
        "room_sid": rules.sid,
        "rules": rules.rules,
        "date_created": iso(rules.date_created),
        "date_updated": iso(rules.date_updated),
    }


def recording_json(recording: Recording, urls: Urls, in_room: bool = False) -> dict[str, Any]:
    """A Recording, as ``/Recordings`` (or, ``in_room``, ``/Rooms/{sid}/Recordings``) shows it."""
    url = urls.recording(recording.sid, recording.room_sid if in_room else None)
    return {
        "account_sid": recording.account_sid,
        "status": recording.status.value,
        "date_created": iso(recording.date_created),
        "date_updated": iso(recording.date_updated),
        "sid": recording.sid,
        "source_sid": recording.source_sid,
        "room_sid": recording.room_sid,
        "size": recording.size,
        "type": recording.type,
        "duration": recording.duration,
        "container_format": recording.container_format,
        "codec": recording.codec,
        "grouping_sids": recording.grouping_sids,
        "track_name": recording.track_name,
        "offset": recording.offset,
        "media_external_location": None,
        "status_callback": None,
        "status_callback_method": "POST",
        "url": url,
        "links": {"media": f"{url}/Media"},
    }
