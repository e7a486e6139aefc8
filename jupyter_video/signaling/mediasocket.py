"""The media socket protocol: encoded media and data over a WebSocket (docs/media_socket.md).

Where only the Jupyter URL reaches (Binder, a hub behind its HTTP proxy), a
participant's media travels over ``{base_url}video/media`` instead of SRTP/UDP.
The peer connection is still negotiated with SDP over signaling (the m-sections,
their mids, codecs and ``a=msid`` track ids); this socket carries what SRTP
would:

- **binary FRAME** messages: one fragment of a complete encoded frame (VP8,
  H.264 Annex B, Opus) on a channel, with the frame's sequence number, RTP
  timestamp, keyframe flag and the sender's clock (for the one-way delay trend);
- **binary DATA** messages: one data-track message on a data channel;
- **text** messages: JSON control (hello, publish, subscribe, data_channel,
  keyframe_request, receiver_report, error).

Video frames go in fragments of at most :data:`FRAGMENT_SIZE` so that audio and
data queued behind a keyframe go out between its fragments (one socket with
priorities, measured against a second socket in docs/media_socket.md).

Everything a receiver must check is checked here (:class:`FrameAssembler`,
:func:`parse_control`); a violation is a :class:`MediaSocketError` carrying
Twilio's code, and the socket that sent it is closed with that code.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any

VERSION = 1
FRAME = 0x01
DATA = 0x02

KEYFRAME = 0x01
FIRST_FRAGMENT = 0x02
LAST_FRAGMENT = 0x04
_FRAME_FLAGS = KEYFRAME | FIRST_FRAGMENT | LAST_FRAGMENT
BINARY_DATA = 0x01

FRAME_HEADER = struct.Struct("!BBHIII")  # type, flags, channel, sequence, timestamp, sent_ms
DATA_HEADER = struct.Struct("!BBH")  # type, flags, channel

FRAGMENT_SIZE = 4 * 1024
"""Largest payload of one FRAME message: a 300 kbit/s link sends it in ~0.1 s, so
audio waits at most that long behind a keyframe."""
ACK_INTERVAL = 0.05
"""Seconds between a receiver's acks (``{"type": "ack", "bytes": n}``: binary bytes
received so far), the sender's flow control."""
MAX_MESSAGE_SIZE = 256 * 1024
"""Largest message either end accepts (a fragment, a data message, a control message)."""
MAX_FRAME_SIZE = 4 * 1024 * 1024
"""Largest assembled frame (a 4K VP8 keyframe is well under this)."""
MAX_CHANNEL = 0xFFFF

INVALID_MESSAGE = 53004
"""Twilio's "client sent an invalid signaling message": the media socket's control
and framing are signaling too."""
MEDIA_FAILED = 53405
"""Twilio's "media connection failed or media activity ceased" (a stalled socket)."""

CLIENT_CONTROL = {
    "hello": (),  # and either "session", or "participant" and "key" (from the SDP)
    "publish": ("channel", "mid"),
    "unpublish": ("channel",),
    "data_channel": ("channel", "label"),
    "keyframe_request": ("channel",),
    "receiver_report": ("channel",),
    "ack": ("bytes",),
}
"""Control messages a participant sends, with their required fields."""
SERVER_CONTROL = {
    "welcome": (),
    "subscribe": ("channel", "mid", "track_sid", "kind", "codec"),
    "unsubscribe": ("channel",),
    "data_channel": ("channel", "label"),
    "keyframe_request": ("channel",),
    "receiver_report": ("channel",),
    "bitrate": ("channel", "bitrate"),
    "error": ("code", "message"),
}
"""Control messages the server sends, with their required fields."""


