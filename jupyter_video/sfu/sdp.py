"""SDP rewrites the SFU's own offers need so that browsers accept them."""

from __future__ import annotations

import re

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


def _codec_keys(section: list[str]) -> dict[int, str]:
    """Payload type -> what the codec is (name/rate + fmtp), RTX by the codec it repairs."""
    names: dict[int, str] = {}
    fmtp: dict[int, str] = {}
    for line in section:
        if line.startswith("a=rtpmap:"):
            number, name = line[9:].split(" ", 1)
            names[int(number)] = name.lower()
        elif line.startswith("a=fmtp:"):
            number, params = line[7:].split(" ", 1)
            fmtp[int(number)] = params
    keys: dict[int, str] = {}
    for pt, name in names.items():
        params = fmtp.get(pt, "")
        if name.startswith("rtx/"):
            continue
        keys[pt] = f"{name} {';'.join(sorted(p for p in params.split(';') if p))}"
    for pt, name in names.items():
        if name.startswith("rtx/"):
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
    Codecs whose number is taken by another codec are dropped.
    """
    wanted: dict[str, int] = {}
    for section in _sections(negotiated)[1:]:
        for pt, key in _codec_keys(section).items():
            wanted.setdefault(key, pt)
    out = []
    for section in _sections(offer):
        if section and section[0].startswith("m=") and wanted:
            section = _renumber(section, wanted)
        out.extend(section)
    return "\r\n".join(out)


def _renumber(section: list[str], wanted: dict[str, int]) -> list[str]:
    taken = set(wanted.values())
    mapping: dict[int, int] = {}
    for pt, key in _codec_keys(section).items():
        if key in wanted:
            mapping[pt] = wanted[key]
        elif pt not in taken:
            mapping[pt] = pt
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
