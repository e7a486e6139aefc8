"""The aiortc / aioice internals the SFU hooks into are where adapter.py expects them.

When one of these fails after an upgrade, re-read the named aiortc module and
fix jupyter_video/_aiortc.py (and its pinned versions) before anything else.
"""

from __future__ import annotations

import asyncio
import inspect
import re

import aioice
import aioice.ice
import aiortc
from aiortc import RTCRtpReceiver, RTCRtpSender
from aiortc.codecs.h264 import H264Encoder
from aiortc.codecs.vpx import Vp8Encoder
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtcrtpreceiver import decoder_worker

from jupyter_video import _aiortc as adapter
from jupyter_video.sfu.publication import is_keyframe


def parameters(function: object) -> list[str]:
    return list(inspect.signature(function).parameters)  # type: ignore[arg-type]


def source(function: object) -> str:
    return inspect.getsource(function)  # type: ignore[arg-type]


def test_aiortc_and_aioice_are_the_pinned_versions() -> None:
    assert aiortc.__version__ == adapter.AIORTC_VERSION
    assert aioice.__version__ == adapter.AIOICE_VERSION
    adapter.check_versions()


def test_ice_host_addresses_come_from_aioice_get_host_addresses() -> None:
    assert parameters(adapter._aioice_get_host_addresses) == ["use_ipv4", "use_ipv6"]
    assert "get_host_addresses(" in source(aioice.ice.Connection.gather_candidates)
    try:
        adapter.use_host_addresses(["127.0.0.1", "::1"])
        assert aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=False) == ["127.0.0.1"]
        assert aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=True) == ["127.0.0.1", "::1"]
    finally:
        adapter.use_host_addresses(["127.0.0.1"])


def test_public_address_replaces_host_candidates_only() -> None:
    sdp = (
        "a=candidate:1 1 udp 2130706431 10.0.0.5 40000 typ host\r\n"
        "a=candidate:2 1 udp 1694498815 1.2.3.4 40000 typ srflx raddr 10.0.0.5 rport 40000\r\n"
    )
    rewritten = adapter.announce_public_address(sdp, "203.0.113.7")
    assert "203.0.113.7 40000 typ host" in rewritten
    assert "1.2.3.4 40000 typ srflx" in rewritten
    assert adapter.announce_public_address(sdp, None) == sdp


def test_receiver_hands_complete_frames_to_its_decoder_queue() -> None:
    init = source(RTCRtpReceiver.__init__)
    assert "self.__decoder_queue: queue.Queue = queue.Queue()" in init
    assert "self.__decoder_thread: Optional[threading.Thread] = None" in init
    handle = source(RTCRtpReceiver._handle_rtp_packet)
    assert "if encoded_frame is not None and self.__decoder_thread:" in handle
    assert "self.__decoder_queue.put((codec, encoded_frame))" in handle
    assert "await self._send_rtcp_pli(packet.ssrc)" in handle
    receive = source(RTCRtpReceiver.receive)
    for step in (
        "self.__codecs[codec.payloadType] = codec",
        "self.__rtx_ssrc[encoding.rtx.ssrc] = encoding.ssrc",
        "self.__transport._register_rtp_receiver(self, parameters)",
        "self.__rtcp_task = asyncio.ensure_future(self._run_rtcp())",
        "self.__started = True",
        "threading.Thread(",
    ):
        assert step in receive, step
    assert "self.__decoder_queue.put(None)" in source(RTCRtpReceiver._RTCRtpReceiver__stop_decoder)  # type: ignore[attr-defined]
    assert "get_decoder(codec)" in source(decoder_worker)
    assert parameters(RTCRtpReceiver._send_rtcp_pli) == ["self", "media_ssrc"]
    assert parameters(RTCRtpReceiver._handle_rtp_packet) == ["self", "packet", "arrival_time_ms"]
    assert parameters(RTCRtpReceiver._run_rtcp) == ["self"]


