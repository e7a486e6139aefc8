"""SDP rewrites the SFU's own offers need so that browsers accept them."""

from __future__ import annotations

import re
from collections.abc import Sequence

from ..errors import MediaError

_EXTMAP = re.compile(r"^a=extmap:(\d+)(?:/\w+)? (\S+)")


def extmap_ids(sdp: str) -> dict[str, int]:
    """The RTP header extension ids an SDP assigns, by extension URI."""
    ids: dict[str, int] = {}
    for line in sdp.splitlines():
        match = _EXTMAP.match(line)
        if match:
            ids.setdefault(match.group(2), int(match.group(1)))
    return ids


def keep_extmap_ids(sdp: str, ids: dict[str, int]) -> str:
    """``sdp`` with every ``a=extmap`` renumbered to ``ids``; extensions not in ``ids`` dropped.

    Chrome refuses a re-offer that gives a negotiated extension another id
    ("RTP extension ID reassignment not supported"), and aiortc numbers its own
    offers from 1 whatever was negotiated before (docs/signaling.md, pitfall 1).
    """
    lines = []
    for line in sdp.split("\r\n"):
        match = _EXTMAP.match(line)
        if match:
            uri = match.group(2)
            if uri not in ids:
                continue
            line = f"a=extmap:{ids[uri]} {uri}"
        lines.append(line)
    return "\r\n".join(lines)


def _sections(sdp: str) -> list[list[str]]:
    """The SDP split into its session part and one line list per m-section."""
    parts: list[list[str]] = [[]]
    for line in sdp.split("\r\n"):
        if line.startswith("m="):
            parts.append([])
        parts[-1].append(line)
    return parts


def _mid(section: list[str]) -> str | None:
    return next((line[6:] for line in section if line.startswith("a=mid:")), None)


_IDENTITY: dict[str, dict[str, str | None]] = {
    "h264": {"packetization-mode": "0", "profile-level-id": None},
    "vp9": {"profile-id": "0"},
    "av1": {"profile": "0"},
}
"""The fmtp parameters that make two codecs of one name different codecs (with their
defaults). The others (opus's ``usedtx`` that twilio-video adds, ``minptime`` ...)
are settings of the same codec: comparing them made opus "unknown" in Chrome's
numbering, and the SFU's re-offer dropped it (Chrome fell back to G722)."""

DYNAMIC_PAYLOAD_TYPES = [*range(96, 128), *range(35, 64)]
"""Where a codec numbered apart from the client's gets a number: the dynamic range
(RFC 3551), then 35-63; 64-95 would read as RTCP packet types under rtcp-mux
(RFC 5761 section 4)."""


def _codec_key(name: str, params: str) -> str:
    codec = name.split("/")[0]
    values = dict(p.strip().split("=", 1) for p in params.split(";") if "=" in p)
    identity = [
        f"{param}={values.get(param, default)}".lower()
        for param, default in _IDENTITY.get(codec, {}).items()
        if param in values or default is not None
    ]
    return " ".join([name.lower(), *identity])


def _codec_keys(section: list[str]) -> dict[int, str]:
    """Payload type -> what the codec is (name/rate + identifying fmtp), RTX by the
    codec it repairs."""
    names: dict[int, str] = {}
    fmtp: dict[int, str] = {}
    for line in section:
        if line.startswith("a=rtpmap:"):
            number, name = line[9:].split(" ", 1)
            names[int(number)] = name.strip()
        elif line.startswith("a=fmtp:"):
            number, params = line[7:].split(" ", 1)
            fmtp[int(number)] = params
    keys: dict[int, str] = {}
    for pt, name in names.items():
        if not name.lower().startswith("rtx/"):
            keys[pt] = _codec_key(name, fmtp.get(pt, ""))
    for pt, name in names.items():
        if name.lower().startswith("rtx/"):
            apt = re.search(r"apt=(\d+)", fmtp.get(pt, ""))
            if apt and int(apt.group(1)) in keys:
                keys[pt] = f"rtx for {keys[int(apt.group(1))]}"
    return keys


