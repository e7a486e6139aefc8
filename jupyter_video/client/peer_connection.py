"""The participant's one RTCPeerConnection, negotiated as twilio-video negotiates it.

Reference: twilio-video 2.36 ``lib/signaling/v2/peerconnection.js`` and
docs/signaling.md section 5. One description revision per peer connection,
shared by both directions: our offers carry ``revision + 1``; an answer is
applied only when it carries the revision of our outstanding offer; a server
offer only when its revision is above the last stable one (and our answer
echoes it); ``create-offer N`` makes us offer ``N + 1``.

Glare (a server offer while our offer is unanswered): the server is the
impolite peer and ignores our offer, so we give ours up, answer
the server's, and offer again, as twilio-video does with a rollback. aiortc
cannot roll back, so offers after the first are applied locally only when
their answer comes: giving one up is forgetting it. Transceivers that offer
carried stay out of the server's offer (:func:`adapter.unassociated_transceivers_hidden`)
and are offered again. The first offer is applied at once (aiortc gathers the
ICE candidates it carries then); the server offers nothing before answering it,
and anything that comes meanwhile waits for that answer.

Audio and video m-sections are matched to tracks by the track id in their
``a=msid`` line (:func:`track_ids_by_mid`); aiortc writes ``a=msid:<stream>
<track.id>``, so a local track's ``id`` is the id we announce.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, cast

from aiortc import (
    RTCConfiguration,
    RTCDataChannel,
    RTCIceServer,
    RTCIceTransportPolicy,
    RTCPeerConnection,
    RTCRtpTransceiver,
    RTCSessionDescription,
)
from aiortc.sdp import candidate_from_sdp

from .. import _aiortc as adapter
from ..errors import MediaError
from ..signaling import rsp
from .mesh import TrackCopies, TrackCopy, keep_remote_numbering, sends
from .track import LocalDataTrack, LocalMediaTrack
from .websocket_peer_connection import WebSocketPeerConnection

log = logging.getLogger(__name__)

MEDIA_KINDS = ("audio", "video")
Transport = Literal["webrtc", "websocket"]


# --------------------------------------------------------------------------- SDP facts

def _sections(sdp: str) -> list[list[str]]:
    """The m-sections of ``sdp``, each as its lines (starting with the ``m=`` line)."""
    sections: list[list[str]] = []
    for line in sdp.splitlines():
        if line.startswith("m="):
            sections.append([line])
        elif sections:
            sections[-1].append(line)
    return sections


def _attribute(section: list[str], name: str) -> str | None:
    prefix = f"a={name}:"
    for line in section:
        if line.startswith(prefix):
            return line[len(prefix):].strip()
    return None


def track_ids_by_mid(sdp: str) -> dict[str, str]:
    """``a=mid`` -> track id of ``a=msid:<stream> <track id>``, for audio/video sections."""
    ids: dict[str, str] = {}
    for section in _sections(sdp):
        kind = section[0][2:].split(" ", 1)[0]
        mid, msid = _attribute(section, "mid"), _attribute(section, "msid")
        if kind in MEDIA_KINDS and mid is not None and msid:
            parts = msid.split()
            if len(parts) == 2:
                ids[mid] = parts[1]
    return ids


def ice_ufrag(sdp: str) -> str | None:
    """The first ``a=ice-ufrag`` (all sections share it under BUNDLE)."""
    for line in sdp.splitlines():
        if line.startswith("a=ice-ufrag:"):
            return line[len("a=ice-ufrag:"):].strip()
    return None


def has_application_section(sdp: str | None) -> bool:
    """Whether ``sdp`` negotiates an ``m=application`` (SCTP data channels)."""
    return bool(sdp) and any(s[0].startswith("m=application") for s in _sections(sdp or ""))


# --------------------------------------------------------------------------- remote ICE

class IceBox:
    """Remote candidates per ufrag; only those not applied yet are handed out
    (icebox.js: the server repeats every candidate in each message)."""

    def __init__(self) -> None:
        self._candidates: dict[str, list[rsp.IceCandidate]] = {}
        self._applied: dict[str, int] = {}
        self._revisions = rsp.RevisionFilter()
        self.ufrag: str | None = None

    def update(self, ice: rsp.IceState) -> list[rsp.IceCandidate]:
        """Store a cumulative candidate list; the new ones if ``ice.ufrag`` is current."""
        if not self._revisions.accept(ice.ufrag, ice.revision):
            return []
        known = self._candidates.setdefault(ice.ufrag, [])
        if len(ice.candidates) > len(known):
            known[:] = ice.candidates
        return self._take(ice.ufrag) if ice.ufrag == self.ufrag else []

    def set_ufrag(self, ufrag: str) -> list[rsp.IceCandidate]:
        """The remote description now uses ``ufrag``: its stored candidates not yet applied."""
        self.ufrag = ufrag
        return self._take(ufrag)

    def _take(self, ufrag: str) -> list[rsp.IceCandidate]:
        known = self._candidates.get(ufrag, [])
        start = self._applied.get(ufrag, 0)
        self._applied[ufrag] = len(known)
        return known[start:]


# --------------------------------------------------------------------------- ICE servers

ICE_TRANSPORT_POLICIES = ("all", "relay")


def rtc_configuration(ice_servers: Sequence[Mapping[str, Any]],
                      ice_transport_policy: str = "all") -> RTCConfiguration:
    """aiortc's configuration for RTCIceServer dicts (``/video/token``'s ``ice_servers``);
    ``ice_transport_policy="relay"`` gathers TURN relay candidates only, as a browser's
    ``iceTransportPolicy: 'relay'`` does."""
    if ice_transport_policy not in ICE_TRANSPORT_POLICIES:
        raise ValueError(f"ice_transport_policy must be 'all' or 'relay', "
                         f"not {ice_transport_policy!r}")
    servers = []
    for index, server in enumerate(ice_servers):
        urls = server.get("urls")
        if not urls:
            raise ValueError(f"ice_servers[{index}] has no urls: give it "
                             "{'urls': 'turn:host:3478', 'username': ..., 'credential': ...}")
        servers.append(RTCIceServer(urls=urls, username=server.get("username"),
                                    credential=server.get("credential")))
    if ice_transport_policy == "relay" and not any(
            str(url).startswith("turn") for s in servers
            for url in ([s.urls] if isinstance(s.urls, str) else s.urls)):
        raise ValueError("ice_transport_policy='relay' needs a TURN server in ice_servers")
    policy = (RTCIceTransportPolicy.RELAY if ice_transport_policy == "relay"
              else RTCIceTransportPolicy.ALL)
    return RTCConfiguration(iceServers=servers, iceTransportPolicy=policy)


# --------------------------------------------------------------------------- negotiation

class Negotiation(enum.Enum):
    """Where the offer/answer exchange stands."""

    STABLE = "stable"
    AWAITING_ANSWER = "awaiting-answer"  # our offer is out
    CLOSED = "closed"


class PeerConnection:
    """``peer_connections[]`` entry ``id``: descriptions in, descriptions to send out.

    Callers serialize calls (the room handles one message at a time).
    """

    def __init__(self, on_datachannel: Callable[[RTCDataChannel], None],
                 configuration: RTCConfiguration | None = None,
                 transport: Transport = "webrtc") -> None:
        self.id = str(uuid.uuid4())
        self.transport = transport
        if transport == "websocket":
            # It has the part of RTCPeerConnection this class and the room use.
            self.pc = cast(RTCPeerConnection, WebSocketPeerConnection())
        else:
            # As the media plane does: one empty datagram from anyone would end DTLS.
            adapter.drop_unchecked_datagrams()
            self.pc = RTCPeerConnection(configuration or RTCConfiguration(iceServers=[]))
        self.pc.on("datachannel", on_datachannel)
        self.negotiation = Negotiation.STABLE
        self.revision = 0  # twilio-video's _descriptionRevision
        self.last_stable_revision = 0
        self._queued: rsp.Description | None = None
        self._offer_wanted = False
        self._unapplied_offer: RTCSessionDescription | None = None  # sent, not yet set
        self._ice = IceBox()
        self._retired: set[RTCRtpTransceiver] = set()  # sent a track once: not reused
        # Our offers keep the other end's numbering (a peer of a Go or Peer-to-Peer
        # room that may have offered first: :func:`.mesh.keep_remote_numbering`).
        self.keeps_remote_numbering = False

    def _move_to(self, state: Negotiation) -> None:
        """The one place negotiation state changes."""
        if self.negotiation is Negotiation.CLOSED:
            return
        self.negotiation = state

    # ----------------------------------------------------------------- local media

    def add_track(self, track: LocalMediaTrack | TrackCopy) -> RTCRtpTransceiver:
        """Send ``track``, on a transceiver that only receives if there is one
        (peerconnection.js ``_addOrUpdateTransceiver``), else a new one.

        Unlike twilio-video, a transceiver that already sent a track is not reused:
        an aiortc receiver keeps its first track for the m-section (no new ``track``
        event for a new ``a=msid``), so an SFU on aiortc would not see the new one.
        """
        for transceiver in self.pc.getTransceivers():
            if (transceiver.kind == track.kind and transceiver.sender.track is None
                    and transceiver not in self._retired
                    and transceiver.direction in ("recvonly", "inactive")):
                transceiver.sender.replaceTrack(track)
                transceiver.direction = "sendrecv"
                return transceiver
        return self.pc.addTransceiver(track, direction="sendrecv")

    def share_tracks(self, copies: TrackCopies) -> None:
        """Send a copy of each local track from now on, so that other peer connections
        can send it too (:mod:`.mesh`)."""
        for transceiver in self.pc.getTransceivers():
            track = transceiver.sender.track
            if isinstance(track, LocalMediaTrack):
                transceiver.sender.replaceTrack(copies.copy(track))

    def remove_track(self, track: LocalMediaTrack) -> None:
        """Stop sending ``track``; its transceiver keeps receiving what the server sends."""
        for transceiver in self.pc.getTransceivers():
            if sends(transceiver.sender.track, track):
                # aiortc's sender idles while its track is None
                transceiver.sender.replaceTrack(None)
                transceiver.direction = "recvonly"
                self._retired.add(transceiver)

    def receive_audio_and_video(self) -> None:
        """Offer to receive audio and video even with nothing to send
        (twilio-video's ``offerToReceiveAudio/Video``)."""
        kinds = {t.kind for t in self.pc.getTransceivers()}
        for kind in MEDIA_KINDS:
            if kind not in kinds:
                self.pc.addTransceiver(kind, direction="recvonly")

    def add_data_track(self, track: LocalDataTrack) -> RTCDataChannel:
        """The RTCDataChannel publishing ``track``: labelled with its id (in-band, DCEP)."""
        return self.pc.createDataChannel(
            track.id, ordered=track.ordered, maxPacketLifeTime=track.max_packet_life_time,
            maxRetransmits=track.max_retransmits)

    def _needs_offer(self) -> bool:
        """peerconnection.js ``_maybeReoffer``: a sender without an m-section, or data
        without ``m=application``, or a change that asked for one."""
        local = self.pc.localDescription
        if self._offer_wanted:
            return True
        if any(t.mid is None for t in self.pc.getTransceivers()):
            return True
        return self.pc.sctp is not None and not has_application_section(
            local.sdp if local else None)

    # ----------------------------------------------------------------- descriptions

    async def offer(self) -> rsp.Description:
        """Create an offer with the next revision (applied now only if it is the first)."""
        self._offer_wanted = False
        try:
            offer = await self.pc.createOffer()
            remote = self.pc.remoteDescription
            if self.keeps_remote_numbering and remote is not None:
                offer = RTCSessionDescription(keep_remote_numbering(offer.sdp, remote.sdp),
                                              "offer")
                adapter.use_offered_parameters(self.pc, offer.sdp)
            if self.pc.localDescription is None:
                await self.pc.setLocalDescription(offer)
                offer = self.pc.localDescription  # with the candidates just gathered
            else:
                self._unapplied_offer = offer
        except Exception as exc:
            raise MediaError(53400, f"Cannot create a local offer: {exc}") from exc
        self.revision += 1
        self._move_to(Negotiation.AWAITING_ANSWER)
        return rsp.Description("offer", self.revision, offer.sdp)

    async def renegotiate(self) -> list[rsp.Description]:
        """Offer now, or once the outstanding offer is answered."""
        self._offer_wanted = True
        if self.negotiation is not Negotiation.STABLE:
            return []
        return [await self.offer()]

    async def apply(self, description: rsp.Description) -> list[rsp.Description]:
        """Apply a server description; returns what to send back (answer and/or offer)."""
        if self.negotiation is Negotiation.CLOSED:
            return []
        kind = description.type
        if kind in ("answer", "pranswer"):
            if (description.revision != self.revision
                    or self.negotiation is not Negotiation.AWAITING_ANSWER):
                return []
            return await self._apply_answer(description)
        if kind == "close":
            await self.close()
            return []
        if description.revision <= self.last_stable_revision:
            return []
        if self.negotiation is Negotiation.AWAITING_ANSWER:
            if kind == "create-offer" or self._unapplied_offer is None:
                # peerconnection.js update(): create-offer waits for the answer, and
                # so does an offer while our first one is out (module docstring).
                self._queued = description
                return []
            self._give_up_offer()  # glare: the server's offer wins
        if kind == "create-offer":
            self.revision = description.revision
            return [await self.offer()]
        if kind == "offer":
            return await self._answer(description)
        return []

    def _give_up_offer(self) -> None:
        """Forget our unanswered offer (the server ignores it) and offer again later."""
        self._unapplied_offer = None
        self._offer_wanted = True
        self._move_to(Negotiation.STABLE)

    async def _apply_answer(self, description: rsp.Description) -> list[rsp.Description]:
        assert description.sdp is not None
        offer, self._unapplied_offer = self._unapplied_offer, None
        try:
            if offer is not None:
                await self.pc.setLocalDescription(offer)
        except Exception as exc:
            raise MediaError(53400, f"Cannot apply our own offer: {exc}") from exc
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(description.sdp, "answer"))
        except Exception as exc:
            raise MediaError(53402, f"Cannot apply the server's answer: {exc}") from exc
        self.last_stable_revision = description.revision
        self._move_to(Negotiation.STABLE)
        await self._check_ice_box(description.sdp)
        return await self._after_stable()

    async def _answer(self, offer: rsp.Description) -> list[rsp.Description]:
        assert offer.sdp is not None
        self.revision = offer.revision
        hidden = (adapter.unassociated_transceivers_hidden(self.pc)
                  if self.transport == "webrtc" else contextlib.nullcontext())
        with hidden:
            try:
                await self.pc.setRemoteDescription(RTCSessionDescription(offer.sdp, "offer"))
            except Exception as exc:
                raise MediaError(53402, f"Cannot apply the server's offer: {exc}") from exc
            try:
                await self.pc.setLocalDescription(await self.pc.createAnswer())
            except Exception as exc:
                raise MediaError(53400, f"Cannot create a local answer: {exc}") from exc
        self.last_stable_revision = offer.revision
        await self._check_ice_box(offer.sdp)
        answer = rsp.Description("answer", self.revision, self.pc.localDescription.sdp)
        return [answer, *await self._after_stable()]

    async def _after_stable(self) -> list[rsp.Description]:
        queued, self._queued = self._queued, None
        if queued is not None:
            sent = await self.apply(queued)
            if sent:
                return sent
        return [await self.offer()] if self._needs_offer() else []

    def local_description(self) -> rsp.Description | None:
        """The current local description with its revision (for ``sync``): our
        outstanding offer if there is one."""
        local = self._unapplied_offer or self.pc.localDescription
        if local is None:
            return None
        return rsp.Description(local.type, self.revision, local.sdp)

    def remote_track_ids(self) -> dict[str, str]:
        """mid -> the server's ``a=msid`` track id, in the current remote description."""
        remote = self.pc.remoteDescription
        return track_ids_by_mid(remote.sdp) if remote else {}

    # ----------------------------------------------------------------- ICE

    async def add_ice(self, ice: rsp.IceState) -> None:
        """Trickled server candidates (cumulative per ufrag)."""
        await self._add_candidates(self._ice.update(ice))

    async def _check_ice_box(self, sdp: str) -> None:
        ufrag = ice_ufrag(sdp)
        if ufrag:
            await self._add_candidates(self._ice.set_ufrag(ufrag))

    async def _add_candidates(self, candidates: list[rsp.IceCandidate]) -> None:
        for candidate in candidates:
            text = candidate.candidate.removeprefix("candidate:")
            if not text:
                continue
            try:
                parsed = candidate_from_sdp(text)
                parsed.sdpMid = candidate.sdp_mid
                parsed.sdpMLineIndex = candidate.sdp_mline_index
                if parsed.sdpMid is None and parsed.sdpMLineIndex is None:
                    parsed.sdpMLineIndex = 0
                await self.pc.addIceCandidate(parsed)
            except Exception as exc:  # one bad candidate must not end the room
                log.warning("ignored server ICE candidate %r: %s", candidate.candidate, exc)

    # ----------------------------------------------------------------- closing

    async def close(self) -> None:
        """Close the RTCPeerConnection (stops every sender and receiver)."""
        self._move_to(Negotiation.CLOSED)
        await self.pc.close()