async def test_tapped_receiver_has_no_decoder_and_sees_frames() -> None:
    from aiortc import RTCCertificate, RTCIceGatherer, RTCIceTransport

    transport = RTCDtlsTransport(
        RTCIceTransport(RTCIceGatherer()), [RTCCertificate.generateCertificate()]
    )
    receiver = RTCRtpReceiver("video", transport)
    frames: list[tuple[bytes, int]] = []
    adapter.tap_encoded_frames(receiver, lambda codec, data, ts: frames.append((data, ts)))
    queue = receiver._RTCRtpReceiver__decoder_queue  # type: ignore[attr-defined]

    class Frame:
        data, timestamp = b"\x10\x02", 3000

    queue.put((None, Frame()))
    assert frames == [(b"\x10\x02", 3000)]
    assert receiver._RTCRtpReceiver__decoder_thread is None  # type: ignore[attr-defined]
    await asyncio.sleep(0)


def test_sender_reports_pli_and_fir_through_send_keyframe() -> None:
    handle = source(RTCRtpSender._handle_rtcp_packet)
    assert "RTCP_PSFB_FIR" in handle and "RTCP_PSFB_PLI" in handle
    assert "self._send_keyframe()" in handle
    assert parameters(RTCRtpSender._send_keyframe) == ["self"]


def test_whole_frame_encoders_take_the_place_of_aiortc_payloaders() -> None:
    assert parameters(Vp8Encoder._packetize) == ["buffer", "picture_id"]
    assert parameters(H264Encoder._packetize) == ["packages"]
    assert parameters(H264Encoder._split_bitstream) == ["buf"]
    keyframe = bytes([0x10, 0x02, 0x00, 0x9D, 0x01, 0x2A]) + bytes(3000)
    assert adapter.frame_encoder("video/VP8")._packetize(keyframe, 7) == [keyframe]
    assert list(adapter.split_annexb(b"\x00\x00\x00\x01\x67\x42\x00\x00\x01\x65\x88")) == [
        b"\x67\x42", b"\x65\x88"]
    assert is_keyframe("video/VP8", keyframe)
    assert not is_keyframe("video/VP8", b"\x11" + keyframe[1:])


async def test_the_sfu_keeps_aiortc_receivers_and_senders_from_starting() -> None:
    from aiortc import RTCConfiguration, RTCPeerConnection
    from aiortc.rtcpeerconnection import RTCPeerConnection as Pc
    from aiortc.rtcrtpparameters import RTCRtpSendParameters

    connect = source(Pc._RTCPeerConnection__connect)  # type: ignore[attr-defined]
    assert "await transceiver.sender.send(self.__localRtp(transceiver))" in connect
    assert "await transceiver.receiver.receive(" in connect
    assert "self.__started = True" in source(RTCRtpSender.send)
    assert "self.__started = True" in source(RTCRtpReceiver.receive)
    assert "if self.__started:" in source(RTCRtpSender.stop)
    assert "if self.__started:" in source(RTCRtpReceiver.stop)
    init = source(RTCRtpSender.__init__)
    assert "self._ssrc = random32()" in init and "self._rtx_ssrc = random32()" in init
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        transceiver = pc.addTransceiver("video", direction="sendrecv")
        sent: list[tuple[object, int, int]] = []
        received: list[object] = []
        adapter.take_sender(transceiver.sender, lambda p, ssrc, rtx: sent.append((p, ssrc, rtx)))
        adapter.take_receiver(transceiver.receiver, received.append)
        parameters_ = RTCRtpSendParameters(codecs=[], headerExtensions=[], muxId="0")
        await transceiver.sender.send(parameters_)
        await transceiver.receiver.receive(parameters_)  # type: ignore[arg-type]
        assert sent == [(parameters_, transceiver.sender._ssrc, transceiver.sender._rtx_ssrc)]
        assert received == [parameters_]
        assert not adapter.started(transceiver.sender)
        assert not adapter.started(transceiver.receiver)
    finally:
        await pc.close()  # stop() of what never started does nothing


