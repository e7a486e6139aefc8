"""The SFU's rewrites of its own offers, on SDP as Chrome and aiortc write it."""

from __future__ import annotations

import json
from pathlib import Path

from jupyter_video.sfu.sdp import extmap_ids, keep_extmap_ids, keep_payload_types

CAPTURES = Path(__file__).resolve().parent.parent / "signaling" / "fixtures"


def chrome_offer() -> str:
    frames = json.loads((CAPTURES / "capture_join.json").read_text())["frames"]
    body = frames[1]["frame"]["body"]
    return str(body["peer_connections"][0]["description"]["sdp"])


AIORTC_REOFFER = "\r\n".join([
    "v=0", "o=- 1 1 IN IP4 0.0.0.0", "s=-", "t=0 0", "a=group:BUNDLE 0 1",
    "m=audio 9 UDP/TLS/RTP/SAVPF 96 9 0 8", "a=mid:0", "a=recvonly",
    "a=extmap:1 urn:ietf:params:rtp-hdrext:sdes:mid",
    "a=extmap:2 urn:ietf:params:rtp-hdrext:ssrc-audio-level",
    "a=rtpmap:96 opus/48000/2", "a=fmtp:96 minptime=10;useinbandfec=1",
    "a=rtpmap:9 G722/8000", "a=rtpmap:0 PCMU/8000", "a=rtpmap:8 PCMA/8000",
    "m=video 9 UDP/TLS/RTP/SAVPF 97 98 99 100", "a=mid:1", "a=recvonly",
    "a=rtcp-fb:97 nack pli", "a=rtpmap:97 VP8/90000", "a=rtpmap:98 rtx/90000",
    "a=fmtp:98 apt=97", "a=rtpmap:99 H264/90000",
    "a=fmtp:99 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f",
    "a=rtpmap:100 rtx/90000", "a=fmtp:100 apt=99", "",
])


def test_payload_types_go_back_to_what_chrome_negotiated() -> None:
    rewritten = keep_payload_types(AIORTC_REOFFER, chrome_offer())
    lines = rewritten.split("\r\n")
    # Chrome's offer: opus 111, VP8 96 with RTX 97, H264 (42e01f, mode 1) 102/103 ...
    assert "a=rtpmap:111 opus/48000/2" in lines
    assert "a=rtpmap:96 VP8/90000" in lines
    assert "a=rtcp-fb:96 nack pli" in lines
    rtx = [line for line in lines if line.startswith("a=fmtp:") and "apt=96" in line]
    assert rtx == ["a=fmtp:97 apt=96"]
    video = next(line for line in lines if line.startswith("m=video"))
    assert video.split(" ")[3:5] == ["96", "97"]
    assert "a=rtpmap:98 rtx/90000" not in lines  # aiortc's own numbers are gone


def test_header_extension_ids_follow_the_client() -> None:
    ids = extmap_ids(chrome_offer())
    rewritten = keep_extmap_ids(AIORTC_REOFFER, ids).split("\r\n")
    extmaps = [line for line in rewritten if line.startswith("a=extmap:")]
    mid = "urn:ietf:params:rtp-hdrext:sdes:mid"
    level = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"
    assert extmaps == [f"a=extmap:{ids[mid]} {mid}", f"a=extmap:{ids[level]} {level}"]
