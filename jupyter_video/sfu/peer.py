"""Peers: one aiortc RTCPeerConnection per participant.

A participant publishes and subscribes over the same peer connection (as
twilio-video.js does). Its offers carry what it publishes; the SFU's offers
carry what it subscribes to, one sendonly transceiver per media subscription.

aiortc negotiates (ICE, DTLS, SRTP keys, SCTP, SDP); the media never enters
its receivers or senders. Every SRTP packet the peer's transport unprotects
comes here (:func:`jupyter_video._aiortc.divert_srtp`): RTP is routed by SSRC
(learnt from the SDP or the mid header extension) to its publication, RTCP
to the send slot or publication it is about. Every second the peer sends its
own RTCP: Receiver Reports and REMB for what it receives, Sender Reports for
what it sends.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiortc import (
    RTCBundlePolicy,
    RTCConfiguration,
    RTCDataChannel,
    RTCPeerConnection,
    RTCRtpSender,
    RTCRtpTransceiver,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamTrack
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtcrtpparameters import RTCRtpCodecCapability, RTCRtpReceiveParameters
from aiortc.sdp import SessionDescription, candidate_from_sdp

from .. import _aiortc as adapter
from ..errors import MediaError
from . import sdp as sdp_rewrite
from .interface import (
    ConnectionStateChanged,
    DataChannelOpened,
    Event,
    PeerState,
    RenegotiationNeeded,
    TrackReceived,
)
from .publication import DataPublication, MediaPublication
from .rtp import rtcp
from .rtp.clock import now_ms, ntp_now
from .rtp.packet import Packet
from .rtp.send_stream import MID_URI
from .subscription import DataSubscription, MediaSubscription, SendSlot

if TYPE_CHECKING:
    from .media_signaling import MediaSignaling
    from .room import Room

logger = logging.getLogger(__name__)

MEDIA_CONNECTION_FAILED = 53405
RTCP_INTERVAL = 1.0
"""Seconds between the peer's Sender / Receiver Reports (RFC 3550 6.2: at most 5 s)."""

# RTCPeerConnection.connectionState -> PeerState
_STATES = {
    "new": PeerState.NEW,
    "connecting": PeerState.CONNECTING,
    "connected": PeerState.CONNECTED,
    "failed": PeerState.FAILED,
    "closed": PeerState.CLOSED,
}


def codec_preferences(publication: MediaPublication) -> list[RTCRtpCodecCapability]:
    """The capabilities that make a subscriber's transceiver use the publication's codec."""
    assert publication.codec is not None
    codec = publication.codec
    mime = codec.mimeType.lower()
    chosen: list[RTCRtpCodecCapability] = []
    for capability in RTCRtpSender.getCapabilities(publication.kind).codecs:
        if capability.mimeType.lower() != mime:
            continue
        wanted = codec.parameters.get("packetization-mode")
        if mime == "video/h264" and capability.parameters.get("packetization-mode") != wanted:
            continue
        chosen.append(capability)
    chosen += [
        c
        for c in RTCRtpSender.getCapabilities(publication.kind).codecs
        if c.mimeType.lower() == f"{publication.kind}/rtx"
    ]
    return chosen


_SENDING = ("sendonly", "sendrecv")


def _direction(sending: bool, receiving: bool) -> str:
    """The SFU's direction for an m-section."""
    return {
        (True, True): "sendrecv",
        (True, False): "sendonly",
        (False, True): "recvonly",
        (False, False): "inactive",
    }[(sending, receiving)]


def _sdp(sdp: str) -> str:
    """``sdp`` if it looks like a session description (aiortc takes anything)."""
    if not sdp.lstrip().startswith("v=0") or "\nm=" not in sdp:
        raise ValueError("not an SDP session description with media")
    return sdp


def _checked(sdp: str) -> str:
    """``sdp`` if it is a session description aiortc can negotiate; else ValueError
    saying what to fix.

    aiortc takes anything that parses, and some of what it takes breaks it later,
    outside any answer: an m-section without ``a=mid`` or a ``a=group:BUNDLE`` naming
    a mid no m-section has leaves a transceiver with no transport (its answer and
    its close fail, and the close left the peer's ICE sockets open); one without
    ``a=fingerprint`` fails its DTLS start in a background task, and one without a
    direction its answer. Found by ``test_fuzz_media``'s mutated browser offers."""
    try:
        description = SessionDescription.parse(sdp)
    except Exception as exc:
        lines = sdp.splitlines()
        # The first line after which what came so far no longer parses.
        low, high = 1, len(lines)
        while low < high:
            middle = (low + high) // 2
            try:
                SessionDescription.parse("\r\n".join(lines[:middle]))
                low = middle + 1
            except Exception:
                high = middle
        why = ("it names a payload type its m= line does not list"
               if isinstance(exc, StopIteration) else f"{type(exc).__name__} {exc}".strip())
        raise ValueError(f"line {low} cannot be read ({lines[low - 1][:80]!r}: {why})") from None
    mid_lines = [0] * len(description.media)
    section = -1
    for line in sdp.splitlines():  # as aiortc splits it
        section += line.startswith("m=")
        if line.startswith("a=mid:") and 0 <= section < len(mid_lines):
            mid_lines[section] += 1
    mids: list[str] = []
    for index, media in enumerate(description.media):
        if mid_lines[index] > 1:
            raise ValueError(f"m-section {index} ({media.kind}) has {mid_lines[index]} "
                             "a=mid lines (an m= line missing?)")
        if media.port == 0:
            continue  # rejected or stopped: nothing to negotiate
        name = f"m-section {index} ({media.kind})"
        if not media.rtp.muxId:
            raise ValueError(f"{name} has no a=mid")
        if media.rtp.muxId in mids:
            raise ValueError(f"{name} repeats a=mid:{media.rtp.muxId}")
        mids.append(media.rtp.muxId)
        if media.dtls is None or not media.dtls.fingerprints:
            raise ValueError(f"{name} has no DTLS a=fingerprint and a=setup")
        if media.kind != "application" and media.direction is None:
            # RFC 4566 reads none as sendrecv; aiortc's answer fails on it.
            raise ValueError(f"{name} has no direction (a=sendrecv, a=sendonly, "
                             "a=recvonly or a=inactive)")
    for group in description.group:
        for mid in group.items:
            if group.semantic == "BUNDLE" and str(mid) not in mids:
                raise ValueError(f"a=group:BUNDLE names mid {mid}, which no m-section has")
    return sdp


