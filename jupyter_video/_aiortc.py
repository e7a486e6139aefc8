"""Every private aiortc / aioice hook jupyter_video needs (the SFU and the Python
client alike), in one place, outside both so that neither imports the other.

aiortc is kept for what it does well: ICE (aioice), DTLS, SRTP keying, SCTP
data channels, SDP and transceivers. The SFU forwards RTP itself
(``jupyter_video.sfu.rtp``): the hooks below take every SRTP packet from the
DTLS transport once unprotected (:func:`divert_srtp`) and send ours
(:func:`send_srtp`), keep aiortc's receivers and senders from ever starting
(:func:`take_receiver`, :func:`take_sender`), fix what aiortc negotiates, and
choose which addresses ICE gathers on. Clients (and the tests' clients) use
aiortc's own receivers and senders: taps on the encoded frames they assemble,
keyframe requests, whole-frame encoders for the media socket.

They rely on names that are private in aiortc 1.16 / aioice 0.13 and are
checked by ``tests/sfu/test_adapter.py``: when aiortc is upgraded, that test
says which hook moved. Nothing else in ``jupyter_video`` touches a private
aiortc name.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import aioice
import aioice.ice
import aiortc
import aiortc.rtcrtpreceiver
import aiortc.rtcrtpsender
import pylibsrtp
from aiortc import RTCPeerConnection, RTCRtpReceiver, RTCRtpSender, RTCRtpTransceiver
from aiortc.codecs.h264 import H264Encoder
from aiortc.codecs.vpx import Vp8Encoder
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtcdtlstransport import State as DtlsState
from aiortc.rtcrtpparameters import (
    RTCRtpCodecParameters,
    RTCRtpReceiveParameters,
    RTCRtpSendParameters,
)
from aiortc.rtp import is_rtcp
from aiortc.sdp import SessionDescription

logger = logging.getLogger(__name__)

AIORTC_VERSION = "1.16.0"
AIOICE_VERSION = "0.13.0"

VIDEO_CLOCK_RATE = 90000
AUDIO_CLOCK_RATE = 48000


def check_versions() -> None:
    """Raise if aiortc / aioice are not the versions these hooks were written for."""
    found = (aiortc.__version__, aioice.__version__)
    if found != (AIORTC_VERSION, AIOICE_VERSION):
        raise RuntimeError(
            f"jupyter_video._aiortc is written for aiortc {AIORTC_VERSION} and "
            f"aioice {AIOICE_VERSION}, found aiortc {found[0]} and aioice {found[1]}: "
            "re-check the hooks in jupyter_video/_aiortc.py"
        )


check_versions()


# --------------------------------------------------------------------------- ICE

_aioice_get_host_addresses = aioice.ice.get_host_addresses


def use_host_addresses(addresses: Sequence[str] | None) -> None:
    """Make ICE gather host candidates on exactly ``addresses`` (process-wide).

    aioice leaves 127.0.0.1 out of its host candidates
    (``aioice.ice.get_host_addresses``); a loopback-only machine needs it in.
    ``None`` restores aioice's own choice.
    """
    if addresses is None:
        aioice.ice.get_host_addresses = _aioice_get_host_addresses
        return
    chosen = list(addresses)

    def get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return [a for a in chosen if (":" in a and use_ipv6) or (":" not in a and use_ipv4)]

    aioice.ice.get_host_addresses = get_host_addresses


_aioice_datagram_received = aioice.ice.StunProtocol.datagram_received


def drop_unchecked_datagrams() -> None:
    """Make ICE drop non-STUN datagrams from addresses none of its candidate pairs has
    (process-wide), and empty datagrams from anyone.

    aioice hands every datagram that is not STUN to DTLS, whoever sent it: anyone
    who can reach the port can feed the DTLS transport, and a single empty datagram
    ends it (aiortc ``RTCDtlsTransport._recv_next`` reads ``data[0]``), taking the
    participant's media and data with it. ICE only carries media between checked
    pairs (RFC 8445 section 7.3.1.4; RFC 7675 for consent).
    """

    def datagram_received(self: aioice.ice.StunProtocol, data: bytes | str,
                          addr: tuple[Any, ...]) -> None:
        if not data:
            return
        # RFC 7983: a first byte of 0-3 is STUN, which aioice checks itself.
        if isinstance(data, bytes) and data[0] > 3 and not any(
            pair.protocol is self and pair.remote_addr == (addr[0], addr[1])
            for pair in self.receiver._check_list
        ):
            return
        _aioice_datagram_received(self, data, addr)

    aioice.ice.StunProtocol.datagram_received = datagram_received  # type: ignore[method-assign]


_CANDIDATE = re.compile(r"^(a=candidate:\S+ \d+ \S+ \d+ )(\S+)( \d+ typ host.*)$", re.MULTILINE)


def announce_public_address(sdp: str, public_address: str | None) -> str:
    """Rewrite host candidates in ``sdp`` to ``public_address`` (1:1 NAT).

    aioice has no NAT-1:1 setting; the SFU announces its public address by
    rewriting the host candidates of the descriptions it hands out.
    """
    if not public_address:
        return sdp
    return _CANDIDATE.sub(lambda m: m.group(1) + public_address + m.group(3), sdp)


# ------------------------------------------------------------------ SRTP packets

RtpDivert = Callable[[bytes, int], bool]
"""Called with (an unprotected RTP packet, its arrival in ms); True: taken, aiortc
never sees it."""
RtcpDivert = Callable[[bytes], bool]
"""Called with an unprotected (compound) RTCP packet; True: taken."""

_DIVERTED = "_jupyter_video_diverted"


_NTP_UNIX_EPOCH_MS = 2_208_988_800_000
"""1970-01-01 on the NTP timescale, in ms: aiortc's ``clock.current_ms()`` counts from 1900."""


