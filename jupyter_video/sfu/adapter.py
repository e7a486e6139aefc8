"""Every private aiortc / aioice hook the media plane needs, in one place.

aiortc decodes what it receives and encodes what it sends; an SFU must do
neither. The hooks below let the SFU take complete encoded frames out of an
``RTCRtpReceiver`` before its decoder, hand encoded packets to an
``RTCRtpSender`` so that it only packetizes them, relay keyframe requests
(PLI/FIR) in both directions, read the ``ssrc-audio-level`` header extension,
and choose which addresses ICE gathers on.

They rely on names that are private in aiortc 1.16 / aioice 0.13 and are
checked by ``tests/sfu/test_adapter.py``: when aiortc is upgraded, that test
says which hook moved. Nothing else in ``jupyter_video.sfu`` touches a private
aiortc name.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import logging
import queue
import re
import threading
import time
import types
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import aioice
import aioice.ice
import aiortc
import aiortc.clock
import aiortc.rtcrtpreceiver
import aiortc.rtcrtpsender
import av
from aiortc import RTCRtpReceiver, RTCRtpSender, RTCRtpTransceiver
from aiortc.codecs.h264 import H264Encoder
from aiortc.codecs.vpx import Vp8Encoder
from aiortc.rtcrtpparameters import (
    RTCRtpCodecParameters,
    RTCRtpReceiveParameters,
)
from aiortc.rtp import RtpPacket
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
            f"jupyter_video.sfu.adapter is written for aiortc {AIORTC_VERSION} and "
            f"aioice {AIOICE_VERSION}, found aiortc {found[0]} and aioice {found[1]}: "
            "re-check the hooks in jupyter_video/sfu/adapter.py"
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


# ------------------------------------------------------------ encoded frames in

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

    With ``decode=False`` (the SFU) no decoder thread is started and no decoder
    is created: aiortc's ``receive()`` is replaced by the same steps minus the
    thread (rtcrtpreceiver.py, ``RTCRtpReceiver.receive``). With ``decode=True``
    (test clients observing what they decode) frames also go on to the decoder.
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


def retarget_encoded_frames(receiver: RTCRtpReceiver, on_frame: FrameHandler) -> None:
    """Send the frames of an already tapped (and started) receiver to ``on_frame``.

    twilio-video puts a newly published track on an m-section that an
    unpublished one used; aiortc keeps the receiver and fires no ``track`` event.
    """
    tap = receiver._RTCRtpReceiver__decoder_queue  # type: ignore[attr-defined]
    if not isinstance(tap, _FrameTapQueue):
        raise RuntimeError("retarget_encoded_frames() needs a receiver tapped before")
    tap._on_frame = on_frame


def receiver_decodes(receiver: RTCRtpReceiver) -> bool:
    """Whether ``receiver`` runs aiortc's decoder thread."""
    thread = receiver._RTCRtpReceiver__decoder_thread  # type: ignore[attr-defined]
    return isinstance(thread, threading.Thread)


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
        forwarding_counts.plis_sent += 1
    return True


_AUDIO_LEVEL_CALLBACK = "_jupyter_video_audio_level"


def on_audio_level(receiver: RTCRtpReceiver, callback: Callable[[int], None]) -> None:
    """Call ``callback(level)`` with each packet's ``ssrc-audio-level`` (0 loud .. 127
    silent, -dBov), read from the already parsed RTP header: no decoding.

    Calling it again for the same receiver replaces the callback.
    """
    already_wrapped = hasattr(receiver, _AUDIO_LEVEL_CALLBACK)
    setattr(receiver, _AUDIO_LEVEL_CALLBACK, callback)
    if already_wrapped:
        return
    handle = receiver._handle_rtp_packet

    async def handle_rtp_packet(packet: RtpPacket, arrival_time_ms: int) -> None:
        level = packet.extensions.audio_level
        if level is not None:
            getattr(receiver, _AUDIO_LEVEL_CALLBACK)(level[1])
        await handle(packet, arrival_time_ms)

    receiver._handle_rtp_packet = handle_rtp_packet  # type: ignore[method-assign]


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