class MediaSocketError(Exception):
    """A protocol violation on a media socket; ``code`` is Twilio's."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def close_code(code: int) -> int:
    """The WebSocket close code for Twilio ``code``: 4000 + its last three digits
    (53004 -> 4004, 53405 -> 4405), in the application range of RFC 6455 7.4.2."""
    return 4000 + code % 1000


# ------------------------------------------------------------------- frames


@dataclass(frozen=True)
class Frame:
    """One complete encoded frame received on ``channel``."""

    channel: int
    sequence: int
    timestamp: int
    keyframe: bool
    sent_ms: int
    data: bytes


def frame_messages(
    channel: int,
    sequence: int,
    timestamp: int,
    keyframe: bool,
    data: bytes,
    sent_ms: int,
    fragment_size: int = FRAGMENT_SIZE,
) -> list[bytes]:
    """The FRAME messages carrying ``data``: fragments of at most ``fragment_size``."""
    if not 0 < len(data) <= MAX_FRAME_SIZE:
        raise ValueError(f"a frame is 1 to {MAX_FRAME_SIZE} bytes, not {len(data)}")
    messages = []
    key = KEYFRAME if keyframe else 0
    for start in range(0, len(data), fragment_size):
        flags = key
        if start == 0:
            flags |= FIRST_FRAGMENT
        if start + fragment_size >= len(data):
            flags |= LAST_FRAGMENT
        header = FRAME_HEADER.pack(
            FRAME, flags, channel, sequence & 0xFFFFFFFF, timestamp & 0xFFFFFFFF,
            sent_ms & 0xFFFFFFFF,
        )
        messages.append(header + data[start:start + fragment_size])
    return messages


def data_message(channel: int, message: str | bytes) -> bytes:
    """The DATA message carrying one data-track message."""
    if isinstance(message, str):
        return DATA_HEADER.pack(DATA, 0, channel) + message.encode()
    return DATA_HEADER.pack(DATA, BINARY_DATA, channel) + message


def _newer(sequence: int, last: int) -> bool:
    """Serial number arithmetic (RFC 1982) on 32 bits: ``sequence`` comes after ``last``."""
    return 0 < (sequence - last) & 0xFFFFFFFF < 0x80000000


class FrameAssembler:
    """Checks one direction's binary messages and puts frames back together.

    ``channels`` are the channels announced so far (``publish`` / ``subscribe`` /
    ``data_channel``): a message on another one is a violation, as are a fragment
    out of order, a sequence number that does not grow, and anything too large.
    """

    def __init__(self) -> None:
        self.media_channels: set[int] = set()
        self.data_channels: set[int] = set()
        self._partial: dict[int, tuple[int, int, bool, int, list[bytes], int]] = {}
        self._last: dict[int, int] = {}

    def forget(self, channel: int) -> None:
        """``channel`` was closed: its messages are violations from now on."""
        self.media_channels.discard(channel)
        self.data_channels.discard(channel)
        self._partial.pop(channel, None)
        self._last.pop(channel, None)

    def take(self, message: bytes) -> Frame | tuple[int, str | bytes] | None:
        """A complete :class:`Frame`, a data message ``(channel, message)``, or None
        while a frame is incomplete; raises :class:`MediaSocketError`."""
        if len(message) > MAX_MESSAGE_SIZE:
            raise MediaSocketError(
                INVALID_MESSAGE,
                f"media message of {len(message)} bytes: at most {MAX_MESSAGE_SIZE} "
                f"(send frames in fragments of {FRAGMENT_SIZE})",
            )
        if not message:
            raise MediaSocketError(INVALID_MESSAGE, "empty binary media message")
        if message[0] == FRAME:
            return self._take_fragment(message)
        if message[0] == DATA:
            return self._take_data(message)
        raise MediaSocketError(
            INVALID_MESSAGE, f"unknown media message type 0x{message[0]:02x} (FRAME 1, DATA 2)"
        )

    def _take_data(self, message: bytes) -> tuple[int, str | bytes]:
        if len(message) < DATA_HEADER.size:
            raise MediaSocketError(INVALID_MESSAGE, "DATA message shorter than its header")
        _, flags, channel = DATA_HEADER.unpack_from(message)
        if channel not in self.data_channels:
            raise MediaSocketError(
                INVALID_MESSAGE, f"DATA on channel {channel}, not opened by data_channel"
            )
        payload = message[DATA_HEADER.size:]
        if flags & BINARY_DATA:
            return channel, payload
        try:
            return channel, payload.decode()
        except UnicodeDecodeError:
            raise MediaSocketError(
                INVALID_MESSAGE, f"text DATA on channel {channel} is not UTF-8"
            ) from None

    def _take_fragment(self, message: bytes) -> Frame | None:
        if len(message) <= FRAME_HEADER.size:
            raise MediaSocketError(INVALID_MESSAGE, "FRAME message without payload")
        _, flags, channel, sequence, timestamp, sent_ms = FRAME_HEADER.unpack_from(message)
        if channel not in self.media_channels:
            raise MediaSocketError(
                INVALID_MESSAGE, f"FRAME on channel {channel}, not announced by publish"
            )
        if flags & ~_FRAME_FLAGS:
            raise MediaSocketError(INVALID_MESSAGE, f"FRAME flags 0x{flags:02x} unknown")
        payload = message[FRAME_HEADER.size:]
        partial = self._partial.get(channel)
        if flags & FIRST_FRAGMENT:
            if partial is not None:
                raise MediaSocketError(
                    INVALID_MESSAGE,
                    f"channel {channel}: frame {sequence} starts before frame {partial[0]} ended",
                )
            last = self._last.get(channel)
            if last is not None and not _newer(sequence, last):
                raise MediaSocketError(
                    INVALID_MESSAGE,
                    f"channel {channel}: frame {sequence} out of order (after {last})",
                )
            self._last[channel] = sequence
            fragments = [payload]
            size = len(payload)
            keyframe = bool(flags & KEYFRAME)
        else:
            if partial is None or partial[0] != sequence:
                raise MediaSocketError(
                    INVALID_MESSAGE,
                    f"channel {channel}: fragment of frame {sequence} out of order",
                )
            _, timestamp, keyframe, sent_ms, fragments, size = partial
            fragments.append(payload)
            size += len(payload)
        if size > MAX_FRAME_SIZE:
            raise MediaSocketError(
                INVALID_MESSAGE, f"channel {channel}: frame over {MAX_FRAME_SIZE} bytes"
            )
        if not flags & LAST_FRAGMENT:
            self._partial[channel] = (sequence, timestamp, keyframe, sent_ms, fragments, size)
            return None
        self._partial.pop(channel, None)
        return Frame(channel, sequence, timestamp, keyframe, sent_ms, b"".join(fragments))


# ------------------------------------------------------------------- control


def control_message(type: str, **fields: Any) -> str:
    """One JSON control message."""
    return json.dumps({"type": type, **fields}, separators=(",", ":"))


def parse_control(text: str, known: dict[str, tuple[str, ...]]) -> dict[str, Any]:
    """A control message checked against ``known`` (:data:`CLIENT_CONTROL` or
    :data:`SERVER_CONTROL`); raises :class:`MediaSocketError`."""
    if len(text) > MAX_MESSAGE_SIZE:
        raise MediaSocketError(INVALID_MESSAGE, f"control message over {MAX_MESSAGE_SIZE} bytes")
    try:
        body = json.loads(text)
    except ValueError:
        raise MediaSocketError(INVALID_MESSAGE, "control message is not JSON") from None
    if not isinstance(body, dict) or body.get("type") not in known:
        raise MediaSocketError(
            INVALID_MESSAGE,
            f"control message type must be one of {sorted(known)}, got {text[:80]!r}",
        )
    missing = [name for name in known[body["type"]] if name not in body]
    if missing:
        raise MediaSocketError(
            INVALID_MESSAGE, f"control message {body['type']!r} lacks {', '.join(missing)}"
        )
    channel = body.get("channel")
    if channel is not None and (
        not isinstance(channel, int) or isinstance(channel, bool)
        or not 0 <= channel <= MAX_CHANNEL
    ):
        raise MediaSocketError(
            INVALID_MESSAGE, f"channel must be an integer 0..{MAX_CHANNEL}, got {channel!r}"
        )
    return body


# ------------------------------------------------------------------- SDP

# A media socket peer connection is negotiated with SDP like any other, so
# that twilio-video.js (through its RTCPeerConnection option) and the server's
# room logic see m-sections, mids, codecs and a=msid track ids as usual. The
# session-level attribute below marks it: no ICE, no DTLS, media on the socket.
TRANSPORT_ATTRIBUTE = "a=x-jupyter-video-transport:websocket"
CREDENTIAL_ATTRIBUTE = "a=x-jupyter-video-media:"
"""Session-level, in the server's descriptions: ``<participant sid> <key>``, what a
page's hello says when it cannot know the signaling session (twilio-video keeps it)."""