def divert_srtp(dtls: RTCDtlsTransport, on_rtp: RtpDivert, on_rtcp: RtcpDivert) -> None:
    """Hand every SRTP packet ``dtls`` receives, unprotected, to ``on_rtp`` /
    ``on_rtcp`` in the datagram callback itself, before aiortc's receivers.

    aioice puts each datagram on a queue (ice.py ``Connection.data_received``)
    that the DTLS transport's task reads, unprotects with its SRTP session and
    parses (rtcdtlstransport.py ``_recv_next``): a loop wake-up, a task step and
    three awaits per packet. Here ``data_received`` of the transport's ICE
    connection is replaced on that instance: once DTLS has given the SRTP keys,
    SRTP and SRTCP are unprotected with the transport's session (``_rx_srtp``) and
    handed over at once; DTLS (and SRTP before the keys) goes on to the queue as
    before. Packets that took the queue (they came while DTLS was finishing) reach
    the handlers too: ``_handle_rtp_data(data, arrival_time_ms=...)`` and
    ``_handle_rtcp_data(data)``, which ``_recv_next`` awaits once it unprotected
    them, are replaced on the transport. A packet a handler declines (returns
    False) goes on to aiortc's own as it would have. Calling it again for the same
    transport replaces the handlers.
    """
    already = hasattr(dtls, _DIVERTED)
    setattr(dtls, _DIVERTED, (on_rtp, on_rtcp))
    if already:
        return
    connection = dtls.transport._connection
    queue_datagram = connection.data_received
    handle_rtp = dtls._handle_rtp_data
    handle_rtcp = dtls._handle_rtcp_data
    pending: set[asyncio.Future[None]] = set()

    def pass_on(coroutine: Any) -> None:
        task = asyncio.ensure_future(coroutine)
        pending.add(task)
        task.add_done_callback(pending.discard)

    async def handle_queued_rtp(data: bytes, arrival_time_ms: int) -> None:
        try:
            taken = getattr(dtls, _DIVERTED)[0](data, arrival_time_ms)
        except Exception:
            logger.exception("diverted RTP handler failed")
            return
        if not taken:
            await handle_rtp(data, arrival_time_ms)

    async def handle_queued_rtcp(data: bytes) -> None:
        try:
            taken = getattr(dtls, _DIVERTED)[1](data)
        except Exception:
            logger.exception("diverted RTCP handler failed")
            return
        if not taken:
            await handle_rtcp(data)

    waiting: asyncio.Queue[Any] = connection._queue
    protocols: list[Any] = connection._protocols
    bypassed: set[Any] = set()

    def data_received(data: bytes, component: int) -> None:
        if len(bypassed) != len(protocols):
            _bypass_stun_parsing(protocols, bypassed)  # gathered since
        session: Any = dtls._rx_srtp
        if session is None or not data or not 127 < data[0] < 192 or waiting.qsize():
            # DTLS, SRTP before the keys, or behind datagrams still queued (in order)
            queue_datagram(data, component)
            return
        handlers = getattr(dtls, _DIVERTED)
        # This runs inside aioice's datagram callback: an exception here would end
        # the transport, so a handler's is logged instead.
        try:
            if is_rtcp(data):
                plain = session.unprotect_rtcp(data)
                if not handlers[1](plain):
                    pass_on(handle_rtcp(plain))
            else:
                plain = session.unprotect(data)
                arrival_ms = time.time_ns() // 1_000_000 + _NTP_UNIX_EPOCH_MS
                if not handlers[0](plain, arrival_ms):
                    pass_on(handle_rtp(plain, arrival_ms))
        except pylibsrtp.Error:
            return  # a replay, or not ours: aiortc drops these too
        except Exception:
            logger.exception("diverted SRTP handler failed")

    connection.data_received = data_received  # type: ignore[method-assign]
    dtls._handle_rtp_data = handle_queued_rtp  # type: ignore[method-assign]
    dtls._handle_rtcp_data = handle_queued_rtcp  # type: ignore[method-assign]
    _bypass_stun_parsing(protocols, bypassed)