def negotiated_codecs(transceiver: RTCRtpTransceiver) -> list[RTCRtpCodecParameters]:
    """The codecs negotiated on ``transceiver``, preferred first (RTX excluded)."""
    codecs: list[RTCRtpCodecParameters] = transceiver._codecs
    return [c for c in codecs if c.mimeType.lower() != f"{transceiver.kind}/rtx"]


# ----------------------------------------------------------- encoded frames out


class Packetizer:
    """Stands where aiortc keeps a sender's encoder and only packetizes.

    ``RTCRtpSender._next_encoded_frame`` calls ``encoder.pack(packet)`` for an
    ``av.Packet`` and creates an encoder only while ``__encoder`` is None, so a
    sender given a Packetizer never encodes and never builds an encoder.
    """

    def __init__(self, mime_type: str) -> None:
        self.mime_type = mime_type.lower()
        self._picture_id = 0

    def pack(self, packet: av.Packet) -> tuple[list[bytes], int]:
        """RTP payloads and timestamp for one encoded frame."""
        data = bytes(packet)
        timestamp = int(packet.pts or 0)
        if self.mime_type == "video/vp8":
            payloads = Vp8Encoder._packetize(data, self._picture_id)
            self._picture_id = (self._picture_id + 1) % (1 << 15)
        elif self.mime_type == "video/h264":
            payloads = H264Encoder._packetize(H264Encoder._split_bitstream(data))
        else:
            payloads = [data]
        forwarding_counts.packets_sent += len(payloads)
        forwarding_counts.bytes_sent += len(data)
        return payloads, timestamp

    def encode(self, frame: Any, force_keyframe: bool = False) -> tuple[list[bytes], int]:
        raise RuntimeError("the SFU never encodes: send av.Packet, not frames")


_TIME_BASES = {rate: fractions.Fraction(1, rate) for rate in (VIDEO_CLOCK_RATE, AUDIO_CLOCK_RATE)}


def encoded_packet(data: bytes, timestamp: int, clock_rate: int) -> av.Packet:
    """An ``av.Packet`` holding one encoded frame at RTP ``timestamp``."""
    packet = av.Packet(data)
    packet.pts = timestamp
    time_base = _TIME_BASES.get(clock_rate)
    packet.time_base = time_base if time_base is not None else fractions.Fraction(1, clock_rate)
    return packet


def install_packetizer(sender: RTCRtpSender, mime_type: str) -> Packetizer:
    """Make ``sender`` packetize encoded frames of ``mime_type`` instead of encoding."""
    packetizer = Packetizer(mime_type)
    sender._RTCRtpSender__encoder = packetizer  # type: ignore[attr-defined]
    return packetizer


_NTP_UNIX_EPOCH_NS = 2_208_988_800 * 1_000_000_000
"""1970-01-01 on the NTP timescale (from 1900-01-01), in nanoseconds."""


