"""The classroom's control plane: moderation, hands, chat history, breakouts, monitor.

It sits beside the Twilio-compatible server and acts through it: muting goes
through ``Conference.set_track_enabled`` (the media plane stops forwarding the
publication at once), removing through the registry (the participant is
disconnected as a REST ``Status=disconnected`` would), locking through the
conference's admission checks. Participants hear about the classroom on their
own channel (a WebSocket next to signaling, :mod:`.handlers`), which
twilio-video.js apps never open.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from ..errors import RoomError, VideoError
from ..model import Participant, Room, RoomStatus
from ..server.live import Conference, LiveParticipant
from ..server.registry import RoomEvent, RoomRegistry
from ..store import Query, Store
from ..tokens import AccessToken
from .grant import ClassroomVideoGrant
from .model import (
    MODERATED,
    Action,
    Breakouts,
    ChatMessage,
    ClassroomRecord,
    ClassroomState,
    assign_evenly,
    breakout_names,
    check_kind,
    check_reaction,
    refuse,
)
from .monitor import Monitor

log = logging.getLogger(__name__)

MOVE_TOKEN_TTL = 4 * 3600
BREAKOUT_GRACE = 10.0
"""Seconds after a recall before the breakouts are completed: everyone moved has left
by then; whoever stayed (a participant without a classroom channel) is disconnected."""


@dataclass(frozen=True)
class Actor:
    """Who asks: an identity (None for the REST API key's holder) and whether they moderate."""

    identity: str | None
    moderator: bool

    @property
    def name(self) -> str:
        return self.identity or "the teacher"


class Channel(Protocol):
    """A participant's classroom channel (its WebSocket), as the control plane sees it."""

    identity: str
    room: str
    moderator: bool

    def send(self, message: dict[str, Any]) -> None:
        """Send one JSON message."""

    def close(self) -> None:
        """Close the channel."""


class Classrooms:
    """Every classroom of this server: one state per main room, the channels open to it."""

    def __init__(
        self,
        conference: Conference,
        registry: RoomRegistry,
        store: Store,
        token_key: tuple[str, str, str],
        moderators: Iterable[str] = (),
    ) -> None:
        self.conference = conference
        self.registry = registry
        self.store = store
        self.token_key = token_key  # account SID, API key SID, secret: move tokens
        self.moderators = set(moderators)
        self.granted: set[str] = set()
        """Identities whose Access Token carried the moderator claim (a hub's teachers)."""
        self.states: dict[str, ClassroomState] = {}
        self.main_of: dict[str, str] = {}  # breakout room name -> main room name
        self.channels: dict[str, set[Channel]] = collections.defaultdict(set)  # room name ->
        self.members: dict[str, set[str]] = collections.defaultdict(set)  # main -> identities
        self.monitor = Monitor()
        self._timers: dict[str, asyncio.TimerHandle] = {}
        # Breakouts open before a restart: their rooms still belong to the main room
        # (its state itself is loaded when the room is used again, state()).
        for record in store.list(ClassroomRecord):
            for name in (record.state.get("breakouts") or {}).get("rooms", ()):
                self.main_of[name] = record.room_name
        conference.admission.append(self._admit)
        conference.track_hold = self._holds
        conference.spotlight = self._spotlit
        registry.listeners.append(self._on_room_event)

    # -- who and where -----------------------------------------------------------

    def is_moderator(self, identity: str | None) -> bool:
        return identity is None or identity in self.moderators or identity in self.granted

    def grant_moderator(self, identity: str) -> None:
        """``identity`` showed a token whose signed claim says it moderates (.grant)."""
        self.granted.add(identity)

    def main(self, room: str) -> str:
        """The main room a room belongs to (itself unless it is a breakout)."""
        return self.main_of.get(room, room)

    def state(self, room: str) -> ClassroomState:
        main = self.main(room)
        state = self._known(main)
        if state is None:
            state = self.states[main] = ClassroomState(main)
        return state

    def _known(self, main: str) -> ClassroomState | None:
        """The state in memory, else as the store kept it (before a restart), else None."""
        state = self.states.get(main)
        if state is not None:
            return state
        record = self.store.get(ClassroomRecord, ClassroomRecord.sid_for(main))
        if record is None:
            return None
        state = self.states[main] = ClassroomState.from_store(main, record.state)
        self.members[main] |= set(record.members)
        ends_at = state.breakouts.ends_at if state.breakouts else None
        if ends_at is not None:
            self._recall_at(main, ends_at)
        return state

    def _save(self, room: str) -> None:
        main = self.main(room)
        state = self.states.get(main)
        if state is not None:
            self.store.save(ClassroomRecord.of(state, self.members[main]))

    def _recall_at(self, main: str, ends_at: float) -> None:
        """The breakouts' countdown: everyone comes back at ``ends_at`` (Unix seconds)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # read outside the server's loop (a unit test): no countdown to run
        self._timers[main] = loop.call_later(
            max(0.0, ends_at - time.time()), lambda: asyncio.ensure_future(
                self.act(Actor(None, True), main, "recall", {})))

    def _record(self, name: str) -> Room | None:
        return self.registry.find_in_progress(name)

    def live_participants(self, room: str) -> list[LiveParticipant]:
        record = self._record(room)
        live = self.conference.rooms.get(record.sid) if record is not None else None
        return list(live.participants.values()) if live is not None else []

    def _live(self, room: str, identity: str) -> LiveParticipant:
        for participant in self.live_participants(room):
            if participant.identity == identity:
                return participant
        raise VideoError(
            53204, f"No participant {identity!r} is connected to room {room!r}; "
            "check the identity (Classroom.participants lists them)"
        )

    def participants(self, room: str) -> list[dict[str, Any]]:
        state = self.state(room)
        hands = {hand.identity for hand in state.hands}
        return [
            {
                "identity": p.identity,
                "sid": p.sid,
                "room": room,
                "moderator": self.is_moderator(p.identity),
                "hand_raised": p.identity in hands,
                "tracks": [
                    {"sid": t.record.sid, "kind": t.record.track_kind.value,
                     "name": t.record.name, "enabled": t.record.enabled}
                    for t in p.tracks.values()
                ],
            }
            for p in self.live_participants(room)
        ]

    # -- hooks the conference calls ----------------------------------------------------

    def _admit(self, room: Room, identity: str) -> None:
        state = self._known(self.main(room.unique_name))
        if state is None or not state.locked or self.is_moderator(identity):
            return
        if identity in self.members[state.room]:
            return  # back from a breakout, or reconnecting
        raise RoomError(
            53105,
            f"Room '{room.unique_name}' is locked by its moderator: no new participants may "
            "join. Ask the teacher to unlock it (Classroom.unlock())",
        )

    def _holds(self, room: Room, identity: str, kind: str) -> bool:
        state = self._known(self.main(room.unique_name))
        return state is not None and state.holds(identity, kind, self.is_moderator(identity))

    def _spotlit(self, room: Room, identity: str) -> bool:
        state = self._known(self.main(room.unique_name))
        return state is not None and state.spotlight == identity

    def _on_room_event(self, event: RoomEvent) -> None:
        participant = event.participant
        if event.name == "participant-connected" and participant is not None:
            main = self.main(event.room.unique_name)
            if participant.identity not in self.members[main]:
                self.members[main].add(participant.identity)
                self._save(main)  # a lock lets them back in after a restart too
            self.publish_state(event.room.unique_name)
        elif event.name == "participant-disconnected":
            self.publish_state(event.room.unique_name)
        elif event.name == "room-ended":
            self.channels.pop(event.room.unique_name, None)

    # -- channels ------------------------------------------------------------------

    def open(self, channel: Channel) -> None:
        """A participant's channel opened: it gets the state and the chat so far."""
        self.channels[channel.room].add(channel)
        channel.send({"type": "state", **self.view(channel.room, channel.identity)})
        channel.send({"type": "chat_history", "messages": self.chat_json(channel.room)})
        # Assigned to a breakout but in the main room (away when they opened, or back
        # after a restart): the move they missed.
        breakouts = self.state(channel.room).breakouts
        target = breakouts.assignment.get(channel.identity) if breakouts else None
        if target is not None and channel.room == self.main(channel.room):
            self._move(channel.room, channel.identity, target, "breakout")

    def closed(self, channel: Channel) -> None:
        self.channels[channel.room].discard(channel)

    def view(self, room: str, identity: str | None) -> dict[str, Any]:
        """The state as ``identity`` in ``room`` sees it (moderators see everything)."""
        state = self.state(room)
        body = state.to_json()
        body["room"] = room
        body["main_room"] = state.room
        body["you"] = {
            "identity": identity,
            "moderator": self.is_moderator(identity),
            "held": sorted(k for k in ("audio", "video")
                           if identity is not None and state.holds(identity, k, False)
                           and not self.is_moderator(identity)),
        }
        return body

    def publish_state(self, room: str) -> None:
        """Send the state to every channel of the main room and its breakouts."""
        main = self.main(room)
        rooms = [main, *[name for name, owner in self.main_of.items() if owner == main]]
        for name in rooms:
            for channel in list(self.channels.get(name, ())):
                channel.send({"type": "state", **self.view(name, channel.identity)})

    def _send_to(self, room: str, identity: str, message: dict[str, Any]) -> int:
        sent = 0
        for channel in list(self.channels.get(room, ())):
            if channel.identity == identity:
                channel.send(message)
                sent += 1
        return sent

    def _send_all(self, room: str, message: dict[str, Any], but: str | None = None) -> None:
        for channel in list(self.channels.get(room, ())):
            if channel.identity != but:
                channel.send(message)

    # -- acting --------------------------------------------------------------------

    async def act(self, actor: Actor, room: str, action: str, args: dict[str, Any]) -> Any:
        """Do ``action`` in ``room`` for ``actor``; what it returns is JSON-able."""
        try:
            wanted = Action(action)
        except ValueError:
            raise VideoError(
                20001, f"Unknown classroom action {action!r}; one of "
                + ", ".join(a.value for a in Action)
            ) from None
        if wanted in MODERATED and not actor.moderator:
            raise refuse(actor.name, wanted)
        handler: Callable[[Actor, str, dict[str, Any]], Any] = getattr(self, "_" + wanted.value)
        result = handler(actor, room, args)
        if asyncio.iscoroutine(result):
            result = await result
        if wanted not in (Action.CHAT, Action.REACT):  # they change no state
            self.state(room).changed()
            self._save(room)
            self.publish_state(room)
        return result

    async def _mute(self, actor: Actor, room: str, args: dict[str, Any]) -> dict[str, Any]:
        identity = _text(args, "identity")
        kind = check_kind(args.get("kind", "audio"))
        participant = self._live(room, identity)
        state = self.state(room)
        state.hold(identity, kind)
        tracks = await self.conference.set_track_enabled(participant, kind, False)
        self._send_to(room, identity, {
            "type": "muted", "kind": kind, "by": actor.name, "may_unmute": state.self_unmute,
            "text": f"Your {'microphone' if kind == 'audio' else 'camera'} was muted by the "
            "teacher" + ("" if state.self_unmute else "; the teacher will let you unmute"),
        })
        return {"identity": identity, "kind": kind, "tracks": tracks}

    def _allow_unmute(self, actor: Actor, room: str, args: dict[str, Any]) -> dict[str, Any]:
        identity = _text(args, "identity")
        kinds = [check_kind(args["kind"])] if args.get("kind") else ["audio", "video"]
        for kind in kinds:
            self.state(room).release(identity, kind)
            self._send_to(room, identity, {"type": "unmute_allowed", "kind": kind,
                                           "by": actor.name})
        return {"identity": identity, "kinds": kinds}

    def _remove(self, actor: Actor, room: str, args: dict[str, Any]) -> dict[str, Any]:
        identity = _text(args, "identity")
        participant = self._live(room, identity)
        self._send_to(room, identity, {"type": "removed", "by": actor.name,
                                       "text": "You were removed from the room by the teacher"})
        self.members[self.main(room)].discard(identity)
        record = self.store.get(Participant, participant.sid)
        if record is not None and record.is_connected:
            self.registry.disconnect_participant(record)  # the conference disconnects it
        return {"identity": identity, "sid": participant.sid}

    def _lock(self, actor: Actor, room: str, args: dict[str, Any]) -> dict[str, Any]:
        state = self.state(room)
        state.locked = True
        self.members[state.room] |= {p.identity for p in self.live_participants(state.room)}
        return {"locked": True}

    def _unlock(self, actor: Actor, room: str, args: dict[str, Any]) -> dict[str, Any]:
        self.state(room).locked = False
        return {"locked": False}

    def _settings(self, actor: Actor, room: str, args: dict[str, Any]) -> dict[str, Any]:
        state = self.state(room)
        for name in ("mute_on_join", "self_unmute"):
            if name in args:
                value = args[name]
                if not isinstance(value, bool):
                    raise VideoError(20001, f"{name} must be true or false, not {value!r}")
                setattr(state, name, value)
        return {"mute_on_join": state.mute_on_join, "self_unmute": state.self_unmute}

    async def _spotlight(self, actor: Actor, room: str, args: dict[str, Any]) -> dict[str, Any]:
        identity = args.get("identity")
        if identity is not None:
            self._live(room, _text(args, "identity"))
        state = self.state(room)
        before, state.spotlight = state.spotlight, identity
        # Bandwidth follows the layout: the spotlit video goes at high priority.
        for name in {before, identity} - {None}:
            for participant in self.live_participants(room):
                if participant.identity == name:
                    await self.conference.refresh_priorities(participant)
        return {"spotlight": identity}

    def _raise_hand(self, actor: Actor, room: str, args: dict[str, Any]) -> dict[str, Any]:
        identity = self._self_or_moderated(actor, args, "raise a hand")
        self.state(room).raise_hand(identity)
        return {"hands": self.state(room).to_json()["hands"]}

    def _lower_hand(self, actor: Actor, room: str, args: dict[str, Any]) -> dict[str, Any]:
        identity = self._self_or_moderated(actor, args, "lower a hand")
        self.state(room).lower_hand(identity)
        return {"hands": self.state(room).to_json()["hands"]}

    def _lower_all_hands(self, actor: Actor, room: str, args: dict[str, Any]) -> dict[str, Any]:
        self.state(room).hands.clear()
        return {"hands": []}

    def _react(self, actor: Actor, room: str, args: dict[str, Any]) -> dict[str, Any]:
        reaction = check_reaction(args.get("reaction"))
        message = {"type": "reaction", "identity": actor.name, "reaction": reaction}
        self._send_all(room, message)
        return message

    def _self_or_moderated(self, actor: Actor, args: dict[str, Any], what: str) -> str:
        identity = args.get("identity") or actor.identity
        if identity is None:
            raise VideoError(20001, f"Say whose hand: identity is needed to {what}")
        if identity != actor.identity and not actor.moderator:
            raise VideoError(
                20403, f"{actor.name} may {what} only for themselves, not for {identity!r}"
            )
        return str(identity)

    def _chat(self, actor: Actor, room: str, args: dict[str, Any]) -> dict[str, Any]:
        record = self._record(room)
        if record is None:
            raise VideoError(53106, f"Room {room!r} is not in progress: chat goes to a live room")
        message = ChatMessage.new(record.sid, room, actor.name, args.get("text"))  # type: ignore[arg-type]
        self.store.save(message)
        # A widget sends its chat on the data track too (twilio-video apps see it
        # there): ``relay: false`` only records it.
        if args.get("relay", True):
            self._send_all(room, {"type": "chat", "message": message.to_json()})
        return message.to_json()

    # -- chat history -------------------------------------------------------------

    def chat_history(self, room: str) -> list[ChatMessage]:
        """Every message of the rooms named ``room`` (all sessions of it), oldest first."""
        messages = self.store.list(ChatMessage, Query(equal={"room_name": room}))
        return sorted(messages, key=lambda m: (m.date_created, m.sid))

    def chat_json(self, room: str) -> list[dict[str, Any]]:
        record = self._record(room)
        history = self.chat_history(room)
        if record is not None:  # late joiners see this lecture's chat, not last week's
            history = [m for m in history if m.room_sid == record.sid]
        return [m.to_json() for m in history]

    # -- breakouts -----------------------------------------------------------------

    def _token(self, identity: str, room: str) -> str:
        account, key, secret = self.token_key
        token = AccessToken(account, key, secret, identity=identity, ttl=MOVE_TOKEN_TTL)
        # A hub's teacher keeps the claim in the rooms it moves to.
        token.add_grant(ClassroomVideoGrant(room=room, moderator=identity in self.granted))
        return token.to_jwt()

    def _move(self, source: str, identity: str, target: str, reason: str) -> int:
        return self._send_to(source, identity, {
            "type": "move", "room": target, "token": self._token(identity, target),
            "reason": reason,
        })

    def _ensure_room(self, name: str) -> Room:
        record = self._record(name)
        return record if record is not None else self.registry.create_room(unique_name=name)

    def _breakout(self, actor: Actor, room: str, args: dict[str, Any]) -> dict[str, Any]:
        main = self.main(room)
        state = self.state(main)
        if state.breakouts is not None:
            raise VideoError(20001, "Breakout rooms are open already: recall() everyone first")
        students = [p.identity for p in self.live_participants(main)
                    if not self.is_moderator(p.identity)]
        assignment_arg = args.get("assignment", "even")
        names = args.get("names")
        if isinstance(assignment_arg, list):  # groups, e.g. from hub groups
            groups = [[str(i) for i in group] for group in assignment_arg]
            names = names or breakout_names(main, len(groups))
            assignment = {i: names[n] for n, group in enumerate(groups) for i in group}
        else:
            names = names or breakout_names(main, args.get("rooms", 2))
            if isinstance(assignment_arg, dict):
                assignment = {str(k): str(v) for k, v in assignment_arg.items()}
            elif assignment_arg == "even":
                assignment = assign_evenly(students, names)
            else:
                raise VideoError(20001, "assignment must be 'even', a dict identity -> room, "
                                 f"or a list of groups of identities, not {assignment_arg!r}")
        unknown = sorted(set(assignment.values()) - set(names))
        if unknown:
            raise VideoError(20001, f"Assigned to rooms that are not breakouts: {unknown}")
        duration = args.get("duration")
        rooms = []
        for name in names:
            record = self._ensure_room(name)
            self.main_of[name] = main
            rooms.append({"name": name, "sid": record.sid})
        ends_at = time.time() + float(duration) if duration else None
        state.breakouts = Breakouts(list(names), assignment, ends_at)
        for identity, target in assignment.items():
            self._move(main, identity, target, "breakout")
        if ends_at is not None:
            self._recall_at(main, ends_at)
        return {"rooms": rooms, "assignment": assignment, "ends_at": ends_at,
                "main_room": main, "main_room_sid": self._ensure_room(main).sid}

    def _broadcast(self, actor: Actor, room: str, args: dict[str, Any]) -> dict[str, Any]:
        text = _text(args, "text")
        main = self.main(room)
        breakouts = self.state(main).breakouts
        targets = [main, *(breakouts.rooms if breakouts is not None else [])]
        message = {"type": "broadcast", "text": text, "from": actor.name}
        for name in targets:
            self._send_all(name, message)
        return {"rooms": targets}

    def _visit(self, actor: Actor, room: str, args: dict[str, Any]) -> dict[str, Any]:
        target = _text(args, "room")
        main = self.main(room)
        if self.main_of.get(target) != main and target != main:
            raise VideoError(20404, f"{target!r} is not a breakout room of {main!r}")
        result: dict[str, Any] = {"room": target}
        if actor.identity is not None:
            breakouts = self.state(main).breakouts
            if breakouts is not None:
                breakouts.visiting[actor.identity] = target
            result["token"] = self._token(actor.identity, target)
            for source in [main, *self.main_of]:
                self._move(source, actor.identity, target, "visit")
        return result

    def _recall(self, actor: Actor, room: str, args: dict[str, Any]) -> dict[str, Any]:
        main = self.main(room)
        state = self.state(main)
        timer = self._timers.pop(main, None)
        if timer is not None:
            timer.cancel()
        moved = 0
        rooms = state.breakouts.rooms if state.breakouts else [
            name for name, owner in self.main_of.items() if owner == main]
        for name in rooms:
            for channel in list(self.channels.get(name, ())):
                moved += self._move(name, channel.identity, main, "recall")
        state.breakouts = None
        asyncio.get_running_loop().call_later(BREAKOUT_GRACE, self._end_breakouts, main, rooms)
        return {"moved": moved, "main_room": main}

    def _end_breakouts(self, main: str, rooms: list[str]) -> None:
        if self.state(main).breakouts is not None:
            return  # opened again meanwhile: those rooms are in use
        for name in rooms:
            record = self._record(name)
            if record is not None:
                self.registry.end_room(record)
            self.main_of.pop(name, None)

    # -- room monitor --------------------------------------------------------------

    def report_stats(self, room: str, identity: str, samples: list[dict[str, Any]]) -> None:
        self.monitor.add(self.main(room), room, identity, samples)

    async def monitor_view(self, room: str) -> dict[str, Any]:
        main = self.main(room)
        server = [vars(s) for s in await self.conference.media.stats()]
        state = self.state(main)
        rooms = [main, *[name for name, owner in self.main_of.items() if owner == main]]
        return {
            "room": main,
            "speaking": self.monitor.speaking(rooms),
            "series": self.monitor.rows(main),
            "warnings": self.monitor.warnings(main),
            "hands": state.to_json()["hands"],
            "participants": self.participants(main),
            "server": [{k: v for k, v in s.items() if isinstance(v, int | float)}
                       for s in server],
        }

    def room_records(self, room: str) -> dict[str, Any]:
        """The main room and its breakouts, as the registry has them now."""
        main = self.main(room)
        names = [main, *[n for n, owner in self.main_of.items() if owner == main]]
        out = []
        for name in names:
            record = self._record(name)
            out.append({
                "name": name,
                "sid": record.sid if record else None,
                "status": record.status.value if record else RoomStatus.COMPLETED.value,
                "breakout_of": None if name == main else main,
                "participants": [p.identity for p in self.live_participants(name)],
            })
        return {"main_room": main, "rooms": out}


def _text(args: dict[str, Any], name: str) -> str:
    value = args.get(name)
    if not isinstance(value, str) or not value:
        raise VideoError(20001, f"{name} is needed (a non-empty string)")
    return value