def _bypass_stun_parsing(protocols: list[Any], bypassed: set[Any]) -> None:
    """Each host / server-reflexive socket's ``datagram_received`` hands RTP and
    RTCP to the connection's ``data_received`` without first trying to parse them
    as STUN (aioice's ``stun.parse_message`` raises ValueError on each, once per
    received packet). The first byte tells them apart (RFC 7983: STUN 0-3, DTLS
    20-63, RTP/RTCP 128-191); everything else goes through aioice as before.
    TURN's protocol is left alone (its datagrams are framed)."""
    for protocol in protocols:
        if protocol in bypassed:
            continue
        bypassed.add(protocol)
        if type(protocol) is not _StunProtocol:
            continue
        parse_first = protocol.datagram_received
        receiver = protocol.receiver
        component = protocol.local_candidate.component

        def datagram_received(
            data: bytes, addr: tuple[Any, ...], parse_first: Any = parse_first,
            receiver: Any = receiver, component: int = component,
        ) -> None:
            if data and 127 < data[0] < 192:
                receiver.data_received(data, component)
            else:
                parse_first(data, addr)

        protocol.datagram_received = datagram_received  # type: ignore[method-assign,assignment]


def srtp_diverted(dtls: RTCDtlsTransport) -> bool:
    """Whether :func:`divert_srtp` hooked ``dtls``."""
    return hasattr(dtls, _DIVERTED)


def send_srtp(dtls: RTCDtlsTransport, packet: bytes) -> bool:
    """Protect an RTP or RTCP ``packet`` with ``dtls``'s SRTP session and send it now.

    The same steps as ``RTCDtlsTransport._send_rtp`` without its three awaits: on a
    host or server-reflexive pair aioice's ``send_data`` is one
    ``transport.sendto`` (ice.py ``StunProtocol.send_data``), called directly; a
    TURN pair's may wait for a channel binding, so it gets a task. Returns False
    when the transport is not (or no longer) connected: nothing was sent. Once
    per packet and subscriber: private attributes read directly (``state`` builds
    a string from the enum each time).
    """
    if dtls._state is not _DTLS_CONNECTED:
        return False
    tx: Any = dtls._tx_srtp
    protected = tx.protect_rtcp(packet) if 191 < packet[1] < 209 else tx.protect(packet)
    pair = dtls._transport._connection._nominated.get(1)
    if pair is None:
        return False
    protocol = pair.protocol
    if type(protocol) is _StunProtocol:
        transport = protocol.transport
        if transport is None:
            return False
        transport.sendto(protected, pair.remote_addr)
    else:
        task = asyncio.ensure_future(protocol.send_data(protected, pair.remote_addr))
        _sending.add(task)
        task.add_done_callback(_sending.discard)
    return True