def keep_payload_types(offer: str, negotiated: str) -> str:
    """``offer`` with the payload types the client negotiated put back, in every section.

    aiortc renumbers every codec from its own table in each offer (VP8 97 where
    Chrome had negotiated 96); Chrome then sends with the new numbers while the
    SFU's started receivers still know the old ones, and the video stops. One
    numbering serves the whole BUNDLE group, new sections included: the same
    number may not mean two codecs on one transport (RFC 8843 section 9.1.2).
    A codec the client has no number for keeps aiortc's when that is free, and
    otherwise gets a free dynamic one.
    """
    wanted: dict[str, int] = {}
    for section in _sections(negotiated)[1:]:
        for pt, key in _codec_keys(section).items():
            if key not in wanted and pt not in wanted.values():
                wanted[key] = pt
    out = []
    for section in _sections(offer):
        if section and section[0].startswith("m="):
            section = _renumber(section, wanted)
        out.extend(section)
    return "\r\n".join(out)


def _renumber(section: list[str], wanted: dict[str, int]) -> list[str]:
    """``section`` in ``wanted``'s numbering; codecs new to it are added to it."""
    taken = set(wanted.values())
    mapping: dict[int, int] = {}
    codecs = sorted(_codec_keys(section).items(), key=lambda item: item[1].startswith("rtx"))
    for pt, key in codecs:  # RTX after the codecs it repairs
        if key not in wanted:
            free = pt if pt not in taken else next(
                (n for n in DYNAMIC_PAYLOAD_TYPES if n not in taken), None
            )
            if free is None:
                continue  # no number left: the codec is not offered
            wanted[key] = free
            taken.add(free)
        mapping[pt] = wanted[key]
    if not mapping:
        return section  # nothing in common: leave it to the negotiation to refuse
    rewritten = []
    for line in section:
        if line.startswith("m="):
            head = line.split(" ")[:3]
            fmts = [str(mapping[int(pt)]) for pt in line.split(" ")[3:] if int(pt) in mapping]
            line = " ".join(head + fmts)
        else:
            match = re.match(r"^a=(rtpmap|fmtp|rtcp-fb):(\d+)(.*)$", line)
            if match:
                pt = int(match.group(2))
                if pt not in mapping:
                    continue
                rest = re.sub(
                    r"apt=(\d+)",
                    lambda m: f"apt={mapping.get(int(m.group(1)), int(m.group(1)))}",
                    match.group(3),
                )
                line = f"a={match.group(1)}:{mapping[pt]}{rest}"
        rewritten.append(line)
    return rewritten


def _rtpmap(section: list[str]) -> dict[int, str]:
    """Payload type -> codec name (lower case, no rate) of one m-section."""
    names = {}
    for line in section:
        if line.startswith("a=rtpmap:"):
            number, name = line[9:].split(" ", 1)
            names[int(number)] = name.split("/")[0].strip().lower()
    return names


def only_video_codecs(offer: str, allowed: Sequence[str]) -> str:
    """``offer`` with its video sections keeping only the codecs in ``allowed`` (a
    room's ``VideoCodecs``: ``VP8``, ``H264``) and the RTX that repairs them.

    Applied to a client's offer before the SFU answers it, so that the answer, and
    what the client then sends, names no other codec. twilio-video.js turns its VP8
    simulcast off when the answer does not prefer VP8 (peerconnection.js
    ``_revertSimulcast``). A section left with no codec is 53404.
    """
    wanted = {codec.lower() for codec in allowed}
    out = []
    for section in _sections(offer):
        if section and section[0].startswith("m=video") and not section[0].startswith(
            "m=video 0 "
        ):
            section = _keep_codecs(section, wanted)
        out.extend(section)
    return "\r\n".join(out)


def _keep_codecs(section: list[str], wanted: set[str]) -> list[str]:
    names = _rtpmap(section)
    keep = {pt for pt, name in names.items() if name in wanted}
    for line in section:
        apt = re.match(r"^a=fmtp:(\d+) .*apt=(\d+)", line)
        if apt and names.get(int(apt.group(1))) == "rtx" and int(apt.group(2)) in keep:
            keep.add(int(apt.group(1)))
    if not any(names[pt] != "rtx" for pt in keep):
        mid = _mid(section)
        raise MediaError(
            53404,
            f"No supported codec: this room accepts {', '.join(sorted(wanted)).upper()} "
            f"video, and the offer's video section {mid} has none of them",
        )
    rewritten = []
    for line in section:
        if line.startswith("m="):
            head = line.split(" ")[:3]
            line = " ".join(head + [pt for pt in line.split(" ")[3:] if int(pt) in keep])
        else:
            match = re.match(r"^a=(?:rtpmap|fmtp|rtcp-fb):(\d+)", line)
            if match and int(match.group(1)) not in keep:
                continue
        rewritten.append(line)
    return rewritten


