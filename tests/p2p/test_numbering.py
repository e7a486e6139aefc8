"""keep_remote_numbering: our re-offer in a pair the other end opened keeps that end's
payload types and RTP header extension ids (Chrome refuses one payload type for two
codecs on one BUNDLE transport, and a negotiated extension given another id)."""

from __future__ import annotations

from jupyter_video.client.mesh import keep_remote_numbering

REMOTE = "\r\n".join([
    "v=0", "o=- 1 2 IN IP4 127.0.0.1", "s=-", "t=0 0", "a=group:BUNDLE 0 1",
    "m=audio 9 UDP/TLS/RTP/SAVPF 111 0", "a=mid:0",
    "a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level",
    "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid",
    "a=rtpmap:111 opus/48000/2", "a=fmtp:111 minptime=10;useinbandfec=1",
    "a=rtpmap:0 PCMU/8000",
    "m=video 9 UDP/TLS/RTP/SAVPF 96 97", "a=mid:1",
    "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid",
    "a=rtpmap:96 VP8/90000", "a=rtcp-fb:96 nack pli",
    "a=rtpmap:97 rtx/90000", "a=fmtp:97 apt=96", "",
])

# aiortc's own numbering: Opus 96 (Chrome's VP8), VP8 97 (Chrome's RTX), H264 new
OURS = "\r\n".join([
    "v=0", "o=- 3 4 IN IP4 0.0.0.0", "s=-", "t=0 0", "a=group:BUNDLE 0 1 2",
    "m=audio 5000 UDP/TLS/RTP/SAVPF 96 0", "a=mid:0",
    "a=extmap:1 urn:ietf:params:rtp-hdrext:sdes:mid",
    "a=extmap:2 urn:ietf:params:rtp-hdrext:ssrc-audio-level",
    "a=rtpmap:96 opus/48000/2", "a=rtpmap:0 PCMU/8000",
    "m=video 5000 UDP/TLS/RTP/SAVPF 97 98 99", "a=mid:1",
    "a=extmap:1 urn:ietf:params:rtp-hdrext:sdes:mid",
    "a=extmap:3 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time",
    "a=rtpmap:97 VP8/90000", "a=rtcp-fb:97 nack pli",
    "a=rtpmap:98 rtx/90000", "a=fmtp:98 apt=97",
    "a=rtpmap:99 H264/90000", "a=fmtp:99 packetization-mode=1;profile-level-id=42e01f",
    "m=video 5000 UDP/TLS/RTP/SAVPF 97 98", "a=mid:2",
    "a=rtpmap:97 VP8/90000", "a=rtpmap:98 rtx/90000", "a=fmtp:98 apt=97", "",
])


def section(sdp: str, mid: str) -> list[str]:
    sections = sdp.split("\r\nm=")
    return next(s for s in sections if f"a=mid:{mid}" in s).split("\r\n")


def test_payload_types_are_the_other_ends_in_every_section() -> None:
    offer = keep_remote_numbering(OURS, REMOTE)
    audio, video, added = section(offer, "0"), section(offer, "1"), section(offer, "2")
    assert audio[0] == "audio 5000 UDP/TLS/RTP/SAVPF 111 0"
    assert "a=rtpmap:111 opus/48000/2" in audio
    assert video[0] == "video 5000 UDP/TLS/RTP/SAVPF 96 97 99"
    assert {"a=rtpmap:96 VP8/90000", "a=rtcp-fb:96 nack pli", "a=rtpmap:97 rtx/90000",
            "a=fmtp:97 apt=96"} <= set(video)
    # a codec the other end did not number keeps ours where that is free
    assert "a=rtpmap:99 H264/90000" in video
    assert not any(line.startswith("a=rtpmap:98") for line in video)
    # a section new to the pair takes the same numbers: one meaning per number
    assert added[0] == "video 5000 UDP/TLS/RTP/SAVPF 96 97"
    assert "a=fmtp:97 apt=96" in added


def test_extension_ids_are_the_other_ends_and_unknown_ones_left_out() -> None:
    offer = keep_remote_numbering(OURS, REMOTE)
    audio, video = section(offer, "0"), section(offer, "1")
    assert "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid" in audio
    assert "a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level" in audio
    assert not any("abs-send-time" in line for line in video)


def test_session_lines_are_untouched() -> None:
    offer = keep_remote_numbering(OURS, REMOTE)
    assert offer.split("\r\n")[:5] == OURS.split("\r\n")[:5]
