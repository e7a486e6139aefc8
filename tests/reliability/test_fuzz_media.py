"""Media fuzzing: mutated SDP offers from a real browser, and random datagrams at the
SFU's ICE ports, while Alice and Bob exchange video and data.

SDP: twilio-video.js's offer from Chromium (tests/signaling/fixtures/capture_join.json),
lines deleted, duplicated, swapped, truncated and rewritten, sent in ``connect``:
the answer is ``connected`` or Twilio's 53400-range error, and the media worker
lives on (the pair keeps its media). Datagrams: random bytes and truncated or
mutated RTP, RTCP, STUN and DTLS records at the ports the SFU announced to the pair:
forwarding goes on for everyone. Both from seeded generators: the same inputs
every run. (Not hypothesis for the SDP: the pair's aiortc, in another thread, draws
from the global ``random`` while hypothesis draws, which hypothesis reports as a
strategy using ``random``.)
"""

from __future__ import annotations

import json
import os
import random
import re
import socket
import struct
import time
import uuid
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from jupyter_video.errors import CODES

from ..client.participants import token
from ..server_process import ServerProcess
from .conftest import tracebacks
from .live_pair import LivePair

pytestmark = [
    pytest.mark.timeout(600),
    pytest.mark.filterwarnings("ignore:connect\\(\\) must be used:DeprecationWarning"),
]

OFFERS = 150  # mutated SDP offers per run
DATAGRAMS = int(os.environ.get("FUZZ_DATAGRAMS", "20000"))  # per run (more for a long run)
FIXTURES = Path(__file__).resolve().parent.parent / "signaling" / "fixtures"


def browser_hello() -> dict:  # type: ignore[type-arg]
    frames = json.loads((FIXTURES / "capture_join.json").read_text())["frames"]
    return next(f["frame"] for f in frames if f["dir"] == "in" and f["frame"]["type"] == "hello")


HELLO = browser_hello()
SDP_LINES = HELLO["body"]["peer_connections"][0]["description"]["sdp"].split("\r\n")

EDITS = ("delete", "duplicate", "swap", "truncate", "numbers", "garbage")
NUMBERS = ["0", "-1", "65536", "4294967296", "99999999999999999999", "127", "128", "x"]
ALPHABET = "".join(map(chr, range(32, 127))) + "\t\n\x00\x7f\u00e9\u2028\U0001f600"


def mutated_sdp(rng: random.Random) -> str:
    """Chromium's offer with 1-6 line edits, each drawn from ``rng``."""
    lines = list(SDP_LINES)
    for _ in range(rng.randint(1, 6)):
        if not lines:
            break
        kind, index = rng.choice(EDITS), rng.randrange(len(lines))
        if kind == "delete":
            del lines[index]
        elif kind == "duplicate":
            lines.insert(index, lines[index])
        elif kind == "swap":
            other = rng.randrange(len(lines))
            lines[index], lines[other] = lines[other], lines[index]
        elif kind == "truncate":
            lines[index] = lines[index][: rng.randint(0, len(lines[index]))]
        elif kind == "numbers":
            lines[index] = re.sub(r"\d+", lambda _: rng.choice(NUMBERS), lines[index],
                                  count=rng.randint(1, 3))
        else:
            lines[index] = "".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 80)))
    return "\r\n".join(lines)


def offer(server: ServerProcess, sdp: str) -> dict:  # type: ignore[type-arg]
    """Connect to the fuzz room with this offer; the server's answer (connected or error)."""
    hello = json.loads(json.dumps(HELLO))
    hello["id"] = str(uuid.uuid4())
    body = hello["body"]
    body["token"] = token(server, f"sdp-{uuid.uuid4().hex[:6]}")
    body["name"] = "sdp-fuzz-room"
    body["peer_connections"][0]["description"]["sdp"] = sdp
    url = server.url.replace("http://", "ws://") + "video/signaling"
    with connect(url, open_timeout=10, compression=None, close_timeout=1) as ws:
        ws.send(json.dumps(hello))
        deadline = time.monotonic() + 20
        while True:
            frame = json.loads(ws.recv(timeout=max(0.0, deadline - time.monotonic())))
            if frame["type"] == "msg" and frame["body"]["type"] in ("connected", "error"):
                answer: dict = frame["body"]  # type: ignore[type-arg]
                if answer["type"] == "connected":
                    ws.send(json.dumps({"type": "msg", "body": {
                        "type": "disconnect", "version": 2, "session": answer["session"]}}))
                return answer