OPUS_PARAMETERS = "minptime=10;useinbandfec=1"
"""What the SFU asks of the Opus it receives (as Twilio's media servers and browsers
write it); ``usedtx=1`` is added where the client's own description asks for DTX."""


def with_opus_parameters(sdp: str, remote: str | None) -> str:
    """``sdp`` (the SFU's answer or offer) with an Opus ``a=fmtp`` in every audio section.

    aiortc writes none, so Chrome sent without in-band FEC and ignored
    twilio-video's ``preferredAudioCodecs: [{codec: 'opus', dtx: true}]``: the
    encoder uses DTX only when the remote description has ``usedtx=1`` (RFC 7587
    section 7). The client's own ``usedtx`` is read from its section of the same mid.
    """
    dtx_mids = set()
    for section in _sections(remote or "")[1:]:
        opus = {pt for pt, name in _rtpmap(section).items() if name == "opus"}
        if any(
            re.match(rf"^a=fmtp:{pt} .*usedtx=1", line) for pt in opus for line in section
        ):
            dtx_mids.add(_mid(section))
    out = []
    for section in _sections(sdp):
        if section and section[0].startswith("m=audio"):
            section = _opus_fmtp(section, _mid(section) in dtx_mids)
        out.extend(section)
    return "\r\n".join(out)


def _opus_fmtp(section: list[str], dtx: bool) -> list[str]:
    opus = [pt for pt, name in _rtpmap(section).items() if name == "opus"]
    if not opus:
        return section
    parameters = OPUS_PARAMETERS + (";usedtx=1" if dtx else "")
    lines = [line for line in section if not line.startswith(f"a=fmtp:{opus[0]} ")]
    at = next(i for i, line in enumerate(lines) if line.startswith(f"a=rtpmap:{opus[0]} "))
    lines.insert(at + 1, f"a=fmtp:{opus[0]} {parameters}")
    return lines


VIDEO_START_BITRATE_KBPS = 1500
"""Where Chrome's send-side bandwidth estimate starts for the video it sends the
SFU (``x-google-start-bitrate``, read from the remote description's fmtp). Its
default, 300 kbit/s, grows by ~8 % a second on REMB feedback alone, so a 1280x720
camera took ~23 s to reach full size (docs/forwarding.md, ramp-up). 1.5 Mbit/s
is what a 720p30 VP8 camera needs; a link that cannot take it shows loss in the
first seconds and the estimate falls back as it would from any start. No
``x-google-min-bitrate``: a floor would hold a congested uplink at a rate it
cannot carry."""


def with_video_start_bitrate(sdp: str, kbps: int = VIDEO_START_BITRATE_KBPS) -> str:
    """``sdp`` (the SFU's answer or offer) with ``x-google-start-bitrate`` on every
    video codec but RTX (an ``a=fmtp`` added where aiortc wrote none)."""
    out = []
    for section in _sections(sdp):
        if section and section[0].startswith("m=video"):
            section = _start_bitrate(section, kbps)
        out.extend(section)
    return "\r\n".join(out)


def _start_bitrate(section: list[str], kbps: int) -> list[str]:
    parameter = f"x-google-start-bitrate={kbps}"
    lines = list(section)
    for pt, name in _rtpmap(section).items():
        if name in ("rtx", "red", "ulpfec", "flexfec-03"):
            continue
        at = next(
            (i for i, line in enumerate(lines) if line.startswith(f"a=fmtp:{pt} ")), None
        )
        if at is not None:
            if "x-google-start-bitrate" not in lines[at]:
                lines[at] += f";{parameter}"
        else:
            at = next(i for i, line in enumerate(lines) if line.startswith(f"a=rtpmap:{pt} "))
            lines.insert(at + 1, f"a=fmtp:{pt} {parameter}")
    return lines