def _ice_ufrag(sdp: str) -> str | None:
    """The first ``a=ice-ufrag`` of ``sdp`` (bundled: the one of the session)."""
    for line in sdp.splitlines():
        if line.startswith("a=ice-ufrag:"):
            return line.removeprefix("a=ice-ufrag:").strip()
    return None


def _mids(sdp: str) -> set[str]:
    return {m.rtp.muxId for m in SessionDescription.parse(sdp).media if m.rtp.muxId}


OLD_CONNECTION_GRACE = 10.0
"""Seconds the peer connection an ICE restart replaced stays open, at most, for the
new one to connect: closing it sends an SCTP ABORT over its DTLS, which would close
the client's data channels while its new association is not up yet."""
KEYFRAME_WAIT = 5.0
"""Seconds after an ICE restart that the publisher's first packet is waited for, to
ask it for a keyframe."""


class Peer:
    """A participant's peer connection, its publications and its subscriptions."""

    def __init__(
        self,
        participant_sid: str,
        room: Room,
        report: Callable[[Event], None],
        public_address: str | None = None,
        video_codecs: Sequence[str] = ("VP8", "H264"),
    ) -> None:
        self.participant_sid = participant_sid
        self.video_codecs = tuple(video_codecs)
        self.room = room
        self.state = PeerState.NEW
        self.subscriptions: dict[str, MediaSubscription | DataSubscription] = {}
        self.slots: list[SendSlot] = []
        self._report = report
        self._public_address = public_address
        self.joined_at = time.monotonic()
        self.on_first_frame: Callable[[float], None] | None = None
        """Given the seconds from joining (or from the first video subscription, if
        later) to the first video frame forwarded to this participant; called once."""
        self._first_frame_seen = False
        self._remote_sdp: str | None = None
        self._client_extmap: dict[str, int] = {}  # header extension ids the client chose
        self._simulcast_rids: dict[str, list[str]] = {}  # mid -> RIDs the client sends
        self._sections: dict[RTCRtpTransceiver, MediaPublication] = {}  # what each carries
        self._active_speaker: RTCDataChannel | None = None
        self.media_signaling: MediaSignaling | None = None
        """The quality MSP channels and video allocation (sfu/media_signaling.py)."""
        self._dtls: RTCDtlsTransport | None = None
        self._by_ssrc: dict[int, MediaPublication] = {}
        """Publisher SSRCs (media and RTX) -> what they carry."""
        self._by_mid: dict[str, MediaPublication] = {}
        self._slot_by_ssrc: dict[int, SendSlot] = {}
        self.rtcp_ssrc = random.getrandbits(32)
        """The SSRC of the SFU's RTCP toward this participant's publications."""
        self._rtcp_timer: asyncio.TimerHandle | None = None
        self.restarts = 0
        """ICE restarts answered with a new peer connection (:meth:`_restart`)."""
        self._retiring: asyncio.Task[None] | None = None
        """Closes the connection the last ICE restart replaced (PeerRestart)."""
        self._resumed: SessionResume | None = None
        """The session of a peer lost with its media worker (:meth:`restore`), taken
        up by the first offer."""
        self._resumable: dict[str, tuple[RTCRtpTransceiver, SendSection]] = {}
        """Publication track id -> the m-section (and sender identity) that carried it
        to this participant before its worker exited."""
        self.pc = self._new_connection()

    def _new_connection(self) -> RTCPeerConnection:
        # One transport for every m-section, as twilio-video.js asks of its own peer
        # connection (peerconnection.js: bundlePolicy max-bundle).
        pc = RTCPeerConnection(
            RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
        )
        pc.on("track", self._on_track)
        pc.on("datachannel", self._on_datachannel)
        pc.on("connectionstatechange", self._on_connectionstatechange)
        create = pc.createDataChannel

        def create_reported(label: str, *args: Any, **kwargs: Any) -> RTCDataChannel:
            # Every channel the SFU opens (data subscriptions, media signaling) tells
            # the control plane its stream id, which a RestorePeer gives back.
            channel = create(label, *args, **kwargs)
            channel.on("open", lambda: self._report(DataChannelOpened(
                self.participant_sid, channel.label, channel.id, local=True)))
            return channel

        pc.createDataChannel = create_reported  # type: ignore[method-assign]
        return pc

    # ----------------------------------------------------------- state machine

    def _move_to(self, state: PeerState) -> None:
        """The one place the peer's state changes; reports every change."""
        if state == self.state or self.state == PeerState.CLOSED:
            return
        self.state = state
        error_code = MEDIA_CONNECTION_FAILED if state == PeerState.FAILED else None
        self._report(ConnectionStateChanged(self.participant_sid, state, error_code))

    def _on_connectionstatechange(self) -> None:
        self._move_to(_STATES.get(self.pc.connectionState, self.state))
        if self.state == PeerState.CONNECTED:
            self._start_rtcp()

    # ----------------------------------------------------------- negotiation

    async def apply_offer(self, sdp: str) -> str:
        """Apply the participant's offer and return the SFU's answer."""
        try:
            # Checked as aiortc will see it: the rewrite drops other codecs' lines.
            sdp = _checked(sdp_rewrite.only_video_codecs(_sdp(sdp), self.video_codecs))
        except ValueError as exc:
            raise MediaError(53403, f"Server is unable to apply a remote offer: {exc}") from exc
        restart = self._restart(sdp) if self._is_ice_restart(sdp) else None
        self._remote_sdp = sdp  # read by _on_track, which runs inside setRemoteDescription
        self._client_extmap = {**sdp_rewrite.extmap_ids(sdp), **self._client_extmap}
        self._simulcast_rids = sdp_rewrite.simulcast_rids(sdp)
        if self.pc.remoteDescription is None:
            adapter.bundle_early_sctp(self.pc)
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        except Exception as exc:
            raise MediaError(53403, f"Server is unable to apply a remote offer: {exc}") from exc
        if restart is not None:
            restart.carry_over()
        resumed, self._resumed = self._resumed, None
        if resumed is not None:
            resumed.carry_over(self, sdp)
        self._follow_reused_sections()
        try:
            await self.pc.setLocalDescription(await self.pc.createAnswer())
        except Exception as exc:
            raise MediaError(53401, f"Server is unable to create an answer: {exc}") from exc
        self._divert()
        if restart is not None:
            restart.finish()
        if resumed is not None and self.needs_negotiation():
            # Subscriptions this answer could not carry (a new client peer connection,
            # or publishers not negotiated here yet) go in an offer of the SFU's.
            self._report(RenegotiationNeeded(self.participant_sid))
        return self._local_sdp()

    # ----------------------------------------------------------- ICE restart

    def _is_ice_restart(self, sdp: str) -> bool:
        """An offer on a negotiated session with new ICE credentials (JSEP 5.2.1):
        the client restarts ICE (twilio-video does when its media stops, 53405)."""
        current = self.pc.remoteDescription
        if current is None:
            return False
        return _ice_ufrag(sdp) != _ice_ufrag(current.sdp)

    def restore(self, session_sdp: str, client_channels: dict[str, int],
                server_channels: dict[str, int]) -> None:
        """Take up the session of this participant's peer on a media worker that
        exited, with the participant's ICE-restart offer (see :class:`SessionResume`)."""
        self._resumed = SessionResume(session_sdp, client_channels, server_channels)

    def _resume_slot(self, subscription: MediaSubscription) -> bool:
        """Send ``subscription`` on the m-section that carried it before the worker
        exited: the client's transceiver and track go on."""
        publication = subscription.publication
        entry = self._resumable.get(publication.track_id)
        if entry is None or not publication.ready:
            return False
        del self._resumable[publication.track_id]
        transceiver, section = entry
        slot = SendSlot(transceiver, publication, self._send, self._slot_ready)
        # The msid the client knows, and new SSRCs: the stream's numbers cannot go on
        # from a worker that is gone, and Chromium shows a new SSRC's frames at once
        # where, under the old SSRC, numbers jumping anywhere took it up to 5 s.
        adapter.set_sender_identity(transceiver.sender, None, None, section.stream_id)
        self.slots.append(slot)
        subscription.start(slot)
        transceiver.direction = _direction(sending=True, receiving=transceiver in self._sections)
        return True

    def _restart(self, sdp: str) -> PeerRestart:
        """Answer an ICE restart with a new peer connection: aiortc cannot restart
        ICE (or DTLS) on one. See :class:`PeerRestart`."""
        restart = PeerRestart(self, sdp)
        self.restarts += 1
        logger.info("%s restarts ICE: a new peer connection (%s)", self.participant_sid,
                    "same m-sections" if restart.kept else "a new client peer connection")
        return restart

    async def create_offer(self) -> str:
        """An offer carrying every subscription (new ones get a transceiver)."""
        for subscription in self.subscriptions.values():
            if isinstance(subscription, MediaSubscription) and subscription.slot is None:
                self._start_in_new_slot(subscription)
        try:
            offer = await self.pc.createOffer()
            sdp = offer.sdp
            if self._client_extmap:
                sdp = sdp_rewrite.keep_extmap_ids(sdp, self._client_extmap)
            if self._remote_sdp is not None:
                sdp = sdp_rewrite.keep_payload_types(sdp, self._remote_sdp)
            adapter.use_offered_parameters(self.pc, sdp)
            offer = RTCSessionDescription(sdp, "offer")
            await self.pc.setLocalDescription(offer)
        except Exception as exc:
            raise MediaError(53401, f"Server is unable to create an offer: {exc}") from exc
        self._divert()
        return self._local_sdp()

    async def apply_answer(self, sdp: str) -> None:
        """Apply the participant's answer to the SFU's offer."""
        self._remote_sdp = sdp
        self._simulcast_rids = sdp_rewrite.simulcast_rids(sdp)
        try:
            await self.pc.setRemoteDescription(
                RTCSessionDescription(sdp=_checked(_sdp(sdp)), type="answer")
            )
        except Exception as exc:
            raise MediaError(53403, f"Server is unable to apply a remote answer: {exc}") from exc
        if self.needs_negotiation():
            # Subscriptions changed while this offer was out (e.g. a track taken away
            # and given back): what was just agreed is already stale.
            self._report(RenegotiationNeeded(self.participant_sid))

    async def add_ice_candidate(
        self, candidate: str | None, sdp_mid: str | None, sdp_mline_index: int | None
    ) -> None:
        """Add a trickled remote candidate (None or empty: end of candidates)."""
        if not candidate:
            await self.pc.addIceCandidate(None)
            return
        try:
            parsed = candidate_from_sdp(candidate.removeprefix("candidate:"))
            parsed.sdpMid = sdp_mid
            parsed.sdpMLineIndex = sdp_mline_index
            await self.pc.addIceCandidate(parsed)
        except Exception as exc:
            raise MediaError(53403, f"Invalid ICE candidate {candidate!r}: {exc!r}") from exc

    def _local_sdp(self) -> str:
        description = self.pc.localDescription
        sdp = sdp_rewrite.with_opus_parameters(description.sdp, self._remote_sdp)
        sdp = sdp_rewrite.with_video_start_bitrate(sdp)
        sdp = sdp_rewrite.with_simulcast_recv(sdp, self._simulcast_rids, self._client_extmap)
        sdp = sdp_rewrite.with_max_message_size(sdp, self.room.data_limits.max_message_bytes)
        return adapter.announce_public_address(sdp, self._public_address)

    # ----------------------------------------------------------- publishing

    def _on_track(self, track: MediaStreamTrack) -> None:
        transceiver = next(t for t in self.pc.getTransceivers() if t.receiver.track is track)
        _, track_id = self._msid(transceiver)
        # aiortc names the remote track after a=msid only when its stream is listed
        # in a=msid-semantic (sdp.py webrtc_track_id); Chrome writes "a=msid:- <id>"
        # with an empty WMS list, so read the id the client announced from the SDP.
        self._publish_section(transceiver, track_id or track.id, started=False)
        if any(slot.transceiver is transceiver for slot in self.slots):
            # twilio-video publishes a new track on a transceiver that only received
            # (peerconnection.js takeRecycledTransceiver), here one of our send slots:
            # the answer must take its media too, or aiortc never starts the receiver.
            transceiver.direction = _direction(sending=transceiver.direction in _SENDING,
                                               receiving=True)

    def _follow_reused_sections(self) -> None:
        """Publish tracks that arrive on m-sections which carried earlier ones.

        twilio-video puts a new track on the m-section an unpublished track of the
        same kind left; aiortc keeps that receiver and fires no ``track`` event.
        """
        for transceiver, publication in list(self._sections.items()):
            _, track_id = self._msid(transceiver)
            if track_id is not None and track_id != publication.track_id:
                self._publish_section(transceiver, track_id, started=True)

    def _publish_section(
        self, transceiver: RTCRtpTransceiver, track_id: str, started: bool
    ) -> None:
        stream_id, _ = self._msid(transceiver)
        publication = self.room.media_publication(
            self.participant_sid, track_id, transceiver.kind
        )
        previous = self._sections.get(transceiver)
        for ssrc in [s for s, p in self._by_ssrc.items() if p is previous]:
            del self._by_ssrc[ssrc]  # the same sender's SSRCs now carry the new track
        self._divert()
        publication.attach(
            adapter.negotiated_codecs(transceiver, rtx=True),
            {i: uri for uri, i in self._client_extmap.items()},
            self._send,
            self.rtcp_ssrc,
        )
        if not started:
            adapter.take_receiver(
                transceiver.receiver, lambda params: self._learn_ssrcs(transceiver, params)
            )
        self._sections[transceiver] = publication
        if transceiver.mid is not None:
            self._by_mid[transceiver.mid] = publication
        assert publication.codec is not None
        self._report(
            TrackReceived(
                participant_sid=self.participant_sid,
                track_id=track_id,
                kind=transceiver.kind,  # type: ignore[arg-type]
                stream_id=stream_id,
                mid=transceiver.mid,
                codec=publication.codec.mimeType,
            )
        )

    def _learn_ssrcs(
        self, transceiver: RTCRtpTransceiver, parameters: RTCRtpReceiveParameters
    ) -> None:
        """The SSRCs the publisher's SDP announced for ``transceiver``'s m-section
        (aiortc calls this where it would start its receiver)."""
        publication = self._sections.get(transceiver)
        if publication is None:
            return
        if parameters.muxId:
            self._by_mid[parameters.muxId] = publication
        layers = self._announced_layers(transceiver)
        for media, rtx in layers:
            self._by_ssrc[media] = publication
            if rtx is not None:
                self._by_ssrc[rtx] = publication
        rids = self._simulcast_rids.get(transceiver.mid or "")
        if rids and len(layers) < 2:
            publication.set_rid_layers(rids)  # RID simulcast: SSRCs learnt from packets
        else:
            publication.set_layers(layers)
        self._start_rtcp()

    def _announced_layers(self, transceiver: RTCRtpTransceiver) -> list[tuple[int, int | None]]:
        """(media SSRC, RTX SSRC) of each stream the remote SDP announces for
        ``transceiver``'s m-section: simulcast layers lowest first (``a=ssrc-group:SIM``),
        each with its ``FID`` partner."""
        if self._remote_sdp is None:
            return []
        for media in SessionDescription.parse(self._remote_sdp).media:
            if media.rtp.muxId != transceiver.mid:
                continue
            rtx_of = {
                int(g.items[0]): int(g.items[1])
                for g in media.ssrc_group if g.semantic == "FID" and len(g.items) == 2
            }
            simulcast = next((g for g in media.ssrc_group if g.semantic == "SIM"), None)
            if simulcast is not None:
                primaries = [int(i) for i in simulcast.items]
            else:
                rtx = set(rtx_of.values())
                primaries = [s.ssrc for s in media.ssrc if s.ssrc not in rtx][:1]
            return [(ssrc, rtx_of.get(ssrc)) for ssrc in primaries]
        return []

    # ----------------------------------------------------------- the packet path

    def _divert(self) -> None:
        """Take the SRTP of the peer's (bundled) transport from aiortc."""
        for transceiver in self.pc.getTransceivers():
            dtls = transceiver.receiver.transport
            if dtls is not None and not adapter.srtp_diverted(dtls):
                adapter.divert_srtp(dtls, self._on_rtp, self._on_rtcp)
            if dtls is not None:
                self._dtls = dtls

    def _send(self, data: bytes) -> bool:
        dtls = self._dtls
        return dtls is not None and adapter.send_srtp(dtls, data)

    def _on_rtp(self, data: bytes, arrival_ms: int) -> bool:
        try:
            packet = Packet(data, arrival_ms)
        except ValueError:
            return True
        publication = self._by_ssrc.get(packet.ssrc)
        if publication is None:
            publication = self._route_new_ssrc(packet)
            if publication is None:
                return True
        publication.receive_packet(packet)
        return True

    def _route_new_ssrc(self, packet: Packet) -> MediaPublication | None:
        """The publication of an SSRC not seen before: by its mid header extension,
        else by payload type when only one m-section has it (as aiortc's RtpRouter)."""
        mid_id = self._client_extmap.get(MID_URI)
        publication = None
        if mid_id is not None:
            mid = packet.extension(mid_id)
            if mid:
                publication = self._by_mid.get(mid.decode(errors="replace"))
        if publication is None:
            candidates = {
                p for p in self._sections.values()
                if p.stream is not None and packet.payload_type in (
                    p.stream.parameters.payload_type, p.stream.parameters.rtx_payload_type)
            }
            if len(candidates) == 1:
                publication = candidates.pop()
        if publication is not None:
            self._by_ssrc[packet.ssrc] = publication
            self._start_rtcp()
        return publication

    def _on_rtcp(self, data: bytes) -> bool:
        ntp = ntp_now()
        for packet_type, count, start, end in rtcp.packets(data):
            if packet_type in (rtcp.SR, rtcp.RR):
                if packet_type == rtcp.SR and end - start >= 24:
                    sender, sent_ntp, _ = rtcp.sender_info(data, start)
                    publication = self._by_ssrc.get(sender)
                    if publication is not None and publication.stream is not None:
                        # each simulcast layer's own: its Receiver Report echoes it
                        layer = next((stream for stream in publication.layers
                                      if stream.parameters.ssrc == sender), publication.stream)
                        layer.on_sender_report(sent_ntp, now_ms())
                for block in rtcp.report_blocks(data, packet_type, count, start, end):
                    slot = self._slot_by_ssrc.get(block.ssrc)
                    if slot is not None and slot.stream is not None:
                        slot.stream.on_receiver_report(block, ntp)
                        self._note_rtt(slot.stream.rtt_ms)
            elif packet_type == rtcp.RTPFB and count == rtcp.NACK_FMT and end - start >= 12:
                slot = self._slot_by_ssrc.get(rtcp.media_ssrc(data, start))
                if slot is not None:
                    slot.retransmit(rtcp.nacked(data, start, end))
            elif packet_type == rtcp.PSFB and end - start >= 8:
                if count == rtcp.REMB_FMT:
                    self._on_remb(data, start, end)
                elif count == rtcp.PLI_FMT:
                    slot = self._slot_by_ssrc.get(rtcp.media_ssrc(data, start))
                    if slot is not None:
                        slot.keyframe_requested()
                elif count == rtcp.FIR_FMT:
                    for ssrc in rtcp.fir_ssrcs(data, start, end):
                        slot = self._slot_by_ssrc.get(ssrc)
                        if slot is not None:
                            slot.keyframe_requested()
        return True

    def _on_remb(self, data: bytes, start: int, end: int) -> None:
        """A subscriber's REMB: what its downlink takes, for its publishers' REMB."""
        remb = rtcp.remb_bitrate(data, start, end)
        if remb is None:
            return
        bitrate, ssrcs = remb
        now = now_ms()
        for ssrc in ssrcs:
            slot = self._slot_by_ssrc.get(ssrc)
            if slot is not None and slot.stream is not None:
                slot.stream.bandwidth.on_remb(bitrate, now)

    def _note_rtt(self, rtt_ms: float | None) -> None:
        """The round trip a Receiver Report measured is the transport's: the NACKs
        toward this peer's publications are repeated after it."""
        if rtt_ms is None:
            return
        for publication in set(self._sections.values()):
            for stream in publication.layers:
                stream.reported_rtt_ms = rtt_ms

    def _slot_ready(self, slot: SendSlot) -> None:
        assert slot.stream is not None
        self._slot_by_ssrc[slot.stream.parameters.ssrc] = slot
        self._start_rtcp()

    def _start_rtcp(self) -> None:
        if self._rtcp_timer is None and self.state != PeerState.CLOSED:
            # Spread the peers' reports over the interval (RFC 3550 6.3.1).
            delay = RTCP_INTERVAL * (0.5 + random.random())
            self._rtcp_timer = asyncio.get_running_loop().call_later(delay, self._send_reports)

    def _send_reports(self) -> None:
        """One Sender Report per stream sent, a Receiver Report (and REMB) per
        publication received."""
        self._rtcp_timer = None
        now, ntp = now_ms(), ntp_now()
        sent = False
        for slot in self.slots:
            report = slot.sender_report(now, ntp)
            if report:
                sent = self._send(report) or sent
        for publication in set(self._sections.values()):
            feedback = publication.receiver_feedback()
            if feedback:
                sent = self._send(feedback) or sent
        if not sent and (self.slots or self._sections):
            # Nothing to report yet (a subscription that never carried a packet): an
            # empty Receiver Report still tells the client its path is alive; the
            # Python client restarts ICE after 3 s without a byte, as twilio-video.
            self._send(rtcp.receiver_report(self.rtcp_ssrc, []))
        self._start_rtcp()

    def _msid(self, transceiver: RTCRtpTransceiver) -> tuple[str | None, str | None]:
        """The stream and track id of ``transceiver``'s m-section in the remote SDP.

        aiortc sets ``pc.remoteDescription`` only after it has emitted ``track``,
        so this reads the SDP being applied.
        """
        if self._remote_sdp is None:
            return None, None
        for media in SessionDescription.parse(self._remote_sdp).media:
            if media.rtp.muxId == transceiver.mid and media.msid:
                parts = media.msid.split()
                return parts[0], parts[1] if len(parts) > 1 else None
        return None, None

    def _on_datachannel(self, channel: RTCDataChannel) -> None:
        publication = self.room.data_publication(self.participant_sid, channel.label)
        publication.attach(channel)
        self._report(DataChannelOpened(self.participant_sid, channel.label, channel.id))

    # ----------------------------------------------------------- media signaling

    def grant_active_speaker(self, label: str) -> bool:
        """Open the ``active_speaker`` channel; True when an offer is needed for it."""
        needs_offer = self.pc.sctp is None  # the first channel adds m=application
        channel = self.pc.createDataChannel(label, ordered=True)
        self._active_speaker = channel
        # twilio-video sends {"type": "ready"} first; the current speaker goes out on open.
        channel.on("open", lambda: self.tell_active_speaker(self.room.dominant_speaker))
        return needs_offer

    def quality_signaling(self) -> MediaSignaling:
        """The participant's quality channels and allocation, made on first use."""
        if self.media_signaling is None:
            from .media_signaling import MediaSignaling

            self.media_signaling = MediaSignaling(self)
        return self.media_signaling

    def tell_active_speaker(self, participant_sid: str | None) -> None:
        """``{"type": "active_speaker", "participant": sid}`` (dominantspeakersignaling.js)."""
        channel = self._active_speaker
        if channel is not None and channel.readyState == "open":
            channel.send(json.dumps({"type": "active_speaker", "participant": participant_sid}))

    # ----------------------------------------------------------- subscribing

    def subscribe(self, publication: MediaPublication | DataPublication) -> bool:
        """Start forwarding ``publication`` here; True when an offer is needed."""
        assert publication.track_sid is not None
        if publication.track_sid in self.subscriptions:
            return False
        if isinstance(publication, DataPublication):
            data = DataSubscription(self.participant_sid, publication)
            self.subscriptions[publication.track_sid] = data
            needs_offer = self.pc.sctp is None  # the first channel adds m=application
            data.start(self.pc)
            return needs_offer
        subscription = MediaSubscription(self.participant_sid, publication)
        if publication.kind == "video" and not self._first_frame_seen:
            subscription.on_first_frame = self._first_video_frame
        self.subscriptions[publication.track_sid] = subscription
        if not publication.ready:
            return False  # offered once the publisher's media is negotiated
        slot = next((s for s in self.slots if s.fits(publication)), None)
        if slot is None:
            return True  # create_offer() adds a transceiver
        subscription.start(slot)
        self._slot_sends(slot, True)
        return slot.transceiver.currentDirection != slot.transceiver.direction

    def _first_video_frame(self, subscribed_at: float) -> None:
        if self._first_frame_seen:
            return
        self._first_frame_seen = True
        if self.on_first_frame is not None:
            self.on_first_frame(time.monotonic() - max(self.joined_at, subscribed_at))

    def unsubscribe(self, track_sid: str) -> bool:
        """Stop forwarding ``track_sid`` here; True when an offer is needed."""
        subscription = self.subscriptions.pop(track_sid, None)
        if subscription is None:
            return False
        if isinstance(subscription, DataSubscription):
            subscription.end()
            return False
        slot = subscription.slot
        subscription.end()
        if slot is None:
            return False
        self._slot_sends(slot, False)
        return True

    def _slot_sends(self, slot: SendSlot, sending: bool) -> None:
        """Start or stop sending on ``slot``, still receiving what the client may
        publish on it (see ``_on_track``)."""
        receiving = slot.transceiver in self._sections
        slot.transceiver.direction = _direction(sending=sending, receiving=receiving)

    def _start_in_new_slot(self, subscription: MediaSubscription) -> None:
        publication = subscription.publication
        if not publication.ready or self._resume_slot(subscription):
            return
        transceiver = self.pc.addTransceiver(publication.kind, direction="sendonly")
        transceiver.setCodecPreferences(codec_preferences(publication))
        slot = SendSlot(transceiver, publication, self._send, self._slot_ready)
        self.slots.append(slot)
        subscription.start(slot)

    def needs_negotiation(self) -> bool:
        """Whether the agreed session differs from what the subscriptions want."""
        return self.pending_subscriptions() or any(
            slot.transceiver.direction != (slot.transceiver.currentDirection or "inactive")
            for slot in self.slots
        )

    def pending_subscriptions(self) -> bool:
        """Whether a ready subscription waits for an offer."""
        return any(
            isinstance(s, MediaSubscription) and s.slot is None and s.publication.ready
            for s in self.subscriptions.values()
        )

    # ----------------------------------------------------------- closing

    async def close(self) -> None:
        """End every subscription and close the peer connection."""
        for subscription in self.subscriptions.values():
            subscription.end()
        self.subscriptions.clear()
        for slot in self.slots:
            slot.track.stop()
        if self._rtcp_timer is not None:
            self._rtcp_timer.cancel()
            self._rtcp_timer = None
        if self.media_signaling is not None:
            self.media_signaling.close()
        try:
            await self.pc.close()
        finally:  # a pc aiortc fails to close is still this peer's last
            self._move_to(PeerState.CLOSED)
            if self._retiring is not None:
                await self._retiring


