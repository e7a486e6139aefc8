"""Go and Peer-to-Peer rooms: media straight between participants, negotiation relayed.

In these rooms every two participants share one peer connection of their own (a
full mesh, as Twilio's seeds describe it). The server never terminates one: it
relays each pair's offers, answers and ICE candidates, under the pair's id, from
one end to the other, exactly as twilio-video.js expects the RSP
``peer_connections`` of such a room (``lib/signaling/v2/peerconnectionmanager.js``
creates a PeerConnectionV2 for any id it has not seen when an ``offer`` or a
``create-offer`` names it, and closes one on ``close``; ``room.js`` hands every
``peer_connections`` entry of a server message to it). Tracks, subscriptions and
data are announced as in group rooms (``subscribed`` maps a track SID to the id
the subscriber's peer connection receives it as, which is the publisher's own
track id), so the client SDKs need nothing else.

:class:`Mesh` is one room's pairs; :class:`GroupMediaPlane` keeps these rooms'
participants away from the media plane, so that no media worker ever hears of them.
See docs/signaling.md, "Peer-to-peer and Go rooms".
"""

from __future__ import annotations

import enum
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..errors import VideoError
from ..sfu import interface as media
from ..signaling import rsp

log = logging.getLogger(__name__)


class Peer(Protocol):
    """One end of a pair: a connected participant of the room."""

    @property
    def sid(self) -> str: ...

    def send(self, body: dict[str, Any]) -> None: ...


class PairState(str, enum.Enum):
    """Where a pair's negotiation stands, as the server sees it."""

    NEW = "new"  # asked to offer (create-offer), nothing relayed yet
    OFFERED = "offered"  # one end's offer relayed, its answer not yet
    STABLE = "stable"  # the last offer was answered


@dataclass
class Pair:
    """The peer connection two participants share, under one id at both ends."""

    id: str
    ends: tuple[str, str]  # participant SIDs
    state: PairState = PairState.NEW
    offerer: str | None = None  # whose offer waits for an answer (OFFERED)
    revision: int = 0  # the highest description revision relayed
    # What each end was last sent, so that a client reconnecting (``sync``) is told
    # every pair it belongs to: twilio-video closes the peer connections a
    # ``synced`` leaves out (peerconnectionmanager.js ``_closeAbsentPeerConnections``).
    sent: dict[str, rsp.Description] = field(default_factory=dict)

    def other(self, sid: str) -> str:
        return self.ends[1] if self.ends[0] == sid else self.ends[0]

    def accept(self, sender: str, description: rsp.Description) -> bool:
        """Whether ``sender``'s description goes on to the other end; the one place
        the pair's state changes.

        Glare (both ends offer at once) is resolved by the server's order: the offer
        that reached it first was relayed and wins; the other is dropped. Its sender
        then gets the winner's offer while it has a local offer, so twilio-video rolls
        back, answers and offers again (peerconnection.js ``_handleGlare``): no
        change of either end is lost and both ends agree on who offered.
        """
        if description.type == "offer":
            if description.revision <= self.revision:
                return False  # relayed before (a ``sync`` repeats the last description)
            if self.state is PairState.OFFERED and self.offerer != sender:
                log.debug("glare on %s: %s's offer dropped, %s's stands",
                          self.id, sender, self.offerer)
                return False
            self.state, self.offerer = PairState.OFFERED, sender
        elif description.type in ("answer", "pranswer"):
            if (self.state is not PairState.OFFERED or self.offerer == sender
                    or description.revision != self.revision):
                return False  # an answer to an offer that was dropped or rolled back
            if description.type == "answer":
                self.state, self.offerer = PairState.STABLE, None
        elif description.type != "close":
            return False  # create-offer is the server's to send
        self.revision = max(self.revision, description.revision)
        return True


