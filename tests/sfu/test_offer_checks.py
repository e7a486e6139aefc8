"""Offers aiortc would take and then break on are refused up front with 53403 and a
message naming the line to fix; the peer takes a good offer afterwards and closes.

Each mutation is one that ``tests/reliability/test_fuzz_media.py`` found: before,
the answer or the peer's close failed inside aiortc (leaving its ICE sockets open),
or its DTLS start failed in a background task."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from jupyter_video.errors import MediaError
from jupyter_video.sfu.interface import MediaPlane

FIXTURES = Path(__file__).resolve().parent.parent / "signaling" / "fixtures"


def chromium_offer() -> str:
    """twilio-video.js's first offer from Chromium (audio, video, data)."""
    frames = json.loads((FIXTURES / "capture_join.json").read_text())["frames"]
    hello = next(f["frame"] for f in frames if f["dir"] == "in" and f["frame"]["type"] == "hello")
    sdp: str = hello["body"]["peer_connections"][0]["description"]["sdp"]
    return sdp


def without(pattern: str, sdp: str, count: int = 0) -> str:
    """``sdp`` without the lines matching ``pattern`` (the first ``count`` only, if set)."""
    mutated, n = re.subn(rf"^{pattern}[^\r\n]*\r\n", "", sdp, count=count, flags=re.M)
    assert n, pattern
    return mutated


OFFER = chromium_offer()


@pytest.mark.parametrize(("mutated", "says"), [
    (without("a=mid:1", OFFER), "m-section 1 (video) has no a=mid"),
    (without("m=video", OFFER), "m-section 0 (audio) has 2 a=mid lines"),
    (OFFER.replace("BUNDLE 0 1 2", "BUNDLE 0 1 2 3"), "a=group:BUNDLE names mid 3"),
    (OFFER.replace("a=mid:2", "a=mid:0"), "m-section 2 (application) repeats a=mid:0"),
    (without("a=fingerprint", OFFER), "m-section 0 (audio) has no DTLS a=fingerprint"),
    (without("a=(sendrecv|sendonly|recvonly|inactive)", OFFER, 1),
     "m-section 0 (audio) has no direction"),
    (OFFER.replace("a=fmtp:111 ", "a=fmtp:77 "),
     "line 28 cannot be read ('a=fmtp:77 minptime=10;useinbandfec=1': it names a "
     "payload type its m= line does not list)"),
], ids=["no-mid", "an-m-line-missing", "bundle-names-a-missing-mid", "repeated-mid",
        "no-fingerprint", "no-direction", "fmtp-of-an-unlisted-payload-type"])
async def test_an_offer_aiortc_would_break_on_is_refused_and_the_peer_lives(
    plane: MediaPlane, clients, mutated: str, says: str
) -> None:
    client = clients(1)
    await client.join()
    with pytest.raises(MediaError) as refused:
        await plane.apply_offer(client.sid, mutated)
    assert refused.value.code == 53403
    assert says in str(refused.value), refused.value

    answer = await plane.apply_offer(client.sid, OFFER)  # the peer is as it was
    assert answer.count("\r\nm=") == 3, answer
    await plane.remove_peer(client.sid)  # and closes