class PeerRestart:
    """One ICE restart of a :class:`Peer`: its new RTCPeerConnection takes over
    what the old one carried.

    Chromium takes the new connection's DTLS fingerprint and ICE credentials in the
    answer to its restart offer (a DTLS restart), carries SRTP to it, and lets the
    new SCTP association take its open data channels on the same stream ids
    (docs/reliability.md, "ICE restart"). So when the offer still has every
    m-section of the session (the client *kept* its peer connection, as
    twilio-video does), the SFU's send slots move to the same m-sections with the
    same SSRCs, and its data channels are opened again as negotiated channels on
    their old stream ids: nothing changes for the client's transceivers, tracks
    and channels. An offer from a *new* client peer connection (fewer m-sections)
    gets the publications back from its tracks and channels, and every
    subscription again through an SFU offer.
    """

    def __init__(self, peer: Peer, sdp: str) -> None:
        self.peer = peer
        self.old = peer.pc
        current = self.old.remoteDescription
        assert current is not None
        self.kept = _mids(current.sdp) <= _mids(sdp)
        self.old.remove_all_listeners()
        self._old_slots = {slot.transceiver.mid: slot for slot in peer.slots}
        peer.pc = peer._new_connection()
        peer._dtls = None
        peer._sections = {}
        peer._by_ssrc = {}
        peer._by_mid = {}

    def carry_over(self) -> None:
        """After the restart offer is applied to the new connection, before answering."""
        peer = self.peer
        for publication in set(peer._sections.values()):
            # A new receive stream, numbered afresh: subscribers go on from its next
            # keyframe, numbered on from what they got.
            for subscription in publication.subscriptions:
                if isinstance(subscription, MediaSubscription):
                    subscription.restart_source()
        if self.kept:
            by_mid = {t.mid: t for t in peer.pc.getTransceivers()}
            for mid, slot in self._old_slots.items():
                transceiver = by_mid.get(mid)
                if transceiver is None:
                    continue
                sending = slot.transceiver.direction in _SENDING
                slot.move_to(transceiver)
                transceiver.direction = _direction(
                    sending=sending, receiving=transceiver in peer._sections)
            self._reopen_data_channels(keep_ids=True)
        else:
            self._subscribe_again()
            self._reopen_data_channels(keep_ids=False)

    def finish(self) -> None:
        """After the answer: close the old connection once the new one connected."""
        peer = self.peer
        if not self.kept:
            # The subscriptions and SFU channels need an SFU offer on the new connection.
            peer._report(RenegotiationNeeded(peer.participant_sid))
        previous = peer._retiring
        if previous is not None and not previous.done():
            previous.cancel()  # a restart of a restart: the one before is gone too
        peer._retiring = asyncio.ensure_future(self._close_old())

    def _subscribe_again(self) -> None:
        peer = self.peer
        subscriptions = list(peer.subscriptions.values())
        peer.subscriptions.clear()
        for slot in peer.slots:
            slot.track.stop()
        peer.slots = []
        peer._slot_by_ssrc = {}
        for subscription in subscriptions:
            subscription.end()
            peer.subscribe(subscription.publication)

    def _reopen_data_channels(self, keep_ids: bool) -> None:
        """The SFU's channels (and, kept, the client's) on the new connection, with
        the handlers they had."""
        peer = self.peer
        if keep_ids:
            # (A new client peer connection opens its channels again itself, and
            # _subscribe_again opened the data subscriptions' anew.)
            for publication in peer.room.publications.values():
                if (isinstance(publication, DataPublication) and publication.channel is not None
                        and publication.publisher_sid == peer.participant_sid):
                    publication.channel = self._reopen(publication.channel, keep_ids)
            for subscription in peer.subscriptions.values():
                if isinstance(subscription, DataSubscription) and subscription.channel is not None:
                    subscription.channel = self._reopen(subscription.channel, keep_ids)
        if peer._active_speaker is not None:
            peer._active_speaker = self._reopen(peer._active_speaker, keep_ids)
        if peer.media_signaling is not None:
            channels = peer.media_signaling.channels
            for name, channel in list(channels.items()):
                channels[name] = self._reopen(channel, keep_ids)

    def _reopen(self, old: RTCDataChannel, keep_id: bool) -> RTCDataChannel:
        return _reopen_channel(self.peer.pc, old, old.id if keep_id else None)

    async def _close_old(self) -> None:
        peer = self.peer
        deadline = time.monotonic() + OLD_CONNECTION_GRACE
        try:
            while peer.pc.connectionState != "connected" and time.monotonic() < deadline:
                if peer.state == PeerState.CLOSED:
                    break
                await asyncio.sleep(0.1)
        finally:
            await asyncio.shield(self.old.close())
        # The media resumes on a keyframe both ways. The publisher's streams on the
        # new connection take a PLI only once a packet named their SSRC (the
        # subscribers' decoders would wait for the publisher's next keyframe,
        # which Chromium sends only when asked).
        for subscription in peer.subscriptions.values():
            if isinstance(subscription, MediaSubscription):
                subscription.publication.request_keyframe()
        waiting = {p: p.keyframe_requests_sent for p in set(peer._sections.values())
                   if p.kind == "video"}
        deadline = time.monotonic() + KEYFRAME_WAIT
        while waiting and time.monotonic() < deadline and peer.state != PeerState.CLOSED:
            for publication, sent in list(waiting.items()):
                if publication.keyframe_requests_sent > sent:
                    del waiting[publication]
                else:
                    publication.request_keyframe()
            await asyncio.sleep(0.1)