class Mesh:
    """The pairs of one Go or Peer-to-Peer room, and the relay between their ends."""

    def __init__(self) -> None:
        self.pairs: dict[str, Pair] = {}
        self.peers: dict[str, Peer] = {}  # in the order they joined

    def pairs_of(self, sid: str) -> list[Pair]:
        return [pair for pair in self.pairs.values() if sid in pair.ends]

    def join(self, peer: Peer, states: Iterable[rsp.PeerConnectionState]) -> None:
        """A participant was welcomed: pair it with everyone already in the room.

        twilio-video connects with one offer of its own (``createAndOffer``, under an
        id it chose): that offer opens the pair with the participant who joined
        first; for every other participant the newcomer is asked to offer under an
        id of the server's (``create-offer``). Alone in the room, its first peer
        connection has no other end and is closed.
        """
        others = list(self.peers.values())
        self.peers[peer.sid] = peer
        offered = next(
            (s for s in states if s.description is not None and s.description.type == "offer"),
            None,
        )
        remaining = others
        if offered is not None:
            if others:
                pair = Pair(offered.id, (peer.sid, others[0].sid))
                self.pairs[pair.id] = pair
                self.relay(peer, offered)
                remaining = others[1:]
            else:
                assert offered.description is not None
                closing = rsp.Description("close", offered.description.revision + 1)
                self._send(peer, offered.id, closing)
        for other in remaining:
            pair = Pair(f"PC{uuid.uuid4().hex}", (peer.sid, other.sid))
            self.pairs[pair.id] = pair
            # revision 1: twilio-video skips a create-offer at or below the revision of
            # its last stable description (0 for a new peer connection) and offers at 2
            self._send(peer, pair.id, rsp.Description("create-offer", 1))
            pair.sent.pop(peer.sid, None)  # a command, not a state to repeat on sync

    def relay(self, sender: Peer, state: rsp.PeerConnectionState) -> None:
        """Pass one ``peer_connections`` entry of ``sender`` on to the pair's other end."""
        pair = self.pairs.get(state.id)
        if pair is None or sender.sid not in pair.ends:
            # twilio-video keeps trickling ICE to a pair closed under it, and sends
            # ``close`` for each of its peer connections as it leaves
            log.debug("%s: nothing to relay to for peer connection %s", sender.sid, state.id)
            return
        description = state.description
        if description is not None and not pair.accept(sender.sid, description):
            description = None
        if description is None and state.ice is None:
            return
        other = self.peers.get(pair.other(sender.sid))
        if other is None:
            return
        if description is not None:
            pair.sent[other.sid] = description
        other.send(
            rsp.ServerUpdate(
                peer_connections=[rsp.PeerConnectionState(pair.id, description, state.ice)]
            ).to_dict()
        )
        if description is not None and description.type == "close":
            del self.pairs[pair.id]

    def states_for(self, sid: str) -> list[rsp.PeerConnectionState]:
        """Every pair of ``sid``, with the last description it was sent (for ``synced``)."""
        return [rsp.PeerConnectionState(pair.id, pair.sent.get(sid)) for pair in self.pairs_of(sid)]

    def leave(self, sid: str) -> None:
        """A participant left: only its pairs close, at their other ends."""
        self.peers.pop(sid, None)
        for pair in self.pairs_of(sid):
            del self.pairs[pair.id]
            other = self.peers.get(pair.other(sid))
            if other is not None:
                self._send(other, pair.id, rsp.Description("close", pair.revision + 1))

    def _send(self, peer: Peer, pair_id: str, description: rsp.Description) -> None:
        pair = self.pairs.get(pair_id)
        if pair is not None:
            pair.sent[peer.sid] = description
        peer.send(
            rsp.ServerUpdate(
                peer_connections=[rsp.PeerConnectionState(pair_id, description)]
            ).to_dict()
        )


class GroupMediaPlane(media.MediaPlane):
    """The media plane, as only group rooms use it.

    Participants of Go and Peer-to-Peer rooms have no peer connection with the SFU:
    every command about them ends here, with the answer "nothing to do", and the
    media plane (its workers) never hears of them. ``is_peer_to_peer_room`` tells
    from a room SID whether the room is one of those.
    """

    def __init__(
        self, plane: media.MediaPlane, is_peer_to_peer_room: Callable[[str], bool]
    ) -> None:
        super().__init__()
        self.plane = plane
        self.is_peer_to_peer_room = is_peer_to_peer_room
        self.mesh_participants: set[str] = set()

    async def start(self) -> None:
        await self.plane.start()

    async def close(self) -> None:
        await self.plane.close()

    def _about_mesh(self, command: media.Command) -> bool:
        if isinstance(command, media.AddPeer) and self.is_peer_to_peer_room(command.room_sid):
            self.mesh_participants.add(command.participant_sid)
        if isinstance(command, media.CloseRoom):
            return self.is_peer_to_peer_room(command.room_sid)
        sid = getattr(command, "participant_sid", None) or getattr(command, "subscriber_sid", None)
        if sid not in self.mesh_participants:
            return False
        if isinstance(command, media.RemovePeer):
            self.mesh_participants.discard(sid)
        return True

    async def execute(self, command: media.Command) -> Any:
        if not self._about_mesh(command):
            return await self.plane.execute(command)
        if isinstance(command, (media.Subscribe, media.Unsubscribe, media.GrantActiveSpeaker)):
            return False  # no offer needed: the publisher's own peer connection carries it
        if isinstance(command, (media.StartRecording, media.OpenMediaSocket)):
            raise VideoError(
                53114, "Media of a peer-to-peer room never reaches the server; use a 'group' room"
            )
        return None

    # Events, status and counters are the media plane's own.
    def report(self, event: media.Event) -> None:
        self.plane.report(event)

    async def next_event(self) -> media.Event:
        return await self.plane.next_event()

    async def events(self) -> AsyncIterator[media.Event]:
        async for event in self.plane.events():
            yield event

    def worker_status(self) -> list[media.WorkerStatus]:
        return self.plane.worker_status()