def _current_ntp_time() -> int:
    # aiortc.clock.current_ntp_time to the same microsecond, without datetime objects.
    seconds, nanoseconds = divmod(time.time_ns() + _NTP_UNIX_EPOCH_NS, 1_000_000_000)
    return (seconds << 32) | ((nanoseconds // 1000) << 32) // 1_000_000


def use_fast_sender_clock() -> None:
    """Make aiortc's senders read the NTP time without building datetimes (process-wide).

    ``RTCRtpSender._run_rtp`` calls ``clock.current_ntp_time()`` twice per RTP
    packet (abs-send-time, sender report), through ``datetime.now()`` and a
    ``timedelta``: about 5% of an SFU's CPU at 32 subscribers. The sender module
    gets a copy of ``aiortc.clock`` whose ``current_ntp_time`` is integer
    arithmetic on ``time.time_ns()``, the same value.
    """
    if getattr(aiortc.rtcrtpsender.clock, "current_ntp_time", None) is _current_ntp_time:
        return
    clock = types.ModuleType("aiortc.clock", "aiortc.clock, current_ntp_time without datetime")
    clock.__dict__.update(
        (name, value) for name, value in vars(aiortc.clock).items() if not name.startswith("__")
    )
    clock.current_ntp_time = _current_ntp_time  # type: ignore[attr-defined]
    aiortc.rtcrtpsender.clock = clock


def sender_encoder(sender: RTCRtpSender) -> object | None:
    """What ``sender`` holds as its encoder (a Packetizer for SFU senders)."""
    encoder: object | None = sender._RTCRtpSender__encoder  # type: ignore[attr-defined]
    return encoder


def on_keyframe_request(sender: RTCRtpSender, callback: Callable[[], None]) -> None:
    """Call ``callback`` when the remote end sends a PLI or FIR for ``sender``.

    aiortc answers both by calling ``self._send_keyframe()``, which only sets a
    flag for its encoder (rtcrtpsender.py ``_handle_rtcp_packet``).
    """
    original = sender._send_keyframe

    def send_keyframe() -> None:
        forwarding_counts.keyframe_requests_received += 1
        original()
        callback()

    sender._send_keyframe = send_keyframe  # type: ignore[method-assign]


@dataclass
class ForwardingCounts:
    """RTP this process's SFU senders and receivers handled: totals since it started
    (they outlive each sender, so that a scrape's counters never go down)."""

    packets_sent: int = 0
    """RTP packets packetized for subscribers (each sent once; retransmissions apart)."""
    bytes_sent: int = 0
    """Encoded media bytes in them (payloads, without RTP headers)."""
    nacks_received: int = 0
    """Packets subscribers asked to be sent again (RTCP NACK, RFC 4585 6.2.1)."""
    nacks_sent: int = 0
    """Packets asked again of publishers (aiortc's NACK generator)."""
    keyframe_requests_received: int = 0
    """PLI and FIR from subscribers (``on_keyframe_request`` senders)."""
    plis_sent: int = 0
    """PLIs sent to publishers (``send_pli``)."""


forwarding_counts = ForwardingCounts()


def count_nacks(sender: RTCRtpSender | None = None, receiver: RTCRtpReceiver | None = None) -> None:
    """Count the NACKed packets ``sender`` is asked to resend and ``receiver`` asks for,
    in :data:`forwarding_counts` (once per object however often it is called).

    aiortc answers each NACKed sequence number with ``RTCRtpSender._retransmit`` and
    sends its own NACKs with ``RTCRtpReceiver._send_rtcp_nack(media_ssrc, lost)``.
    """
    if sender is not None and not getattr(sender._retransmit, "_counted", False):
        retransmit = sender._retransmit

        async def counted_retransmit(sequence_number: int) -> None:
            forwarding_counts.nacks_received += 1
            await retransmit(sequence_number)

        counted_retransmit._counted = True  # type: ignore[attr-defined]
        sender._retransmit = counted_retransmit  # type: ignore[method-assign]
    if receiver is not None and not getattr(receiver._send_rtcp_nack, "_counted", False):
        send_nack = receiver._send_rtcp_nack

        async def counted_send_nack(media_ssrc: int, lost: list[int]) -> None:
            forwarding_counts.nacks_sent += len(lost)
            await send_nack(media_ssrc, lost)

        counted_send_nack._counted = True  # type: ignore[attr-defined]
        receiver._send_rtcp_nack = counted_send_nack  # type: ignore[method-assign]


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
    "Packetizer",
    "announce_public_address",
    "check_versions",
    "count_codecs",
    "count_nacks",
    "encoded_packet",
    "forwarding_counts",
    "install_packetizer",
    "media_ssrcs",
    "negotiated_codecs",
    "on_audio_level",
    "on_keyframe_request",
    "receiver_decodes",
    "send_pli",
    "sender_encoder",
    "split_annexb",
    "tap_encoded_frames",
    "use_fast_sender_clock",
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