def _reopen_channel(pc: RTCPeerConnection, old: RTCDataChannel,
                    stream_id: int | None) -> RTCDataChannel:
    """``old``'s channel on ``pc``, with the handlers it had: negotiated on
    ``stream_id`` (a channel the client keeps open across the restart), else opened
    anew (DCEP)."""
    channel = pc.createDataChannel(
        old.label,
        ordered=old.ordered,
        maxPacketLifeTime=old.maxPacketLifeTime,
        maxRetransmits=old.maxRetransmits,
        protocol=old.protocol,
        negotiated=stream_id is not None,
        id=stream_id,
    )
    for event in ("open", "message"):
        for listener in old.listeners(event):
            channel.on(event, listener)
    old.remove_all_listeners()
    return channel


@dataclass
class SendSection:
    """An m-section the SFU sent on, as its SDP announced it."""

    kind: str
    track_id: str
    stream_id: str | None


def _send_sections(sdp: str) -> dict[str, SendSection]:
    """mid -> what the SFU announced sending there, in its own SDP ``sdp``."""
    sections = {}
    for media in SessionDescription.parse(sdp).media:
        if not media.rtp.muxId or not media.msid or not media.ssrc:
            continue
        parts = media.msid.split()
        if len(parts) == 2:
            sections[media.rtp.muxId] = SendSection(media.kind, parts[1], parts[0])
    return sections


