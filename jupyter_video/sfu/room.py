"""A room as the media plane sees it: peers and the publications among them.

The control plane names publications (``bind_publication``) and decides who
subscribes to what; the room only keeps the mapping from a participant's track
id (MediaStreamTrack id or data channel label) to its publication, whichever of
the binding and the media arrives first.
"""

from __future__ import annotations

from collections.abc import Callable

from ..errors import MediaError, ParticipantError, TrackError
from .data_relay import DataAdmission, MessageBudget
from .interface import DataLimits, DominantSpeakerChanged, Event, RenegotiationNeeded
from .peer import Peer
from .publication import DataPublication, MediaPublication
from .websocket import WebSocketPeer

SWITCH_MARGIN = 1.5
"""How much louder than the dominant speaker another one must speak to take over."""


class Room:
    """Peers of one room and their publications."""

    def __init__(
        self, room_sid: str, report: Callable[[Event], None], data_limits: DataLimits | None = None
    ) -> None:
        self.room_sid = room_sid
        self.data_limits = data_limits or DataLimits()
        self._data_budgets: dict[str, MessageBudget] = {}  # participant_sid -> its budget
        self.peers: dict[str, Peer | WebSocketPeer] = {}
        self.publications: dict[str, MediaPublication | DataPublication] = {}
        self.dominant_speaker: str | None = None
        self._report = report
        # (participant_sid, track_id) -> publication, bound or not yet
        self._by_track_id: dict[tuple[str, str], MediaPublication | DataPublication] = {}

    def peer(self, participant_sid: str) -> Peer | WebSocketPeer:
        try:
            return self.peers[participant_sid]
        except KeyError:
            raise ParticipantError(53204, f"Participant {participant_sid} not found") from None

    # ----------------------------------------------------------- publications

    def media_publication(self, participant_sid: str, track_id: str, kind: str) -> MediaPublication:
        """The publication of the participant's track ``track_id``, created if new."""
        publication = self._by_track_id.get((participant_sid, track_id))
        if not isinstance(publication, MediaPublication):
            publication = MediaPublication(participant_sid, track_id, kind)
            self._by_track_id[(participant_sid, track_id)] = publication
        return publication

    def data_publication(self, participant_sid: str, label: str) -> DataPublication:
        """The publication of the participant's data channel ``label``, created if new."""
        publication = self._by_track_id.get((participant_sid, label))
        if not isinstance(publication, DataPublication):
            limits = self.data_limits
            budget = self._data_budgets.get(participant_sid)
            if budget is None:  # one per participant: more tracks do not send more
                budget = MessageBudget(limits.messages_per_second, limits.burst)
                self._data_budgets[participant_sid] = budget
            admission = DataAdmission(
                limits, budget, f"participant {participant_sid} track {label!r}")
            publication = DataPublication(participant_sid, label, admission)
            self._by_track_id[(participant_sid, label)] = publication
        return publication

    def bind(self, participant_sid: str, track_id: str, track_sid: str, kind: str) -> None:
        """Name the participant's track ``track_id`` with ``track_sid``."""
        self.peer(participant_sid)
        publication: MediaPublication | DataPublication
        if kind == "data":
            publication = self.data_publication(participant_sid, track_id)
        elif kind in ("audio", "video"):
            publication = self.media_publication(participant_sid, track_id, kind)
        else:
            raise TrackError(53300, f"Unknown track kind {kind!r}")
        publication.track_sid = track_sid
        self.publications[track_sid] = publication
        publication.when_ready(self._offer_to_waiting_subscribers)

    def publication(self, track_sid: str) -> MediaPublication | DataPublication:
        try:
            return self.publications[track_sid]
        except KeyError:
            raise TrackError(53300, f"Track {track_sid} is not published") from None

    def unpublish(self, track_sid: str) -> None:
        """End a publication and every subscription to it."""
        publication = self.publications.pop(track_sid, None)
        if publication is None:
            return
        self._by_track_id.pop((publication.publisher_sid, publication.track_id), None)
        for peer in self.peers.values():
            if peer.unsubscribe(track_sid):
                self._report(RenegotiationNeeded(peer.participant_sid))
        publication.close()

    def _offer_to_waiting_subscribers(
        self, publication: MediaPublication | DataPublication
    ) -> None:
        for peer in self.peers.values():
            if publication.track_sid in peer.subscriptions and peer.pending_subscriptions():
                self._report(RenegotiationNeeded(peer.participant_sid))

    # ----------------------------------------------------------- peers

    def add_peer(self, peer: Peer | WebSocketPeer) -> None:
        if peer.participant_sid in self.peers:
            raise MediaError(53401, f"Participant {peer.participant_sid} already has a peer")
        self.peers[peer.participant_sid] = peer

    async def remove_peer(self, participant_sid: str) -> None:
        """Close the participant's peer and end its publications."""
        peer = self.peers.pop(participant_sid, None)
        if peer is None:
            return
        for track_sid, publication in list(self.publications.items()):
            if publication.publisher_sid == participant_sid:
                self.unpublish(track_sid)
        for key in [k for k in self._by_track_id if k[0] == participant_sid]:
            self._by_track_id.pop(key).close()
        self._data_budgets.pop(participant_sid, None)
        await peer.close()
        if self.dominant_speaker == participant_sid:
            self.update_dominant_speaker()

    async def close(self) -> None:
        for participant_sid in list(self.peers):
            await self.remove_peer(participant_sid)

    # ----------------------------------------------------------- speaker

    def update_dominant_speaker(self) -> None:
        """Report the participant who spoke loudest since the last update, when it changes.

        Nobody speaking keeps the last speaker, as Twilio does; someone speaking
        while the dominant speaker is silent takes over at once.
        """
        scores: dict[str, float] = {}
        for publication in self.publications.values():
            if not isinstance(publication, MediaPublication) or publication.kind != "audio":
                continue
            score = publication.speech.take()
            if score > 0 and publication.publisher_sid in self.peers:
                sid = publication.publisher_sid
                scores[sid] = max(score, scores.get(sid, 0.0))
        speaker = self.dominant_speaker
        if speaker is not None and speaker not in self.peers:
            speaker = None
        if scores:
            loudest = max(scores, key=scores.__getitem__)
            if scores[loudest] > SWITCH_MARGIN * scores.get(speaker or "", 0.0):
                speaker = loudest
        if speaker != self.dominant_speaker:
            self.dominant_speaker = speaker
            self._report(DominantSpeakerChanged(self.room_sid, speaker))
            for peer in self.peers.values():
                peer.tell_active_speaker(speaker)