def test_mutated_browser_offers_get_connected_or_a_53400_range_error_and_the_worker_lives(
    server: ServerProcess, pair: LivePair
) -> None:
    outcomes: dict[str, int] = {}
    rng = random.Random(7)  # fixed: CI sends the same offers every run
    for _ in range(OFFERS):
        sdp = mutated_sdp(rng)
        try:
            answer = offer(server, sdp)
        except ConnectionClosed:
            outcomes["closed"] = outcomes.get("closed", 0) + 1
            continue
        if answer["type"] == "connected":
            outcome = "connected"
        else:
            code = answer["code"]
            assert code in CODES and (53400 <= code < 53500 or code == 53004), (answer, sdp)
            outcome = f"error {code}"
        outcomes[outcome] = outcomes.get(outcome, 0) + 1

    after = pair.healthy()
    print(json.dumps({"fuzz_sdp": {"offers": OFFERS, "outcomes": outcomes, "pair": after}}))
    assert sum(n for o, n in outcomes.items() if o.startswith("error 534")) > 0
    assert tracebacks(server) == []


HOST_CANDIDATE = re.compile(r"a=candidate:\S+ 1 udp \d+ 127\.0\.0\.1 (\d+) typ host")


def sfu_ports(pair: LivePair) -> list[int]:
    """The UDP ports the SFU announced to Alice and Bob (its ICE host candidates)."""
    ports = []
    for side in (pair.alice, pair.bob):
        assert side.room is not None
        sdp = side.room._pc.pc.remoteDescription.sdp  # the SFU's answer
        ports += [int(p) for p in HOST_CANDIDATE.findall(sdp)]
    assert ports, "the SFU announced no 127.0.0.1 candidate"
    return sorted(set(ports))


def rtp(rng: random.Random, payload_type: int) -> bytes:
    header = struct.pack("!BBHII", 0x80 | rng.randrange(16), payload_type | rng.choice([0, 128]),
                         rng.randrange(65536), rng.randrange(2**32), rng.randrange(2**32))
    return header + rng.randbytes(rng.randrange(0, 1200))


def datagram(rng: random.Random) -> bytes:
    """One hostile datagram: random, or shaped like what the SFU's port demultiplexes."""
    kind = rng.randrange(6)
    if kind == 0:
        packet = rng.randbytes(rng.randrange(0, 1500))
    elif kind == 1:  # RTP, SRTP-looking (RFC 7983: first byte 128-191)
        packet = rtp(rng, rng.choice([96, 97, 111, 0, 127]))
    elif kind == 2:  # RTCP: SR, RR, SDES, BYE, APP, RTPFB, PSFB
        packet = struct.pack("!BBH", 0x80 | rng.randrange(32), rng.randrange(200, 207),
                             rng.randrange(65536)) + rng.randbytes(rng.randrange(0, 200))
    elif kind == 3:  # STUN: binding request/indication/response, cookie, random attributes
        body = rng.randbytes(rng.randrange(0, 200))
        packet = struct.pack("!HHI", rng.choice([0x0001, 0x0011, 0x0101, 0x0111]),
                             rng.choice([len(body), rng.randrange(65536)]), 0x2112A442)
        packet += rng.randbytes(12) + body
    elif kind == 4:  # DTLS records (content types 20-25), version 1.2 / 1.0
        packet = struct.pack("!BHHHIH", rng.randrange(20, 26), rng.choice([0xFEFD, 0xFEFF]),
                             rng.randrange(65536), 0, rng.randrange(2**32),
                             rng.randrange(65536)) + rng.randbytes(rng.randrange(0, 300))
    else:  # TURN ChannelData (64-79)
        packet = bytes([rng.randrange(64, 80)]) + rng.randbytes(rng.randrange(0, 100))
    if rng.random() < 0.3:
        packet = packet[: rng.randrange(0, len(packet) + 1)]  # truncated
    return packet


def test_random_and_truncated_datagrams_at_the_sfu_ports_do_not_stop_forwarding(
    server: ServerProcess, pair: LivePair
) -> None:
    ports = sfu_ports(pair)
    rng = random.Random(11)  # fixed: CI sends the same datagrams every run
    before = pair.counts()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        for number in range(DATAGRAMS):
            sender.sendto(datagram(rng), ("127.0.0.1", ports[number % len(ports)]))
            if number % 200 == 199:
                time.sleep(0.01)  # ~20k datagrams/s: hostile, not a flood of the loopback
    after = pair.healthy()
    print(json.dumps({"fuzz_datagrams": {"sent": DATAGRAMS, "ports": len(ports),
                                         "pair_before": before, "pair_after": after}}))
    assert after["alice_bad_frames"] == 0 and after["bob_bad_frames"] == 0
    assert tracebacks(server) == []
