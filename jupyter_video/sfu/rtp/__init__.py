"""The packet path: RTP forwarded packet by packet, never decoded.

One module per RTP role, as mediasoup's worker (``RtpStreamRecv``,
``RtpStreamSend``, ``NackGenerator``) and LiveKit's ``pkg/sfu`` (buffer,
downtrack, rtpmunger) split theirs:

- :mod:`.packet`: an RTP packet's header, read once (RFC 3550 section 5.1,
  RFC 8285 header extensions).
- :mod:`.codecs`: what a payload says about frames: keyframes (VP8, H.264),
  the VP8 payload descriptor (RFC 7741) and its picture id.
- :mod:`.rtcp`: the RTCP packets the SFU reads and writes (SR, RR, NACK, PLI,
  FIR, REMB).
- :mod:`.ring`: the recent packets of one publication, from its last keyframe.
- :mod:`.nack`: which missing packets to ask a publisher for, and when.
- :mod:`.receive_stream`: the stream received from a publisher.
- :mod:`.send_stream`: the stream sent to one subscriber.

Nothing here knows tokens, REST or aiortc: bytes in, bytes out, with the
clock passed in, so that the pure logic is tested with real packets alone.
"""