def test_h264_keyframes_are_recognised_by_their_idr_slice() -> None:
    sps, pps, idr, slice_ = b"\x67\x42", b"\x68\xce", b"\x65\x88", b"\x41\x9a"
    start = b"\x00\x00\x00\x01"
    assert is_keyframe("video/H264", start + sps + start + pps + start + idr)
    assert not is_keyframe("video/H264", start + slice_)


def test_audio_level_is_parsed_into_rtp_header_extensions() -> None:
    packet = aiortc.rtp.RtpPacket()
    assert hasattr(packet.extensions, "audio_level")
    uris = [e.uri for e in aiortc.codecs.HEADER_EXTENSIONS["audio"]]
    assert "urn:ietf:params:rtp-hdrext:ssrc-audio-level" in uris


def test_transceivers_keep_negotiated_codecs_in_codecs() -> None:
    from aiortc.rtcrtptransceiver import RTCRtpTransceiver

    assert "self._codecs: list[RTCRtpCodecParameters] = []" in source(RTCRtpTransceiver.__init__)


async def test_transceivers_take_the_codecs_and_extensions_of_the_offer_sent() -> None:
    from aiortc import RTCConfiguration, RTCPeerConnection

    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        pc.addTransceiver("audio", direction="sendonly")
        offer = await pc.createOffer()  # resets _codecs and _headerExtensions to aiortc's
        [transceiver] = pc.getTransceivers()
        level = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"
        assert level in {e.uri for e in transceiver._headerExtensions}
        assert transceiver._codecs[0].mimeType == "audio/opus"
        # What is sent: Chrome's numbers (opus 111, audio level 1, mid 4).
        sent = (offer.sdp.replace("a=rtpmap:96 opus", "a=rtpmap:111 opus")
                .replace("UDP/TLS/RTP/SAVPF 96 ", "UDP/TLS/RTP/SAVPF 111 "))
        sent = re.sub(r"a=extmap:\d+ urn:ietf:params:rtp-hdrext:sdes:mid",
                      "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid", sent)
        sent = re.sub(rf"a=extmap:\d+ {level}", f"a=extmap:1 {level}", sent)
        assert "a=rtpmap:111 opus/48000/2" in sent
        adapter.use_offered_parameters(pc, sent)
        assert (transceiver._codecs[0].mimeType, transceiver._codecs[0].payloadType) == (
            "audio/opus", 111)
        assert sorted((e.id, e.uri) for e in transceiver._headerExtensions) == [
            (1, level), (4, "urn:ietf:params:rtp-hdrext:sdes:mid")]
    finally:
        await pc.close()


async def test_unnegotiated_transceivers_stay_out_of_a_remote_offer() -> None:
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
    from aiortc.mediastreams import AudioStreamTrack

    ours = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    theirs = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        waiting = ours.addTransceiver("audio", direction="sendrecv")  # no mid yet
        assert waiting.mid is None and waiting in ours._RTCPeerConnection__transceivers
        theirs.addTransceiver(AudioStreamTrack(), direction="sendonly")
        await theirs.setLocalDescription(await theirs.createOffer())
        with adapter.unassociated_transceivers_hidden(ours):
            await ours.setRemoteDescription(
                RTCSessionDescription(theirs.localDescription.sdp, "offer"))
            await ours.setLocalDescription(await ours.createAnswer())
        [other] = [t for t in ours.getTransceivers() if t is not waiting]
        assert other.mid == "0" and waiting.mid is None
        assert waiting._get_mline_index() is None
        assert ours.getTransceivers()[-1] is waiting  # back, after the new one
    finally:
        await ours.close()
        await theirs.close()


