"""The room registry: the control plane's one place where rooms change.

REST handlers and signaling both call it; it validates against the model's
rules, saves every change to the store and tells listeners (signaling,
status callbacks, the media plane) what happened, with Twilio's event names.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from .. import sids
from ..errors import VideoError, not_found
from ..model import (
    Participant,
    ParticipantStatus,
    PublishedTrack,
    RecordingRules,
    Room,
    RoomStatus,
    RoomType,
    Rule,
    SubscribedTrack,
    SubscribeRules,
    TrackFacts,
    TrackKind,
    utcnow,
)
from ..model.room import (
    MAX_PARTICIPANTS,
    PARTICIPANT_DURATION_RANGE,
    ROOM_TIMEOUT_RANGE,
    check_range,
    check_unique_name,
)
from ..model.rules import INCLUDE_ALL
from ..model.track import PublicationState, SubscriptionState
from ..store import Query, Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RoomEvent:
    """Something that happened in a room, named as Twilio's StatusCallbackEvent."""

    name: str  # room-created, room-ended, participant-connected, track-added, ...
    room: Room
    participant: Participant | None = None
    track: PublishedTrack | None = None
    time: datetime = field(default_factory=utcnow)


Listener = Callable[[RoomEvent], Any]


@dataclass
class RoomDefaults:
    """Server-wide defaults for new rooms (from VideoApp's configuration)."""

    room_type: RoomType = RoomType.GROUP
    max_participants: int = 50
    empty_room_timeout: int = 5
    unused_room_timeout: int = 5
    max_participant_duration: int = 14400
    status_callback: str | None = None
    status_callback_method: str = "POST"
    media_region: str = "gll"


@dataclass(frozen=True)
class Page:
    """A slice of a listing and how many there are in all."""

    items: list[Any]
    total: int


