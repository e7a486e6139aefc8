"""What this process's packet path did: totals since it started, so that a
metrics scrape's counters never go down (they outlive every stream)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ForwardingCounts:
    packets_received: int = 0
    """RTP packets received from publishers (RTX and padding included)."""
    packets_sent: int = 0
    """RTP packets sent to subscribers (each forwarded copy; retransmissions apart)."""
    bytes_sent: int = 0
    """Media payload bytes in them (without RTP headers)."""
    nacks_received: int = 0
    """Packets subscribers asked to be sent again (RTCP NACK, RFC 4585 6.2.1)."""
    retransmissions_sent: int = 0
    """Of those, the ones answered from a send stream's history (RTX where negotiated)."""
    nacks_sent: int = 0
    """Packets asked again of publishers (each retry counted)."""
    retransmissions_received: int = 0
    """RTX packets from publishers, unwrapped."""
    packets_recovered: int = 0
    """Packets counted missing that arrived after all (by RTX or late)."""
    keyframe_requests_received: int = 0
    """PLI and FIR from subscribers."""
    plis_sent: int = 0
    """PLI / FIR sent to publishers (at most one per second per publication)."""
    packets_packetized: int = 0
    """RTP packets made from frames of WebSocket publishers."""
    frames_depacketized: int = 0
    """Frames assembled for recorders and WebSocket subscribers."""


forwarding_counts = ForwardingCounts()
