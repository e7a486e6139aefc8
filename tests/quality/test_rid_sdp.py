"""RID simulcast in SDP (RFC 8853, RFC 8852): what the client sends is read per mid,
and the SFU's description is made to receive exactly that."""

from __future__ import annotations

from jupyter_video.sfu.sdp import (
    REPAIRED_RID_URI,
    RID_URI,
    simulcast_rids,
    with_simulcast_recv,
)

OFFER = "\r\n".join([
    "v=0", "o=- 1 2 IN IP4 127.0.0.1", "s=-", "t=0 0",
    "m=audio 9 UDP/TLS/RTP/SAVPF 111", "a=mid:0", "a=sendonly",
    "m=video 9 UDP/TLS/RTP/SAVPF 96", "a=mid:1",
    "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid",
    f"a=extmap:10 {RID_URI}", f"a=extmap:11 {REPAIRED_RID_URI}",
    "a=sendonly", "a=rid:q send", "a=rid:h send", "a=rid:f send",
    "a=simulcast:send q;~h;f,x", "",
])
ANSWER = "\r\n".join([
    "v=0", "o=- 3 4 IN IP4 127.0.0.1", "s=-", "t=0 0",
    "m=audio 9 UDP/TLS/RTP/SAVPF 111", "a=mid:0", "a=recvonly",
    "m=video 9 UDP/TLS/RTP/SAVPF 96", "a=mid:1",
    "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid", "a=recvonly", "",
])


def test_the_rids_a_client_sends_are_read_in_order_per_mid() -> None:
    # A paused RID (~h) still counts; an alternative (f,x) by its first RID.
    assert simulcast_rids(OFFER) == {"1": ["q", "h", "f"]}
    assert simulcast_rids(ANSWER) == {}


def test_the_sfus_answer_receives_each_rid_with_the_clients_extension_ids() -> None:
    answer = with_simulcast_recv(ANSWER, simulcast_rids(OFFER), {
        RID_URI: 10, REPAIRED_RID_URI: 11, "urn:ietf:params:rtp-hdrext:sdes:mid": 4})
    audio, video = answer.split("\r\nm=")[1:]
    assert "a=rid" not in audio and "simulcast" not in audio
    lines = video.split("\r\n")
    assert f"a=extmap:10 {RID_URI}" in lines and f"a=extmap:11 {REPAIRED_RID_URI}" in lines
    assert [x for x in lines if x.startswith("a=rid:")] == [
        "a=rid:q recv", "a=rid:h recv", "a=rid:f recv"]
    assert answer.endswith("a=simulcast:recv q;h;f\r\n")
    # Applied again (the next offer), nothing doubles.
    again = with_simulcast_recv(answer, simulcast_rids(OFFER), {RID_URI: 10, REPAIRED_RID_URI: 11})
    assert again == answer