CODECS = {"vp8": ("video", 90000, 0), "h264": ("video", 90000, 0), "opus": ("audio", 48000, 2)}
"""Codecs the media socket carries: name -> (kind, clock rate, channels)."""


@dataclass
class Codec:
    """One ``a=rtpmap`` (and its ``a=fmtp``)."""

    payload_type: int
    name: str  # VP8, H264, opus
    clock_rate: int
    channels: int = 0
    fmtp: str = ""

    @property
    def mime_type(self) -> str:
        return f"{CODECS[self.name.lower()][0]}/{self.name}"


@dataclass
class Section:
    """One m-section of a media socket session description."""

    kind: str  # audio, video, application
    mid: str
    direction: str = "sendrecv"
    codecs: list[Codec] | None = None
    msid: tuple[str, str] | None = None  # stream id, track id
    rejected: bool = False


def is_media_socket_sdp(sdp: str) -> bool:
    """Whether ``sdp`` negotiates a media socket peer connection."""
    return TRANSPORT_ATTRIBUTE in sdp.splitlines()


def parse_sections(sdp: str) -> list[Section]:
    """The m-sections of ``sdp`` (codecs in preference order; unknown ones skipped)."""
    sections: list[Section] = []
    formats: list[int] = []
    rtpmaps: dict[int, Codec] = {}
    fmtps: dict[int, str] = {}

    def finish() -> None:
        if sections and sections[-1].kind != "application":
            codecs = []
            for pt in formats:
                codec = rtpmaps.get(pt)
                if codec is not None and codec.name.lower() in CODECS:
                    codec.fmtp = fmtps.get(pt, "")
                    codecs.append(codec)
            sections[-1].codecs = codecs

    for line in sdp.splitlines():
        line = line.strip()
        if line.startswith("m="):
            finish()
            parts = line[2:].split()
            if len(parts) < 3:
                raise ValueError(f"bad m-line {line!r}")
            sections.append(Section(kind=parts[0], mid=str(len(sections)),
                                    rejected=parts[1] == "0"))
            formats = [int(p) for p in parts[3:] if p.isdigit()]
            rtpmaps, fmtps = {}, {}
        elif not sections:
            continue
        elif line.startswith("a=mid:"):
            sections[-1].mid = line[6:]
        elif line in ("a=sendrecv", "a=sendonly", "a=recvonly", "a=inactive"):
            sections[-1].direction = line[2:]
        elif line.startswith("a=msid:"):
            ids = line[7:].split()
            if len(ids) == 2:
                sections[-1].msid = (ids[0], ids[1])
        elif line.startswith("a=rtpmap:"):
            pt, _, spec = line[9:].partition(" ")
            name, _, rest = spec.partition("/")
            clock, _, channels = rest.partition("/")
            if pt.isdigit() and clock.isdigit():
                rtpmaps[int(pt)] = Codec(int(pt), name, int(clock),
                                         int(channels) if channels.isdigit() else 0)
        elif line.startswith("a=fmtp:"):
            pt, _, params = line[7:].partition(" ")
            if pt.isdigit():
                fmtps[int(pt)] = params
    finish()
    return sections