def test_dtls_transport_unprotects_srtp_then_hands_it_to_handle_rtp_and_rtcp_data() -> None:
    from aiortc.rtcicetransport import RTCIceTransport

    # Datagrams reach the ICE connection's queue through data_received, which the
    # SFU replaces on the instance to take SRTP at once.
    # (aioice's own method: drop_unchecked_datagrams wraps it process-wide once a
    # media plane has started in this process.)
    assert "self.receiver.data_received(data, self.local_candidate.component)" in source(
        adapter._aioice_datagram_received)
    assert "self._queue.put_nowait((data, component))" in source(
        aioice.ice.Connection.data_received)
    # Each socket's protocol, which the SFU makes skip the STUN parse for SRTP.
    assert "self._protocols: list[StunProtocol] = []" in source(aioice.ice.Connection.__init__)
    assert "protocol.local_candidate = Candidate(" in source(
        aioice.ice.Connection.get_component_candidates)
    assert "self.receiver = receiver" in source(aioice.ice.StunProtocol.__init__)
    assert parameters(adapter._aioice_datagram_received) == ["self", "data", "addr"]
    # What drop_unchecked_datagrams reads to know a datagram's sender is a checked pair.
    assert "self._check_list: list[CandidatePair] = []" in source(aioice.ice.Connection.__init__)
    pair = source(aioice.ice.CandidatePair.__init__)
    assert "self.protocol = protocol" in pair and "self.remote_candidate = remote_candidate" in pair
    assert "def remote_addr(self)" in source(aioice.ice.CandidatePair)
    assert "self._queue: asyncio.Queue[tuple[bytes, int] | None] = asyncio.Queue()" in source(
        aioice.ice.Connection.__init__)
    assert parameters(aioice.ice.Connection.data_received) == ["self", "data", "component"]
    assert "self._connection = " in source(RTCIceTransport.__init__)
    dtls_init = source(RTCDtlsTransport.__init__)
    assert "self._state = State.NEW" in dtls_init and "self._transport = transport" in dtls_init
    assert "return str(self._state)[6:].lower()" in source(RTCDtlsTransport.state.fget)
    assert "self._rx_srtp = Session(rx_policy)" in source(RTCDtlsTransport._setup_srtp)
    assert "self._rx_srtp: Session = None" in source(RTCDtlsTransport.__init__)
    recv_next = source(RTCDtlsTransport._recv_next)
    assert "first_byte > 127 and first_byte < 192 and self._rx_srtp" in recv_next
    for step in (
        "data = self._rx_srtp.unprotect_rtcp(data)",
        "await self._handle_rtcp_data(data)",
        "data = self._rx_srtp.unprotect(data)",
        "await self._handle_rtp_data(data, arrival_time_ms=arrival_time_ms)",
    ):
        assert step in recv_next, step
    assert parameters(RTCDtlsTransport._handle_rtp_data) == ["self", "data", "arrival_time_ms"]
    assert parameters(RTCDtlsTransport._handle_rtcp_data) == ["self", "data"]
    send_rtp = source(RTCDtlsTransport._send_rtp)
    for step in (
        "data = self._tx_srtp.protect_rtcp(data)",
        "data = self._tx_srtp.protect(data)",
        "await self.transport._send(data)",
    ):
        assert step in send_rtp, step
    assert "self._send = self._connection.send" in source(RTCIceTransport.__init__)
    sendto = source(aioice.ice.Connection.sendto)
    assert "active_pair = self._nominated.get(component)" in sendto
    assert "await active_pair.protocol.send_data(data, active_pair.remote_addr)" in sendto
    assert "self.transport.sendto(data, addr)" in source(aioice.ice.StunProtocol.send_data)