_DTLS_CONNECTED = DtlsState.CONNECTED
_StunProtocol = aioice.ice.StunProtocol
_sending: set[asyncio.Future[None]] = set()


ReceiveHandler = Callable[[RTCRtpReceiveParameters], None]
SendHandler = Callable[[RTCRtpSendParameters, int, int], None]
"""Called with (the negotiated parameters, the SSRC and the RTX SSRC announced in SDP)."""


def take_receiver(receiver: RTCRtpReceiver, on_receive: ReceiveHandler) -> None:
    """Keep aiortc's ``receiver`` from ever starting: no decoder thread, no RTCP
    task, no registration on the transport's router. Each time aiortc would start
    it (``RTCPeerConnection.__connect`` awaits ``receiver.receive(parameters)``
    after every negotiation), ``on_receive`` gets the negotiated parameters
    instead. Its packets reach the SFU through :func:`divert_srtp`.
    """
    if receiver._RTCRtpReceiver__started:  # type: ignore[attr-defined]
        raise RuntimeError("take_receiver() must run before the receiver starts")

    async def receive(parameters: RTCRtpReceiveParameters) -> None:
        on_receive(parameters)

    receiver.receive = receive  # type: ignore[method-assign]


def take_sender(sender: RTCRtpSender, on_send: SendHandler) -> None:
    """Keep aiortc's ``sender`` from ever starting (no RTP or RTCP task of its
    own): ``on_send`` gets its negotiated parameters and the two SSRCs aiortc
    announced for it in SDP (``sender._ssrc``, ``sender._rtx_ssrc``), which the
    SFU's own send stream then uses. ``stop()`` does nothing for a sender that
    never started.
    """
    if sender._RTCRtpSender__started:  # type: ignore[attr-defined]
        raise RuntimeError("take_sender() must run before the sender starts")

    async def send(parameters: RTCRtpSendParameters) -> None:
        on_send(parameters, sender._ssrc, sender._rtx_ssrc)

    sender.send = send  # type: ignore[method-assign]


def bytes_received(pc: RTCPeerConnection) -> int:
    """What ``pc``'s DTLS transports received so far (RTP, RTCP, SCTP, every datagram):
    the counter of their transport stats (``bytesReceived``), read without building
    a stats report, as a client checks twice a second."""
    transports: set[RTCDtlsTransport] = {t.receiver.transport for t in pc.getTransceivers()}
    if pc.sctp is not None:
        transports.add(pc.sctp.transport)
    total = 0
    for transport in transports:
        total += transport._RTCDtlsTransport__rx_bytes  # type: ignore[attr-defined]
    return total


def bundle_early_sctp(pc: RTCPeerConnection) -> None:
    """Let a peer connection whose SCTP transport exists before any transceiver (data
    channels opened before the first remote offer: a peer restored on a new media
    worker) take a max-bundle offer. aiortc creates that SCTP transport unbundled,
    makes the offer's transceivers share its DTLS transport, then "replaces" the
    SCTP's transport by the bundle's, the same one, and stops it
    (rtcpeerconnection.py ``__setRemoteDescription``, "remove bundled transports"):
    no ICE ever starts. Marked bundled, it keeps it."""
    sctp = pc.sctp
    if sctp is not None and not pc.getTransceivers():
        sctp._bundled = True


def keep_sender_identity(sender: RTCRtpSender, previous: RTCRtpSender) -> None:
    """Give ``sender`` (of a new peer connection) the SSRCs and stream id that
    ``previous`` announced in SDP, so the remote end's receiver of that m-section
    takes its packets as the same stream (an ICE restart answered by a new peer
    connection, sfu/peer.py)."""
    set_sender_identity(sender, previous._ssrc, previous._rtx_ssrc, previous._stream_id)


