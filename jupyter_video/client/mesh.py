"""A participant's local tracks sent on several peer connections at once.

In a group room the participant has one peer connection, with the SFU. In a Go or
Peer-to-Peer room the server pairs it with every other participant, one peer
connection each (RSP ``peer_connections`` under ids the server or the other end
chose; docs/signaling.md, "Peer-to-peer and Go rooms"), and every one of them sends
all of its tracks, as twilio-video.js adds every track sender to every
PeerConnectionV2 (``peerconnectionmanager.js`` ``_getOrCreate``).

An aiortc sender pulls frames from its track with ``recv()``: two senders pulling
from one paced track would each get every other frame. :class:`TrackCopies` gives
each peer connection a :class:`TrackCopy` of the track instead, fed by one reader
(aiortc's ``MediaRelay``), under the track's own id: the id announced in RSP and
written in each SDP's ``a=msid``, by which the other end matches it.

When the other end offered first, its numbering (payload types, RTP header
extension ids) is the pair's: aiortc numbers every offer from its own tables, and
Chrome refuses a re-offer that gives a negotiated extension another id or one
payload type two codecs on one BUNDLE transport (RFC 8843 section 9.1.2), so
:func:`keep_remote_numbering` puts the pair's numbers back into our offers.
"""

from __future__ import annotations

import re
from typing import Any

import av
from aiortc import MediaStreamTrack
from aiortc.contrib.media import MediaRelay

from .track import LocalMediaTrack


class TrackCopy(MediaStreamTrack):
    """One peer connection's copy of a local track: the same id, kind and frames."""

    def __init__(self, source: LocalMediaTrack, relayed: MediaStreamTrack) -> None:
        super().__init__()
        self.kind = source.kind
        self.source = source
        self._relayed = relayed

    @property
    def id(self) -> str:
        return self.source.id

    async def recv(self) -> Any:
        frame = await self._relayed.recv()
        if isinstance(frame, av.VideoFrame):
            # Each encoder converts its frame to I420 in a thread of its own, with the
            # converter the frame caches: two at once on one frame crash libswscale.
            copy = av.VideoFrame.from_ndarray(frame.to_ndarray(), format=frame.format.name)
            copy.pts, copy.time_base = frame.pts, frame.time_base
            return copy
        return frame

    def stop(self) -> None:
        super().stop()
        self._relayed.stop()


class TrackCopies:
    """Copies of local tracks for the peer connections of one room (one reader each)."""

    def __init__(self) -> None:
        self._relay = MediaRelay()

    def copy(self, track: LocalMediaTrack) -> TrackCopy:
        # Unbuffered: a copy whose peer connection is slow gets the latest frame,
        # never a growing queue.
        return TrackCopy(track, self._relay.subscribe(track, buffered=False))


def sends(sender_track: MediaStreamTrack | None, track: LocalMediaTrack) -> bool:
    """Whether a sender's track is ``track`` itself or a copy of it."""
    return sender_track is track or (
        isinstance(sender_track, TrackCopy) and sender_track.source is track
    )


_RTPMAP = re.compile(r"^a=rtpmap:(\d+) (\S+)")
_FMTP = re.compile(r"^a=fmtp:(\d+) (.*)$")
_EXTMAP = re.compile(r"^a=extmap:(\d+)(/\w+)? (\S+)(.*)$")
_PT_LINE = re.compile(r"^(a=(?:rtpmap|fmtp|rtcp-fb):)(\d+)(.*)$")
DYNAMIC_PAYLOAD_TYPES = range(96, 128)


def _sections(sdp: str) -> list[list[str]]:
    sections: list[list[str]] = [[]]
    for line in sdp.split("\r\n"):
        if line.startswith("m="):
            sections.append([])
        sections[-1].append(line)
    return sections


def _codec_keys(section: list[str]) -> dict[int, str]:
    """Payload type -> what it means (``vp8/90000``, ``rtx:vp8/90000``, H.264 with its
    profile and packetization mode), so that numbers can be matched across SDPs."""
    names = {int(m.group(1)): m.group(2).lower() for m in map(_RTPMAP.match, section) if m}
    params = {int(m.group(1)): m.group(2) for m in map(_FMTP.match, section) if m}

    def key(pt: int) -> str:
        name = names[pt]
        if name.startswith("h264/"):
            fmtp = dict(p.split("=", 1) for p in params.get(pt, "").split(";") if "=" in p)
            return (f"{name};{fmtp.get('profile-level-id', '').lower()[:2]}"
                    f";{fmtp.get('packetization-mode', '0')}")
        return name

    keys = {}
    for pt, name in names.items():
        apt = re.search(r"apt=(\d+)", params.get(pt, ""))
        if name.startswith("rtx/") and apt and int(apt.group(1)) in names:
            keys[pt] = "rtx:" + key(int(apt.group(1)))
        elif not name.startswith("rtx/"):
            keys[pt] = key(pt)
    return keys


def keep_remote_numbering(offer: str, remote: str) -> str:
    """``offer`` with the payload types and extension ids of ``remote`` (the other
    end's last description), in every section; what ``remote`` does not number keeps
    aiortc's number where it is free (a free dynamic one otherwise; an extension is
    left out)."""
    sections = _sections(remote)
    wanted: dict[str, int] = {}
    for section in sections[1:]:
        for pt, key in _codec_keys(section).items():
            if key not in wanted and pt not in wanted.values():
                wanted[key] = pt
    extensions = {m.group(3): int(m.group(1))
                  for m in map(_EXTMAP.match, (line for s in sections for line in s)) if m}
    out: list[str] = []
    for section in _sections(offer):
        out.extend(_renumbered(section, wanted, extensions) if section[0].startswith("m=")
                   else section)
    return "\r\n".join(out)


def _renumbered(section: list[str], wanted: dict[str, int],
                extensions: dict[str, int]) -> list[str]:
    taken = set(wanted.values())
    mapping: dict[int, int] = {}
    codecs = sorted(_codec_keys(section).items(), key=lambda item: item[1].startswith("rtx"))
    for pt, key in codecs:
        if key not in wanted:
            free = pt if pt not in taken else next(
                (n for n in DYNAMIC_PAYLOAD_TYPES if n not in taken), None)
            if free is None:
                continue
            wanted[key] = free
            taken.add(free)
        mapping[pt] = wanted[key]
    lines = []
    for line in section:
        if line.startswith("m=") and mapping:
            head, formats = line.split(" ")[:3], line.split(" ")[3:]
            line = " ".join(head + [str(mapping[int(f)]) for f in formats
                                    if f.isdigit() and int(f) in mapping])
        elif (match := _PT_LINE.match(line)) and mapping:
            if int(match.group(2)) not in mapping:
                continue
            rest = re.sub(r"apt=(\d+)", lambda m: f"apt={mapping.get(int(m.group(1)), m.group(1))}",
                          match.group(3))
            line = f"{match.group(1)}{mapping[int(match.group(2))]}{rest}"
        elif (ext := _EXTMAP.match(line)) and extensions:
            if ext.group(3) not in extensions:
                continue
            line = f"a=extmap:{extensions[ext.group(3)]}{ext.group(2) or ''} {ext.group(3)}"
        lines.append(line)
    return lines