class SessionResume:
    """A participant's session carried over from a media worker that exited (a
    RestorePeer) to the new worker's peer, by the participant's ICE-restart offer.

    twilio-video keeps its peer connection (every m-section of the session is in
    the offer): the SFU's m-sections take their subscriptions again with the msids
    the session's SDP announced (each as soon as its publisher's media is
    negotiated here), under new SSRCs, and the data channels are opened again on
    the stream ids they had, as an ICE restart on one worker does
    (:class:`PeerRestart`). A new client peer connection (the Python client's)
    takes everything anew.
    """

    def __init__(self, session_sdp: str, client_channels: dict[str, int],
                 server_channels: dict[str, int]) -> None:
        self.session_sdp = session_sdp
        self.client_channels = client_channels
        self.server_channels = server_channels

    def carry_over(self, peer: Peer, offer: str) -> None:
        """After the offer is applied to ``peer``'s connection, before answering."""
        if not _mids(self.session_sdp) <= _mids(offer):
            return
        by_mid = {t.mid: t for t in peer.pc.getTransceivers()}
        peer._resumable = {
            section.track_id: (by_mid[mid], section)
            for mid, section in _send_sections(self.session_sdp).items()
            if mid in by_mid and by_mid[mid].kind == section.kind
        }
        for subscription in list(peer.subscriptions.values()):
            if isinstance(subscription, MediaSubscription) and subscription.slot is None:
                peer._resume_slot(subscription)
        for label, stream_id in self.client_channels.items():
            peer._on_datachannel(peer.pc.createDataChannel(label, negotiated=True, id=stream_id))
        for subscription in peer.subscriptions.values():
            if isinstance(subscription, DataSubscription) and subscription.channel is not None:
                subscription.channel = self._on_old_id(peer, subscription.channel)
        if peer._active_speaker is not None:
            peer._active_speaker = self._on_old_id(peer, peer._active_speaker)
        if peer.media_signaling is not None:
            channels = peer.media_signaling.channels
            for name, channel in list(channels.items()):
                channels[name] = self._on_old_id(peer, channel)

    def _on_old_id(self, peer: Peer, channel: RTCDataChannel) -> RTCDataChannel:
        """The SFU's ``channel`` (not announced yet) on the stream id it had before,
        where the client still has it open."""
        stream_id = self.server_channels.get(channel.label)
        if stream_id is None:
            return channel  # it opens anew
        reopened = _reopen_channel(peer.pc, channel, stream_id)
        channel.close()  # never announced: it closes at once
        return reopened