async def test_diverted_srtp_reaches_the_handlers_unprotected_and_not_aiortc() -> None:
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
    from aiortc.mediastreams import VideoStreamTrack
    from aiortc.rtp import RtcpPacket, RtcpPsfbPacket, RtpPacket

    adapter.use_host_addresses(["127.0.0.1"])
    sender_pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    receiver_pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    rtp: list[RtpPacket] = []
    rtcp: list[int] = []
    keyframe_requests: list[int] = []
    try:
        sending = sender_pc.addTransceiver(VideoStreamTrack(), direction="sendonly")
        adapter.on_keyframe_request(sending.sender, lambda: keyframe_requests.append(1))
        diverted = asyncio.Event()

        def on_track(track: object) -> None:
            [transceiver] = receiver_pc.getTransceivers()
            dtls = transceiver.receiver.transport

            def on_rtp(data: bytes, arrival_ms: int) -> bool:
                rtp.append(RtpPacket.parse(data))
                return True

            def on_rtcp(data: bytes) -> bool:
                rtcp.extend(data[1] for _ in RtcpPacket.parse(data))  # parses: unprotected
                return True

            adapter.divert_srtp(dtls, on_rtp, on_rtcp)
            assert adapter.srtp_diverted(dtls)
            diverted.set()

        receiver_pc.on("track", on_track)
        await sender_pc.setLocalDescription(await sender_pc.createOffer())
        await receiver_pc.setRemoteDescription(
            RTCSessionDescription(sender_pc.localDescription.sdp, "offer"))
        await receiver_pc.setLocalDescription(await receiver_pc.createAnswer())
        await sender_pc.setRemoteDescription(
            RTCSessionDescription(receiver_pc.localDescription.sdp, "answer"))
        await asyncio.wait_for(diverted.wait(), 10)
        for _ in range(200):
            if len(rtp) >= 20 and rtcp:
                break
            await asyncio.sleep(0.05)
        media_ssrc = sending.sender._ssrc
        assert len(rtp) >= 20 and {p.ssrc for p in rtp} == {media_ssrc}
        assert {p.payload_type for p in rtp} == {sending._codecs[0].payloadType}
        assert 200 in rtcp  # the sender's Sender Report, unprotected
        [receiving] = receiver_pc.getTransceivers()
        assert adapter.media_ssrcs(receiving.receiver) == []  # aiortc saw none of it
        # SRTP went past aioice's STUN parse: counted on the receiving sockets.
        parsed: list[bytes] = []
        parse_message = aioice.stun.parse_message

        def counting_parse(data: bytes, *args: object) -> object:
            parsed.append(data[:1])
            return parse_message(data, *args)  # type: ignore[arg-type]

        aioice.ice.stun.parse_message = counting_parse  # type: ignore[assignment]
        try:
            arrived = len(rtp)
            for _ in range(100):
                if len(rtp) >= arrived + 10:
                    break
                await asyncio.sleep(0.02)
        finally:
            aioice.ice.stun.parse_message = parse_message
        assert len(rtp) >= arrived + 10
        assert not [b for b in parsed if 127 < b[0] < 192]

        # And back: a PLI protected and sent synchronously reaches aiortc's sender.
        pli = RtcpPsfbPacket(fmt=1, ssrc=0x1234, media_ssrc=media_ssrc)
        assert adapter.send_srtp(receiving.receiver.transport, bytes(pli))
        for _ in range(100):
            if keyframe_requests:
                break
            await asyncio.sleep(0.02)
        assert keyframe_requests
    finally:
        await sender_pc.close()
        await receiver_pc.close()
    assert not adapter.send_srtp(receiving.receiver.transport, bytes(pli))  # closed: nothing sent


def test_ice_restart_and_failover_find_what_they_use_in_aiortc() -> None:
    """keep_sender_identity / set_sender_identity, bytes_received, bundle_early_sctp,
    and the Python client's close(keep_tracks=True)."""
    from aiortc import RTCPeerConnection
    from aiortc.rtcpeerconnection import create_media_description_for_transceiver

    sender_init = source(RTCRtpSender.__init__)
    assert "self._ssrc = random32()" in sender_init
    assert "self._rtx_ssrc = random32()" in sender_init
    assert "self._stream_id = str(uuid.uuid4())" in sender_init
    assert "transceiver.sender._stream_id" in source(create_media_description_for_transceiver)
    assert "self.__rx_bytes += len(data)" in source(
        RTCDtlsTransport._recv_next)  # type: ignore[attr-defined]
    remote = source(RTCPeerConnection.setRemoteDescription)
    assert "and not self.__sctp._bundled" in remote
    assert "await dtlsTransport.transport.stop()" in remote
    # A stopped sender stops its track: the client lets go of it first.
    assert "self.__track.stop()" in source(RTCRtpSender._run_rtp)
