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
