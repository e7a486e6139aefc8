"""The SFU's rewrites of its own offers, on SDP as Chrome and aiortc write it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jupyter_video.errors import MediaError
from jupyter_video.sfu.sdp import (
    extmap_ids,
    keep_extmap_ids,
    keep_payload_types,
    only_video_codecs,
    with_opus_parameters,
    with_video_start_bitrate,
)

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


def section_codecs(sdp: str, mid: str) -> dict[int, str]:
    """Payload type -> rtpmap name in the m-section ``mid``."""
    codecs: dict[int, str] = {}
    current = None
    for line in sdp.split("\r\n"):
        if line.startswith("a=mid:"):
            current = line[6:]
        elif line.startswith("a=rtpmap:") and current == mid:
            number, name = line[9:].split(" ", 1)
            codecs[int(number)] = name
    return codecs


# twilio-video's own answer after a re-offer: Opus with the DTX it turns on, VP8 96.
TWILIO_VIDEO_ANSWER = "\r\n".join([
    "v=0", "o=- 2 2 IN IP4 127.0.0.1", "s=-", "t=0 0", "a=group:BUNDLE 0 1",
    "m=audio 9 UDP/TLS/RTP/SAVPF 111 9 0 8", "a=mid:0", "a=sendonly",
    "a=rtpmap:111 opus/48000/2", "a=fmtp:111 minptime=10;usedtx=1;useinbandfec=1",
    "a=rtpmap:9 G722/8000", "a=rtpmap:0 PCMU/8000", "a=rtpmap:8 PCMA/8000",
    "m=video 9 UDP/TLS/RTP/SAVPF 96 97 102 103", "a=mid:1", "a=sendonly",
    "a=rtpmap:96 VP8/90000", "a=rtpmap:97 rtx/90000", "a=fmtp:97 apt=96",
    "a=rtpmap:102 H264/90000",
    "a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f",
    "a=rtpmap:103 rtx/90000", "a=fmtp:103 apt=102", "",
])

# aiortc's re-offer: the two published sections, then two new subscriptions
# (aiortc numbers opus 96 and VP8 97 in every section, and writes no opus fmtp).
AIORTC_SUBSCRIBING_REOFFER = "\r\n".join([
    "v=0", "o=- 3 3 IN IP4 0.0.0.0", "s=-", "t=0 0", "a=group:BUNDLE 0 1 2 3",
    "m=audio 9 UDP/TLS/RTP/SAVPF 96 9 0 8", "a=mid:0", "a=recvonly",
    "a=rtpmap:96 opus/48000/2", "a=rtpmap:9 G722/8000", "a=rtpmap:0 PCMU/8000",
    "a=rtpmap:8 PCMA/8000",
    "m=video 9 UDP/TLS/RTP/SAVPF 97 98 99 100", "a=mid:1", "a=recvonly",
    "a=rtpmap:97 VP8/90000", "a=rtpmap:98 rtx/90000", "a=fmtp:98 apt=97",
    "a=rtpmap:99 H264/90000",
    "a=fmtp:99 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f",
    "a=rtpmap:100 rtx/90000", "a=fmtp:100 apt=99",
    "m=video 9 UDP/TLS/RTP/SAVPF 97 98", "a=mid:2", "a=sendonly",
    "a=rtpmap:97 VP8/90000", "a=rtpmap:98 rtx/90000", "a=fmtp:98 apt=97",
    "m=audio 9 UDP/TLS/RTP/SAVPF 96", "a=mid:3", "a=sendonly",
    "a=rtpmap:96 opus/48000/2", "",
])


def test_opus_keeps_its_number_whatever_its_settings() -> None:
    rewritten = keep_payload_types(AIORTC_SUBSCRIBING_REOFFER, TWILIO_VIDEO_ANSWER)
    # Before: aiortc's opus (no fmtp) and Chrome's (usedtx=1 ...) were two codecs; 96
    # being VP8's, opus was dropped from section 0 (Chrome went to G722) and left
    # as 96 in section 3, where 96 also meant VP8 in the same BUNDLE group.
    assert section_codecs(rewritten, "0") == {
        111: "opus/48000/2", 9: "G722/8000", 0: "PCMU/8000", 8: "PCMA/8000"}
    assert section_codecs(rewritten, "3") == {111: "opus/48000/2"}
    assert section_codecs(rewritten, "1") == {
        96: "VP8/90000", 97: "rtx/90000", 102: "H264/90000", 103: "rtx/90000"}
    assert section_codecs(rewritten, "2") == {96: "VP8/90000", 97: "rtx/90000"}
    assert "a=fmtp:97 apt=96" in rewritten.split("\r\n")


def test_one_number_means_one_codec_in_the_whole_bundle() -> None:
    rewritten = keep_payload_types(AIORTC_SUBSCRIBING_REOFFER, TWILIO_VIDEO_ANSWER)
    meaning: dict[int, set[str]] = {}
    for mid in "0123":
        for pt, name in section_codecs(rewritten, mid).items():
            meaning.setdefault(pt, set()).add(name)
    assert all(len(names) == 1 for names in meaning.values()), meaning


def test_a_codec_the_client_never_numbered_gets_a_free_number() -> None:
    # The client negotiated VP8 only, as 96 and its RTX 97; aiortc offers H264 as 96.
    negotiated = "\r\n".join([
        "v=0", "s=-", "m=video 9 UDP/TLS/RTP/SAVPF 96 97", "a=mid:0",
        "a=rtpmap:96 VP8/90000", "a=rtpmap:97 rtx/90000", "a=fmtp:97 apt=96", "",
    ])
    offer = "\r\n".join([
        "v=0", "s=-", "m=video 9 UDP/TLS/RTP/SAVPF 96 97 98", "a=mid:0",
        "a=rtpmap:96 H264/90000", "a=fmtp:96 packetization-mode=1;profile-level-id=42e01f",
        "a=rtpmap:97 VP8/90000", "a=rtpmap:98 rtx/90000", "a=fmtp:98 apt=97", "",
    ])
    rewritten = keep_payload_types(offer, negotiated)
    codecs = section_codecs(rewritten, "0")
    assert codecs[96] == "VP8/90000" and codecs[97] == "rtx/90000"
    [h264] = [pt for pt, name in codecs.items() if name == "H264/90000"]
    assert h264 not in (96, 97)
    assert f"a=fmtp:{h264} packetization-mode=1;profile-level-id=42e01f" in rewritten


def video_codec_names(sdp: str) -> set[str]:
    names = set()
    in_video = False
    for line in sdp.split("\r\n"):
        if line.startswith("m="):
            in_video = line.startswith("m=video")
        elif in_video and line.startswith("a=rtpmap:"):
            names.add(line.split(" ", 1)[1].split("/")[0].lower())
    return names


def first_mid(sdp: str, kind: str) -> str:
    """The mid of the first m-section of ``kind``."""
    current = None
    for line in sdp.split("\r\n"):
        if line.startswith("m="):
            current = line[2:].split(" ")[0]
        elif line.startswith("a=mid:") and current == kind:
            return line[6:]
    raise AssertionError(f"no {kind} section")


def test_an_h264_room_takes_only_h264_and_its_rtx_from_chrome() -> None:
    offer = chrome_offer()
    audio_mid, video_mid = first_mid(offer, "audio"), first_mid(offer, "video")
    assert {"VP8/90000", "H264/90000"} <= set(section_codecs(offer, video_mid).values())
    rewritten = only_video_codecs(offer, ["H264"])
    kept = section_codecs(rewritten, video_mid)
    assert set(kept.values()) == {"H264/90000", "rtx/90000"}
    video = next(line for line in rewritten.split("\r\n") if line.startswith("m=video"))
    assert {int(pt) for pt in video.split(" ")[3:]} == set(kept)
    # Audio is left as Chrome offered it.
    assert section_codecs(rewritten, audio_mid) == section_codecs(offer, audio_mid)


def test_a_room_whose_codecs_the_offer_lacks_is_refused_with_53404() -> None:
    with pytest.raises(MediaError) as raised:
        only_video_codecs(AIORTC_REOFFER.replace("H264", "VP9"), ["H264"])
    assert raised.value.code == 53404
    assert "H264" in raised.value.message


def test_opus_gets_fec_and_dtx_only_where_the_client_asked_for_dtx() -> None:
    answer = AIORTC_REOFFER.replace("a=fmtp:96 minptime=10;useinbandfec=1\r\n", "")
    client = "\r\n".join([
        "v=0", "m=audio 9 UDP/TLS/RTP/SAVPF 111", "a=mid:0",
        "a=rtpmap:111 opus/48000/2", "a=fmtp:111 minptime=10;useinbandfec=1;usedtx=1", "",
    ])
    lines = with_opus_parameters(answer, client).split("\r\n")
    at = lines.index("a=rtpmap:96 opus/48000/2")
    assert lines[at + 1] == "a=fmtp:96 minptime=10;useinbandfec=1;usedtx=1"
    assert sum(line.startswith("a=fmtp:96") for line in lines) == 1
    plain = with_opus_parameters(answer, client.replace(";usedtx=1", "")).split("\r\n")
    assert plain[at + 1] == "a=fmtp:96 minptime=10;useinbandfec=1"


def test_video_codecs_get_chromes_start_bitrate_and_rtx_and_audio_do_not() -> None:
    lines = with_video_start_bitrate(AIORTC_REOFFER, 1500).split("\r\n")
    at = lines.index("a=rtpmap:97 VP8/90000")
    assert lines[at + 1] == "a=fmtp:97 x-google-start-bitrate=1500"
    assert (
        "a=fmtp:99 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"
        ";x-google-start-bitrate=1500"
    ) in lines
    assert "a=fmtp:98 apt=97" in lines and "a=fmtp:100 apt=99" in lines
    assert sum("x-google" in line for line in lines) == 2
    # Applied twice (an answer re-read), the parameter is not repeated.
    assert with_video_start_bitrate("\r\n".join(lines), 1500) == "\r\n".join(lines)
