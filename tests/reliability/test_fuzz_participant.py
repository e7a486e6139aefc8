"""Random and truncated datagrams at a Python participant's own ICE ports, while
Alice and Bob exchange video and data: the participant's aiortc drops what does
not come from a checked candidate pair (``_aiortc.drop_unchecked_datagrams``,
installed by :class:`jupyter_video.client.peer_connection.PeerConnection` as the
media plane installs it), so its media goes on. The datagrams are those of
test_fuzz_media.py (one empty datagram used to end the participant's DTLS)."""

from __future__ import annotations

import json
import random
import socket
import time
from collections.abc import Iterator

import aioice
import pytest

from jupyter_video import _aiortc

from ..client.participants import room_name
from ..server_process import ServerProcess
from .conftest import tracebacks
from .live_pair import LivePair
from .test_fuzz_media import HOST_CANDIDATE, datagram

pytestmark = pytest.mark.timeout(240)

DATAGRAMS = 5000


@pytest.fixture(scope="module")
def pair(server: ServerProcess) -> Iterator[LivePair]:
    """The live pair, joined in a process whose aioice is as shipped: a media plane
    that ran in this process earlier (another test) installed the filter for all."""
    aioice.ice.StunProtocol.datagram_received = (  # type: ignore[method-assign]
        _aiortc._aioice_datagram_received)
    live = LivePair(server, room_name()).start()
    yield live
    live.stop()


def participant_ports(pair: LivePair) -> list[int]:
    """The UDP ports Alice and Bob gather ICE host candidates on (their own offers)."""
    ports = []
    for side in (pair.alice, pair.bob):
        assert side.room is not None
        sdp = side.room._pc.pc.localDescription.sdp
        ports += [int(p) for p in HOST_CANDIDATE.findall(sdp)]
    assert ports, "the participants announced no 127.0.0.1 candidate"
    return sorted(set(ports))


def test_random_and_truncated_datagrams_at_a_participants_ports_do_not_stop_its_media(
    server: ServerProcess, pair: LivePair
) -> None:
    ports = participant_ports(pair)
    rng = random.Random(12)
    before = pair.counts()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        for number in range(DATAGRAMS):
            packet = datagram(rng) if number % 50 else b""  # an empty one every 50
            sender.sendto(packet, ("127.0.0.1", ports[number % len(ports)]))
            if number % 200 == 199:
                time.sleep(0.01)
    after = pair.healthy()
    print(json.dumps({"fuzz_participant_datagrams": {
        "sent": DATAGRAMS, "ports": len(ports), "pair_before": before, "pair_after": after}}))
    assert after["alice_bad_frames"] == 0 and after["bob_bad_frames"] == 0
    assert tracebacks(server) == []