def media_credential(sdp: str) -> tuple[str, str] | None:
    """The ``(participant sid, key)`` a server description carries, if any."""
    for line in sdp.splitlines():
        if line.startswith(CREDENTIAL_ATTRIBUTE):
            parts = line[len(CREDENTIAL_ATTRIBUTE):].split()
            if len(parts) == 2:
                return parts[0], parts[1]
    return None


def write_sdp(sections: list[Section], session_version: int, session_id: int = 1,
              credential: tuple[str, str] | None = None) -> str:
    """A media socket session description of ``sections`` (``credential``: the
    server's, see :data:`CREDENTIAL_ATTRIBUTE`)."""
    lines = [
        "v=0",
        f"o=- {session_id} {session_version} IN IP4 0.0.0.0",
        "s=-",
        "t=0 0",
        "a=group:BUNDLE " + " ".join(s.mid for s in sections if not s.rejected),
        "a=msid-semantic: WMS *",
        TRANSPORT_ATTRIBUTE,
    ]
    if credential is not None:
        lines.append(f"{CREDENTIAL_ATTRIBUTE}{credential[0]} {credential[1]}")
    for section in sections:
        if section.kind == "application":
            port = 0 if section.rejected else 9
            lines += [f"m=application {port} UDP/DTLS/SCTP webrtc-datachannel",
                      "c=IN IP4 0.0.0.0", f"a=mid:{section.mid}", "a=sctp-port:5000"]
            continue
        codecs = section.codecs or []
        port = 0 if section.rejected or not codecs else 9
        formats = " ".join(str(c.payload_type) for c in codecs) or "0"
        lines += [f"m={section.kind} {port} UDP/TLS/RTP/SAVPF {formats}", "c=IN IP4 0.0.0.0",
                  f"a=mid:{section.mid}", f"a={section.direction}"]
        if section.msid is not None:
            lines.append(f"a=msid:{section.msid[0]} {section.msid[1]}")
        for codec in codecs:
            channels = f"/{codec.channels}" if codec.channels else ""
            lines.append(f"a=rtpmap:{codec.payload_type} {codec.name}/{codec.clock_rate}{channels}")
            if codec.fmtp:
                lines.append(f"a=fmtp:{codec.payload_type} {codec.fmtp}")
    return "\r\n".join(lines) + "\r\n"


def answer_direction(offered: str, answerer_sends: bool) -> str:
    """RFC 3264 6.1: the answer's direction for an offered one."""
    offerer_sends = offered in ("sendrecv", "sendonly")
    may_send = offered in ("sendrecv", "recvonly") and answerer_sends
    return {(True, True): "sendrecv", (True, False): "recvonly",
            (False, True): "sendonly", (False, False): "inactive"}[(offerer_sends, may_send)]


def default_codecs(kind: str) -> list[Codec]:
    """What a media socket end offers for ``kind``."""
    if kind == "audio":
        return [Codec(111, "opus", 48000, 2, "minptime=10;useinbandfec=1")]
    return [Codec(96, "VP8", 90000),
            Codec(102, "H264", 90000, 0,
                  "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f")]