def set_sender_identity(sender: RTCRtpSender, ssrc: int | None, rtx_ssrc: int | None,
                        stream_id: str | None) -> None:
    """Announce ``sender`` in SDP with these SSRCs and msid stream id (those None:
    its own), which another peer connection announced for the same m-section (an
    ICE restart; a media worker that exited: sfu/peer.py ``restore``)."""
    if ssrc is not None:
        sender._ssrc = ssrc
    if rtx_ssrc is not None:
        sender._rtx_ssrc = rtx_ssrc
    if stream_id is not None:
        sender._stream_id = stream_id


# ------------------------------------------- aiortc's own receivers and senders
# (clients and the tests' clients; the SFU never starts them)


def started(endpoint: RTCRtpReceiver | RTCRtpSender) -> bool:
    """Whether aiortc started ``endpoint`` (its RTP/RTCP tasks, a decoder thread)."""
    if isinstance(endpoint, RTCRtpReceiver):
        return bool(endpoint._RTCRtpReceiver__started)  # type: ignore[attr-defined]
    return bool(endpoint._RTCRtpSender__started)  # type: ignore[attr-defined]


FrameHandler = Callable[[RTCRtpCodecParameters, bytes, int], None]
"""Called with (codec, encoded frame, RTP timestamp mapped to start at 0)."""


class _NoDecoderThread:
    """Stands where aiortc keeps its decoder thread, so that the receiver hands
    us complete frames (``if encoded_frame is not None and self.__decoder_thread``)
    and ``__stop_decoder`` has something to join."""

    def join(self, timeout: float | None = None) -> None:
        return None


class _FrameTapQueue(queue.Queue):
    """Replaces the receiver's decoder queue: sees every complete encoded frame."""

    def __init__(self, on_frame: FrameHandler, on_end: Callable[[], None], decode: bool):
        super().__init__()
        self._on_frame = on_frame
        self._on_end = on_end
        self._decode = decode

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        # This runs inside aiortc's RTP receive path: an exception here would
        # end the whole transport, so it is logged instead.
        try:
            if item is None:
                self._on_end()
            else:
                codec, frame = item
                self._on_frame(codec, frame.data, frame.timestamp)
        except Exception:
            logger.exception("encoded frame handler failed")
        if self._decode:
            super().put(item, block, timeout)


def tap_encoded_frames(
    receiver: RTCRtpReceiver,
    on_frame: FrameHandler,
    on_end: Callable[[], None] = lambda: None,
    *,
    decode: bool = False,
) -> None:
    """Deliver each complete encoded frame ``receiver`` assembles to ``on_frame``.

    With ``decode=False`` (a client that only counts what arrives) no decoder
    thread is started and no decoder is created: aiortc's ``receive()`` is
    replaced by the same steps minus the thread (rtcrtpreceiver.py,
    ``RTCRtpReceiver.receive``). With ``decode=True`` (test clients observing
    what they decode) frames also go on to the decoder.
    Must be called before the receiver starts, e.g. from the ``track`` event.
    """
    if receiver._RTCRtpReceiver__started:  # type: ignore[attr-defined]
        raise RuntimeError("tap_encoded_frames() must run before the receiver starts")
    receiver._RTCRtpReceiver__decoder_queue = _FrameTapQueue(  # type: ignore[attr-defined]
        on_frame, on_end, decode
    )
    if decode:
        return

    async def receive(parameters: RTCRtpReceiveParameters) -> None:
        r: Any = receiver
        if r._RTCRtpReceiver__started:
            return
        for codec in parameters.codecs:
            r._RTCRtpReceiver__codecs[codec.payloadType] = codec
        for encoding in parameters.encodings:
            if encoding.rtx:
                r._RTCRtpReceiver__rtx_ssrc[encoding.rtx.ssrc] = encoding.ssrc
        r._RTCRtpReceiver__decoder_thread = _NoDecoderThread()
        r._RTCRtpReceiver__transport._register_rtp_receiver(r, parameters)
        r._RTCRtpReceiver__rtcp_task = asyncio.ensure_future(r._run_rtcp())
        r._RTCRtpReceiver__started = True

    receiver.receive = receive  # type: ignore[method-assign]