class RoomRegistry:
    """Creates, finds and ends rooms and their participants, tracks and rules."""

    def __init__(
        self,
        store: Store,
        account_sid: str,
        defaults: RoomDefaults | None = None,
        timeout_minute: timedelta = timedelta(minutes=1),
    ) -> None:
        self.store = store
        self.account_sid = account_sid
        self.defaults = defaults or RoomDefaults()
        self.timeout_minute = timeout_minute
        self.listeners: list[Listener] = []

    # -- events ---------------------------------------------------------------

    def _emit(self, event: RoomEvent) -> None:
        for listener in list(self.listeners):
            try:
                listener(event)
            except Exception:  # a listener's bug must not break the room
                log.exception("room event listener failed on %s", event.name)

    # -- rooms ----------------------------------------------------------------

    def create_room(
        self,
        unique_name: str | None = None,
        room_type: RoomType | None = None,
        max_participants: int | None = None,
        empty_room_timeout: int | None = None,
        unused_room_timeout: int | None = None,
        max_participant_duration: int | None = None,
        **settings: Any,
    ) -> Room:
        """A new in-progress room; 53113 if an in-progress room has ``unique_name``."""
        room_type = room_type or self.defaults.room_type
        sid = sids.new_sid(sids.ROOM)
        name = check_unique_name(unique_name) if unique_name is not None else sid
        if unique_name is not None and self.find_in_progress(unique_name) is not None:
            raise VideoError(
                53113,
                f"Room '{unique_name}' is already in progress; complete it first "
                "or choose another UniqueName",
            )
        limit = min(MAX_PARTICIPANTS[room_type], self.defaults.max_participants)
        participants = max_participants if max_participants is not None else limit
        check_range(
            participants, (1, limit), 53107, f"MaxParticipants for a {room_type.value} room"
        )
        if settings.get("status_callback") is None and self.defaults.status_callback:
            settings["status_callback"] = self.defaults.status_callback
            settings.setdefault("status_callback_method", self.defaults.status_callback_method)
        settings.setdefault("media_region", self.defaults.media_region)
        room = Room(
            sid=sid,
            account_sid=self.account_sid,
            unique_name=name,
            type=room_type,
            max_participants=participants,
            empty_room_timeout=check_range(
                empty_room_timeout
                if empty_room_timeout is not None
                else self.defaults.empty_room_timeout,
                ROOM_TIMEOUT_RANGE,
                53109,
                "EmptyRoomTimeout (minutes)",
            ),
            unused_room_timeout=check_range(
                unused_room_timeout
                if unused_room_timeout is not None
                else self.defaults.unused_room_timeout,
                ROOM_TIMEOUT_RANGE,
                53109,
                "UnusedRoomTimeout (minutes)",
            ),
            max_participant_duration=check_range(
                max_participant_duration
                if max_participant_duration is not None
                else self.defaults.max_participant_duration,
                PARTICIPANT_DURATION_RANGE,
                53109,
                "MaxParticipantDuration (seconds)",
            ),
            **settings,
        )
        self.store.save(room)
        rules = INCLUDE_ALL if room.record_participants_on_connect else []
        self.store.save(RecordingRules(sid=room.sid, rules=[rule.to_json() for rule in rules]))
        self._emit(RoomEvent("room-created", room))
        return room

    def find_in_progress(self, unique_name: str) -> Room | None:
        return self.store.find(Room, unique_name=unique_name, status=RoomStatus.IN_PROGRESS.value)

    def find_joinable(self, sid_or_name: str) -> Room | None:
        """The in-progress room a client names by SID or unique name, None for a name
        no room in progress has; a SID of an ended room is 53118, an unknown one 53106
        (no room can be created under a SID)."""
        if not sids.is_sid(sid_or_name, sids.ROOM):
            return self.find_in_progress(sid_or_name)
        room = self.store.get(Room, sid_or_name)
        if room is None:
            raise VideoError(53106, f"Room {sid_or_name} not found")
        if room.status is not RoomStatus.IN_PROGRESS:
            raise VideoError(53118, f"Room {sid_or_name} has {room.status.value}")
        return room

    def get_room(self, sid_or_name: str) -> Room:
        """A room by SID, or the in-progress room with that unique name (20404 if none)."""
        room = (
            self.store.get(Room, sid_or_name)
            if sids.is_sid(sid_or_name, sids.ROOM)
            else self.find_in_progress(sid_or_name)
        )
        if room is None:
            raise not_found(f"/Rooms/{sid_or_name}")
        return room

    def list_rooms(
        self,
        status: RoomStatus | None = None,
        unique_name: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        offset: int = 0,
        limit: int = 50,
    ) -> Page:
        equal: dict[str, Any] = {}
        if status is not None:
            equal["status"] = status.value
        if unique_name is not None:
            equal["unique_name"] = unique_name
        query = Query(equal, created_after, created_before, offset, limit)
        return Page(self.store.list(Room, query), self.store.count(Room, query))

    def end_room(self, room: Room, status: RoomStatus = RoomStatus.COMPLETED) -> Room:
        """Complete (or fail) ``room``: everyone is disconnected, 53112 if it already ended."""
        now = utcnow()
        room.transition(status, now)
        for participant in self.connected_participants(room.sid):
            self._disconnect(room, participant, now)
        self.store.save(room)
        self._emit(RoomEvent("room-ended", room))
        return room

    def expire_rooms(self, now: datetime | None = None) -> list[Room]:
        """Complete every in-progress room whose empty or unused timeout has run out."""
        now = now or utcnow()
        ended = []
        for room in self.store.list(Room, Query({"status": RoomStatus.IN_PROGRESS.value})):
            expires = room.expires_at(self.timeout_minute)
            if expires is not None and expires <= now:
                ended.append(self.end_room(room))
        return ended

    def recover(self) -> None:
        """After a restart: nobody is still connected; empty rooms start their timeout now."""
        now = utcnow()
        for room in self.store.list(Room, Query({"status": RoomStatus.IN_PROGRESS.value})):
            participants = self.connected_participants(room.sid)
            for participant in participants:
                self._disconnect(room, participant, now, emit=False)
            if room.ever_joined and room.emptied_at is None:
                room.participants_left(now)
                self.store.save(room)

    # -- participants ---------------------------------------------------------

    def connected_participants(self, room_sid: str) -> list[Participant]:
        return [
            participant
            for status in (ParticipantStatus.CONNECTED, ParticipantStatus.RECONNECTING)
            for participant in self.store.list(
                Participant, Query({"room_sid": room_sid, "status": status.value})
            )
        ]

    def connect_participant(
        self, room: Room, identity: str, subscribe_rules: list[Rule] | None = None
    ) -> Participant:
        """A new connected participant in ``room`` (53118 ended, 53105 full), subscribing
        as ``subscribe_rules`` say (default: to everything)."""
        if room.status is not RoomStatus.IN_PROGRESS:
            raise VideoError(53118, f"Room {room.unique_name} has {room.status.value}")
        if len(self.connected_participants(room.sid)) >= room.max_participants:
            raise VideoError(
                53105, f"Room {room.unique_name} is full ({room.max_participants} participants)"
            )
        participant = Participant(
            sid=sids.new_sid(sids.PARTICIPANT),
            room_sid=room.sid,
            account_sid=self.account_sid,
            identity=identity,
        )
        room.participant_joined()
        self.store.save(participant)
        self.store.save(room)
        rules = SubscribeRules(sid=participant.sid, room_sid=room.sid)
        if subscribe_rules is not None:
            rules.replace(subscribe_rules)
        self.store.save(rules)
        self._emit(RoomEvent("participant-connected", room, participant))
        return participant

    def get_participant(self, room: Room, sid_or_identity: str) -> Participant:
        """A participant by SID, or the connected one with that identity (20404 if none)."""
        if sids.is_sid(sid_or_identity, sids.PARTICIPANT):
            participant = self.store.get(Participant, sid_or_identity)
            if participant is not None and participant.room_sid == room.sid:
                return participant
        else:
            for participant in self.connected_participants(room.sid):
                if participant.identity == sid_or_identity:
                    return participant
        raise not_found(f"/Rooms/{room.sid}/Participants/{sid_or_identity}")

    def list_participants(
        self,
        room: Room,
        status: ParticipantStatus | None = None,
        identity: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        offset: int = 0,
        limit: int = 50,
    ) -> Page:
        equal: dict[str, Any] = {"room_sid": room.sid}
        if status is not None:
            equal["status"] = status.value
        if identity is not None:
            equal["identity"] = identity
        query = Query(equal, created_after, created_before, offset, limit)
        return Page(self.store.list(Participant, query), self.store.count(Participant, query))

    def disconnect_participant(self, participant: Participant) -> Participant:
        """Remove a connected participant from its room (53112 if already gone)."""
        room = self.get_room(participant.room_sid)
        if not participant.is_connected:
            raise VideoError(53112, f"Participant {participant.sid} is already disconnected")
        self._disconnect(room, participant, utcnow())
        if not self.connected_participants(room.sid):
            room.participants_left()
            self.store.save(room)
        return participant

    def set_reconnecting(self, participant: Participant, reconnecting: bool) -> None:
        """Mark a participant whose signaling connection dropped (or came back)."""
        target = ParticipantStatus.RECONNECTING if reconnecting else ParticipantStatus.CONNECTED
        if participant.status is target or not participant.is_connected:
            return
        participant.transition(target)
        self.store.save(participant)

    def _disconnect(
        self, room: Room, participant: Participant, now: datetime, emit: bool = True
    ) -> None:
        for track in self.published_tracks(participant.sid):
            self.unpublish_track(room, participant, track, emit=emit)
        for subscription in self.subscribed_tracks(participant.sid):
            subscription.transition(SubscriptionState.UNSUBSCRIBED, now)
            self.store.save(subscription)
        participant.transition(ParticipantStatus.DISCONNECTED, now)
        self.store.save(participant)
        if emit:
            self._emit(RoomEvent("participant-disconnected", room, participant))

    # -- tracks ---------------------------------------------------------------

    def publish_track(
        self,
        room: Room,
        participant: Participant,
        name: str,
        kind: TrackKind,
        enabled: bool = True,
    ) -> PublishedTrack:
        track = PublishedTrack(
            sid=sids.new_sid(sids.TRACK),
            participant_sid=participant.sid,
            room_sid=room.sid,
            name=name,
            track_kind=kind,
            enabled=enabled,
        )
        self.store.save(track)
        self._emit(RoomEvent("track-added", room, participant, track))
        return track

    def unpublish_track(
        self, room: Room, participant: Participant, track: PublishedTrack, emit: bool = True
    ) -> None:
        track.transition(PublicationState.UNPUBLISHED)
        self.store.save(track)
        if emit:
            self._emit(RoomEvent("track-removed", room, participant, track))

    def set_track_enabled(
        self, room: Room, participant: Participant, track: PublishedTrack, enabled: bool
    ) -> None:
        if track.enabled == enabled:
            return
        track.set_enabled(enabled)
        self.store.save(track)
        name = "track-enabled" if enabled else "track-disabled"
        self._emit(RoomEvent(name, room, participant, track))

    def published_tracks(self, participant_sid: str) -> list[PublishedTrack]:
        return self.store.list(
            PublishedTrack,
            Query({"participant_sid": participant_sid, "state": PublicationState.PUBLISHED.value}),
        )

    def get_published_track(self, participant: Participant, sid: str) -> PublishedTrack:
        track = self.store.get(PublishedTrack, sid)
        if track is None or track.participant_sid != participant.sid:
            raise not_found(f"/PublishedTracks/{sid}")
        return track

    def subscribed_tracks(self, participant_sid: str) -> list[SubscribedTrack]:
        return self.store.list(
            SubscribedTrack,
            Query(
                {"participant_sid": participant_sid, "state": SubscriptionState.SUBSCRIBED.value}
            ),
        )

    def get_subscribed_track(self, participant: Participant, track_sid: str) -> SubscribedTrack:
        subscription = self.store.get(
            SubscribedTrack, SubscribedTrack.key(participant.sid, track_sid)
        )
        if subscription is None or subscription.state is not SubscriptionState.SUBSCRIBED:
            raise not_found(f"/SubscribedTracks/{track_sid}")
        return subscription

    def record_subscription(
        self, subscriber: Participant, track: PublishedTrack, subscribed: bool
    ) -> SubscribedTrack:
        """Note that ``subscriber`` now does (or no longer does) receive ``track``."""
        key = SubscribedTrack.key(subscriber.sid, track.sid)
        subscription = self.store.get(SubscribedTrack, key)
        target = SubscriptionState.SUBSCRIBED if subscribed else SubscriptionState.UNSUBSCRIBED
        if subscription is None:
            subscription = SubscribedTrack(
                sid=key,
                track_sid=track.sid,
                participant_sid=subscriber.sid,
                publisher_sid=track.participant_sid,
                room_sid=track.room_sid,
                name=track.name,
                track_kind=track.track_kind,
                enabled=track.enabled,
                state=target,
            )
        elif subscription.state is not target:
            subscription.transition(target)
        self.store.save(subscription)
        return subscription

    # -- rules ----------------------------------------------------------------

    def subscribe_rules(self, participant: Participant) -> SubscribeRules:
        rules = self.store.get(SubscribeRules, participant.sid)
        if rules is None:  # participants recorded before rules existed
            rules = SubscribeRules(sid=participant.sid, room_sid=participant.room_sid)
        return rules

    def update_subscribe_rules(self, participant: Participant, rules: list[Rule]) -> SubscribeRules:
        current = self.subscribe_rules(participant)
        current.replace(rules)
        self.store.save(current)
        # Not one of Twilio's status callback events: it tells signaling to
        # apply the new rules to the live subscriptions.
        self._emit(
            RoomEvent("subscribe-rules-updated", self.get_room(participant.room_sid), participant)
        )
        return current

    def recording_rules(self, room: Room) -> RecordingRules:
        return self.store.get(RecordingRules, room.sid) or RecordingRules(sid=room.sid)

    def update_recording_rules(self, room: Room, rules: list[Rule]) -> RecordingRules:
        current = self.recording_rules(room)
        current.replace(rules)
        self.store.save(current)
        # Not a status callback event either: live rooms start and stop recordings.
        self._emit(RoomEvent("recording-rules-updated", room))
        return current

    def track_facts(self, track: PublishedTrack) -> TrackFacts:
        publisher = self.store.get(Participant, track.participant_sid)
        return TrackFacts(
            track_sid=track.sid,
            track_name=track.name,
            kind=track.track_kind.value,
            publisher_sid=track.participant_sid,
            publisher_identity=publisher.identity if publisher else "",
        )

    def selected_tracks(self, subscriber: Participant) -> Iterable[PublishedTrack]:
        """The tracks of others in the room that ``subscriber``'s rules select."""
        rules = self.subscribe_rules(subscriber)
        for other in self.connected_participants(subscriber.room_sid):
            if other.sid == subscriber.sid:
                continue
            for track in self.published_tracks(other.sid):
                if rules.selects(self.track_facts(track)):
                    yield track