RID_URI = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id"
REPAIRED_RID_URI = "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id"
"""The header extensions that name a packet's RTP stream by its RID, and an RTX
packet's by the RID it repairs (RFC 8852): how RID simulcast's packets, which no
``a=ssrc`` line announces, are told apart."""


def simulcast_rids(sdp: str) -> dict[str, list[str]]:
    """mid -> the RIDs its sender sends (``a=simulcast:send``, RFC 8853), in the
    order listed, for every m-section of ``sdp`` with two or more.

    Alternatives (``1,2``) count by their first RID; a paused one (``~1``) counts
    too (it may be resumed). RIDs not declared ``a=rid:<id> send`` are left out.
    """
    found: dict[str, list[str]] = {}
    for section in _sections(sdp)[1:]:
        declared = set()
        listed: list[str] = []
        for line in section:
            if line.startswith("a=rid:"):
                parts = line[6:].split()
                if len(parts) >= 2 and parts[1] == "send":
                    declared.add(parts[0])
            elif line.startswith("a=simulcast:"):
                words = line[12:].split()
                for direction, streams in zip(words[::2], words[1::2], strict=False):
                    if direction == "send":
                        listed = [s.split(",")[0].lstrip("~") for s in streams.split(";")]
        rids = [rid for rid in listed if rid in declared]
        mid = _mid(section)
        if mid is not None and len(rids) >= 2:
            found[mid] = rids
    return found


def with_simulcast_recv(
    sdp: str, rids: dict[str, list[str]], extmap: dict[str, int]
) -> str:
    """``sdp`` (the SFU's answer or offer) receiving RID simulcast where the client
    sends it: ``a=rid:<id> recv`` and ``a=simulcast:recv`` for each mid of ``rids``
    (:func:`simulcast_rids` of the client's description), and the RID header
    extensions with the client's ids (``extmap``, URI -> id).

    aiortc knows neither (its answer would make Chrome send one layer); Chrome
    names the layers only by RID, so without the extensions it could not say
    which packet is which.
    """
    out = []
    for section in _sections(sdp):
        mid = _mid(section)
        if mid in rids and section[0].startswith("m=video") \
                and not section[0].startswith("m=video 0 "):
            section = _simulcast_recv(section, rids[mid], extmap)
        out.extend(section)
    return "\r\n".join(out)


def _simulcast_recv(section: list[str], rids: list[str], extmap: dict[str, int]) -> list[str]:
    lines = [line for line in section
             if not line.startswith(("a=rid:", "a=simulcast:"))]
    have = set(extmap_ids("\r\n".join(lines)))
    extensions = [f"a=extmap:{extmap[uri]} {uri}" for uri in (RID_URI, REPAIRED_RID_URI)
                  if uri in extmap and uri not in have]
    at = max((i for i, line in enumerate(lines) if line.startswith("a=extmap:")),
             default=next(i for i, line in enumerate(lines) if line.startswith("a=mid:")))
    lines[at + 1:at + 1] = extensions
    blanks = 0
    while lines and lines[-1] == "":  # the last section ends with the SDP's final CRLF
        lines.pop()
        blanks += 1
    lines += [f"a=rid:{rid} recv" for rid in rids]
    lines.append("a=simulcast:recv " + ";".join(rids))
    return lines + [""] * blanks


def with_max_message_size(sdp: str, size: int) -> str:
    """``sdp`` (the SFU's answer or offer) announcing ``size`` as the largest data
    channel message it takes (``a=max-message-size``, RFC 8841 section 6): a WebRTC
    sender's ``send()`` then refuses a larger message itself (Chrome, aiortc).
    0 leaves aiortc's own figure."""
    if size <= 0:
        return sdp
    out = []
    for section in _sections(sdp):
        if section and section[0].startswith("m=application"):
            lines = [line for line in section if not line.startswith("a=max-message-size:")]
            end = len(lines)
            while end and not lines[end - 1]:  # the SDP's last CRLF
                end -= 1
            section = [*lines[:end], f"a=max-message-size:{size}", *lines[end:]]
        out.extend(section)
    return "\r\n".join(out)