def media_ssrcs(receiver: RTCRtpReceiver) -> list[int]:
    """The SSRCs of media (not retransmission) streams ``receiver`` has seen."""
    rtx = set(receiver._RTCRtpReceiver__rtx_ssrc)  # type: ignore[attr-defined]
    seen = receiver._RTCRtpReceiver__active_ssrc  # type: ignore[attr-defined]
    return [ssrc for ssrc in seen if ssrc not in rtx]


async def send_pli(receiver: RTCRtpReceiver) -> bool:
    """Send a Picture Loss Indication for what ``receiver`` receives.

    Returns False when nothing has been received yet (no SSRC to name) or the
    receiver has no RTCP SSRC yet.
    """
    ssrcs = media_ssrcs(receiver)
    if not ssrcs or receiver._RTCRtpReceiver__rtcp_ssrc is None:  # type: ignore[attr-defined]
        return False
    for ssrc in ssrcs:
        await receiver._send_rtcp_pli(ssrc)
    return True


def use_offered_parameters(pc: Any, sdp: str) -> None:
    """Give every transceiver the codecs and RTP header extensions ``sdp`` offers
    for its m-section.

    ``createOffer`` resets each transceiver's ``_codecs`` and
    ``_headerExtensions`` to aiortc's own tables, whatever was negotiated. A
    receiver that starts between that offer and its answer (the publisher's DTLS
    finished meanwhile) registers those numbers on the shared (BUNDLE) transport:
    Chrome's abs-send-time was read as audio level and the DTLS transport died,
    and Chrome's Opus (111) and VP8 (96) matched no receiver, so the SFU got a
    publisher's video in fragments and its audio not at all. Call it right after
    ``createOffer``, with the SDP that is sent (payload types and extension ids
    rewritten to the client's).
    """
    media = SessionDescription.parse(sdp).media
    for transceiver in pc.getTransceivers():
        # createOffer gives every transceiver it offers its m-line (new ones have no mid yet)
        index = transceiver._get_mline_index()
        if index is None or index >= len(media) or media[index].kind != transceiver.kind:
            continue
        transceiver._codecs = list(media[index].rtp.codecs)
        transceiver._headerExtensions = list(media[index].rtp.headerExtensions)


@contextlib.contextmanager
def unassociated_transceivers_hidden(pc: Any) -> Iterator[None]:
    """While applying a remote offer and answering it, keep aiortc from giving one
    of its m-sections to a transceiver we added but have not negotiated yet.

    ``setRemoteDescription`` takes, for a new remote m-section, the first
    transceiver of its kind without a mid: one that should publish a track would
    become the receiving end of the server's subscription (and its track would
    never reach the server). On the way out they get back their place at the end
    and lose the m-line index an abandoned offer gave them.
    """
    transceivers: list[RTCRtpTransceiver] = pc._RTCPeerConnection__transceivers
    hidden = [t for t in transceivers if t.mid is None]
    transceivers[:] = [t for t in transceivers if t.mid is not None]
    try:
        yield
    finally:
        for transceiver in hidden:
            transceiver._set_mline_index(None)  # type: ignore[arg-type]  # Optional inside
        transceivers.extend(hidden)


def negotiated_codecs(
    transceiver: RTCRtpTransceiver, rtx: bool = False
) -> list[RTCRtpCodecParameters]:
    """The codecs negotiated on ``transceiver``, preferred first (RTX only if ``rtx``)."""
    codecs: list[RTCRtpCodecParameters] = transceiver._codecs
    return [c for c in codecs if rtx or c.mimeType.lower() != f"{transceiver.kind}/rtx"]


