"""The media socket protocol (jupyter_video.signaling.mediasocket): framing, checks, SDP."""

from __future__ import annotations

import os

import pytest

from jupyter_video.signaling import mediasocket as ms


def assembler(*media: int, data: tuple[int, ...] = ()) -> ms.FrameAssembler:
    taker = ms.FrameAssembler()
    taker.media_channels.update(media)
    taker.data_channels.update(data)
    return taker


def test_a_large_keyframe_goes_in_fragments_and_comes_back_whole() -> None:
    data = os.urandom(100_000)
    messages = ms.frame_messages(3, 7, 90_000, True, data, 1234)
    assert len(messages) == -(-100_000 // ms.FRAGMENT_SIZE)  # 100 kB in fragments
    assert all(len(m) <= ms.FRAGMENT_SIZE + ms.FRAME_HEADER.size for m in messages)
    taker = assembler(3)
    results = [taker.take(m) for m in messages]
    assert results[:-1] == [None] * (len(messages) - 1)
    frame = results[-1]
    assert frame == ms.Frame(3, 7, 90_000, True, 1234, data)


def test_data_messages_keep_text_and_bytes_apart() -> None:
    taker = assembler(data=(5,))
    assert taker.take(ms.data_message(5, "héllo")) == (5, "héllo")
    assert taker.take(ms.data_message(5, b"\x00\xff")) == (5, b"\x00\xff")


@pytest.mark.parametrize("message, says", [
    (b"", "empty"),
    (b"\x09\x00", "unknown media message type"),
    (ms.frame_messages(9, 1, 0, False, b"x", 0)[0], "not announced"),
    (ms.data_message(9, "x"), "not opened"),
    (ms.FRAME_HEADER.pack(ms.FRAME, 0x80 | ms.FIRST_FRAGMENT, 1, 1, 0, 0) + b"x", "flags"),
    (b"\x01" + b"\x00" * (ms.MAX_MESSAGE_SIZE + 1), "at most"),
])
def test_a_malformed_message_is_refused_with_53004_and_what_is_wrong(
        message: bytes, says: str) -> None:
    with pytest.raises(ms.MediaSocketError) as raised:
        assembler(1).take(message)
    assert raised.value.code == 53004
    assert says in raised.value.message


def test_frames_out_of_order_are_refused() -> None:
    taker = assembler(1)
    taker.take(ms.frame_messages(1, 10, 0, True, b"a", 0)[0])
    with pytest.raises(ms.MediaSocketError, match="out of order"):
        taker.take(ms.frame_messages(1, 9, 0, False, b"b", 0)[0])
    # sequence numbers wrap around (RFC 1982): 0 comes after 2^32 - 1
    taker = assembler(1)
    taker.take(ms.frame_messages(1, 0xFFFFFFFF, 0, True, b"a", 0)[0])
    assert isinstance(taker.take(ms.frame_messages(1, 0, 0, False, b"b", 0)[0]), ms.Frame)


def test_a_fragment_of_another_frame_is_refused() -> None:
    first = ms.frame_messages(1, 1, 0, True, os.urandom(20_000), 0)[0]
    other = ms.frame_messages(1, 2, 0, True, os.urandom(20_000), 0)
    taker = assembler(1)
    taker.take(first)
    with pytest.raises(ms.MediaSocketError, match="starts before"):
        taker.take(other[0])
    with pytest.raises(ms.MediaSocketError, match="out of order"):
        assembler(1).take(other[1])


def test_control_messages_are_checked() -> None:
    body = ms.parse_control('{"type":"publish","channel":2,"mid":"0"}', ms.CLIENT_CONTROL)
    assert body["channel"] == 2
    for text, says in [("nope", "not JSON"), ('{"type":"subscribe"}', "must be one of"),
                       ('{"type":"publish","mid":"0"}', "lacks channel"),
                       ('{"type":"publish","channel":-1,"mid":"0"}', "channel must be")]:
        with pytest.raises(ms.MediaSocketError, match=says):
            ms.parse_control(text, ms.CLIENT_CONTROL)


def test_close_codes_carry_the_twilio_code() -> None:
    assert ms.close_code(53004) == 4004
    assert ms.close_code(53405) == 4405


def test_media_socket_sdp_round_trips_sections() -> None:
    sections = [
        ms.Section("audio", "0", "sendrecv", ms.default_codecs("audio"), ("s", "mic")),
        ms.Section("video", "1", "recvonly", ms.default_codecs("video")),
        ms.Section("application", "2"),
    ]
    sdp = ms.write_sdp(sections, 3)
    assert ms.is_media_socket_sdp(sdp)
    parsed = ms.parse_sections(sdp)
    assert [(s.kind, s.mid, s.direction, s.msid) for s in parsed] == [
        ("audio", "0", "sendrecv", ("s", "mic")), ("video", "1", "recvonly", None),
        ("application", "2", "sendrecv", None)]
    assert parsed[1].codecs is not None
    assert [c.name for c in parsed[1].codecs] == ["VP8", "H264"]
    assert "packetization-mode=1" in parsed[1].codecs[1].fmtp
    assert not ms.is_media_socket_sdp(sdp.replace(ms.TRANSPORT_ATTRIBUTE, "a=ice-ufrag:x"))


@pytest.mark.parametrize("offered, sends, answered", [
    ("sendrecv", True, "sendrecv"), ("sendrecv", False, "recvonly"),
    ("recvonly", True, "sendonly"), ("sendonly", True, "recvonly"), ("inactive", True, "inactive"),
])
def test_answer_directions_follow_rfc_3264(offered: str, sends: bool, answered: str) -> None:
    assert ms.answer_direction(offered, sends) == answered
