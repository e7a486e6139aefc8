"""A lossy UDP link between one aiortc peer and the SFU, in user space.

This machine's kernel has no ``sch_netem`` (``tc qdisc add ... netem`` answers
"Specified qdisc kind is unknown"), so the loss is made by a relay that the test
puts in the path: the peer's SDP is rewritten so that each end sends its ICE,
DTLS and SRTP to the relay, which passes every datagram on and drops a seeded,
reproducible share of the RTP packets in either direction.

::

    peer  <->  facing_peer socket | relay | facing_sfu socket  <->  SFU ICE port

Only RTP media packets are dropped (RFC 7983 demultiplexing: first byte
128..191; RTCP by its packet type, RFC 5761): the loss under test is the
media's; losing STUN consent checks or DTLS flights would make the connection's
set-up time random, not the recovery that is measured. Every datagram passing
can be seen by a tap (``on_datagram``), at socket level on this process's
``time.monotonic_ns()`` clock, which is the same clock in every process of the
machine (``benchmarks/latency.py`` times the SFU with it).
"""

from __future__ import annotations

import asyncio
import enum
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

_CANDIDATE = re.compile(r"^(a=candidate:\S+ \d+ udp \d+ )(\S+) (\d+)( typ host.*)$", re.MULTILINE)


class Direction(str, enum.Enum):
    UPLINK = "uplink"  # peer -> SFU
    DOWNLINK = "downlink"  # SFU -> peer


def is_rtp(datagram: bytes) -> bool:
    """Whether ``datagram`` is an RTP (not RTCP, STUN or DTLS) packet."""
    if len(datagram) < 12 or not 128 <= datagram[0] <= 191:
        return False
    return not 192 <= datagram[1] <= 223  # RTCP packet types (RFC 5761 section 4)


@dataclass
class LinkCounts:
    """Datagrams one direction of the link carried and dropped."""

    passed: int = 0
    rtp_passed: int = 0
    rtp_dropped: int = 0


Tap = Callable[[Direction, bytes, int], None]
"""Called with (direction, datagram, time_ns) for each datagram the relay passes on."""


class _Socket(asyncio.DatagramProtocol):
    def __init__(self, on_datagram: Callable[[bytes, tuple[str, int]], None]) -> None:
        self.on_datagram = on_datagram
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's and asyncio's datagram transports do not all subclass DatagramTransport.
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.on_datagram(data, addr)

    @property
    def address(self) -> tuple[str, int]:
        assert self.transport is not None
        host, port = self.transport.get_extra_info("sockname")[:2]
        return host, port


class LossyLink:
    """A relay between one peer connection and the SFU that drops ``uplink`` /
    ``downlink`` shares (0..1) of the RTP packets, with ``seed`` choosing which."""

    def __init__(
        self,
        uplink: float = 0.0,
        downlink: float = 0.0,
        seed: int = 1,
        on_datagram: Tap | None = None,
    ) -> None:
        self.loss = {Direction.UPLINK: uplink, Direction.DOWNLINK: downlink}
        self.counts = {Direction.UPLINK: LinkCounts(), Direction.DOWNLINK: LinkCounts()}
        self.on_datagram = on_datagram
        # One generator per direction: what one side sends does not shift the other's draws.
        self._random = {d: random.Random(f"{seed}-{d.value}") for d in Direction}
        self._facing_peer = _Socket(self._from_peer)
        self._facing_sfu = _Socket(self._from_sfu)
        self._peer: tuple[str, int] | None = None
        self._sfu: tuple[str, int] | None = None

    async def start(self) -> LossyLink:
        loop = asyncio.get_running_loop()
        for side in (self._facing_peer, self._facing_sfu):
            await loop.create_datagram_endpoint(lambda side=side: side, local_addr=("127.0.0.1", 0))  # type: ignore[misc]
        return self

    def close(self) -> None:
        for side in (self._facing_peer, self._facing_sfu):
            if side.transport is not None:
                side.transport.close()

    async def __aenter__(self) -> LossyLink:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    # SDP: each end is told the relay's address in place of the other's.

    def peer_sdp_to_sfu(self, sdp: str) -> str:
        """The peer's offer or answer as the SFU must see it (the peer behind the relay)."""
        sdp, self._peer = self._rewrite(sdp, self._facing_sfu.address)
        return sdp

    def sfu_sdp_to_peer(self, sdp: str) -> str:
        """The SFU's offer or answer as the peer must see it (the SFU behind the relay)."""
        sdp, self._sfu = self._rewrite(sdp, self._facing_peer.address)
        return sdp

    @staticmethod
    def _rewrite(sdp: str, relay: tuple[str, int]) -> tuple[str, tuple[str, int]]:
        """``sdp`` with its (one) host candidate replaced by ``relay``; the old address."""
        found = {(m.group(2), int(m.group(3))) for m in _CANDIDATE.finditer(sdp)}
        if len(found) != 1:
            raise ValueError(f"a lossy link relays one host candidate, the SDP has {sorted(found)}")
        [(host, port)] = found
        sdp = _CANDIDATE.sub(lambda m: f"{m.group(1)}{relay[0]} {relay[1]}{m.group(4)}", sdp)
        sdp = re.sub(rf"^(m=\S+ ){port}( )", rf"\g<1>{relay[1]}\2", sdp, flags=re.MULTILINE)
        return sdp, (host, port)

    # Datagrams.

    def _from_peer(self, data: bytes, addr: tuple[str, int]) -> None:
        self._peer = addr
        if self._sfu is not None:
            self._pass(Direction.UPLINK, data, self._facing_sfu, self._sfu)

    def _from_sfu(self, data: bytes, addr: tuple[str, int]) -> None:
        if self._peer is not None:
            self._pass(Direction.DOWNLINK, data, self._facing_peer, self._peer)

    def _pass(self, direction: Direction, data: bytes, out: _Socket, to: tuple[str, int]) -> None:
        counts = self.counts[direction]
        if is_rtp(data):
            if self._random[direction].random() < self.loss[direction]:
                counts.rtp_dropped += 1
                return
            counts.rtp_passed += 1
        counts.passed += 1
        assert out.transport is not None
        out.transport.sendto(data, to)
        if self.on_datagram is not None:
            self.on_datagram(direction, data, time.monotonic_ns())