def on_keyframe_request(sender: RTCRtpSender, callback: Callable[[], None]) -> None:
    """Call ``callback`` when the remote end sends a PLI or FIR for ``sender``.

    aiortc answers both by calling ``self._send_keyframe()``, which only sets a
    flag for its encoder (rtcrtpsender.py ``_handle_rtcp_packet``).
    """
    original = sender._send_keyframe

    def send_keyframe() -> None:
        original()
        callback()

    sender._send_keyframe = send_keyframe  # type: ignore[method-assign]


# ---------------------------------------------------------- codec bookkeeping


@dataclass
class CodecCounts:
    """How many decoders and encoders aiortc created in this process."""

    decoders: int = 0
    encoders: int = 0


codec_counts = CodecCounts()
_counting = False


def count_codecs() -> CodecCounts:
    """Count every decoder / encoder aiortc creates in this process from now on."""
    global _counting
    if not _counting:
        get_decoder = aiortc.rtcrtpreceiver.get_decoder
        get_encoder = aiortc.rtcrtpsender.get_encoder

        def counting_get_decoder(codec: RTCRtpCodecParameters) -> Any:
            codec_counts.decoders += 1
            return get_decoder(codec)

        def counting_get_encoder(codec: RTCRtpCodecParameters) -> Any:
            codec_counts.encoders += 1
            return get_encoder(codec)

        aiortc.rtcrtpreceiver.get_decoder = counting_get_decoder
        aiortc.rtcrtpsender.get_encoder = counting_get_encoder
        _counting = True
    return codec_counts


def split_annexb(data: bytes) -> Iterable[bytes]:
    """NAL units of an Annex B H.264 byte stream (as aiortc depayloads it)."""
    return (nal for nal in H264Encoder._split_bitstream(data) if nal)


__all__ = [
    "AUDIO_CLOCK_RATE",
    "VIDEO_CLOCK_RATE",
    "CodecCounts",
    "announce_public_address",
    "check_versions",
    "count_codecs",
    "divert_srtp",
    "frame_encoder",
    "media_ssrcs",
    "negotiated_codecs",
    "on_keyframe_request",
    "send_pli",
    "send_srtp",
    "split_annexb",
    "srtp_diverted",
    "started",
    "take_receiver",
    "take_sender",
    "tap_encoded_frames",
    "use_host_addresses",
]


# ----------------------------------------------------------- whole-frame encoders


class _WholeFrameVp8Encoder(Vp8Encoder):
    # Vp8Encoder.encode ends with self._packetize(buffer, picture_id): one payload
    # holding the whole frame is what a media socket carries.
    @classmethod
    def _packetize(cls, buffer: bytes, picture_id: int) -> list[bytes]:
        return [buffer] if buffer else []

    # The server's bitrate hints go below aiortc's 250 kbit/s floor (a 300 kbit/s
    # link); encode() reads target_bitrate, its "bufsize" the private copy.
    @property
    def target_bitrate(self) -> int:
        return int(self._Vp8Encoder__target_bitrate)

    @target_bitrate.setter
    def target_bitrate(self, bitrate: int) -> None:
        self._Vp8Encoder__target_bitrate = max(50_000, min(bitrate, 2_500_000))


class _WholeFrameH264Encoder(H264Encoder):
    # H264Encoder.encode ends with self._packetize(NAL units): Annex B instead.
    @classmethod
    def _packetize(cls, packages: Iterable[bytes]) -> list[bytes]:
        data = b"".join(b"\x00\x00\x00\x01" + nal for nal in packages)
        return [data] if data else []


def frame_encoder(mime_type: str) -> Any:
    """An aiortc encoder whose ``encode(frame, force_keyframe)`` returns whole
    encoded frames (VP8, H.264 Annex B, Opus) instead of RTP payloads."""
    mime = mime_type.lower()
    if mime == "video/vp8":
        return _WholeFrameVp8Encoder()
    if mime == "video/h264":
        return _WholeFrameH264Encoder()
    if mime == "audio/opus":
        from aiortc.codecs.opus import OpusEncoder

        encoder = OpusEncoder()  # an Opus packet is a whole frame already
        encoder.codec.bit_rate = 32_000  # as browsers send voice (aiortc's 96k fills slow links)
        return encoder
    raise ValueError(f"no media socket encoder for {mime_type}")
