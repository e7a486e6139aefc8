"""The media-plane test client (tests/sfu/peers.py) with a loss hook of its own:
packets for which ``lose`` says True are dropped before aiortc sees them, so the
client's own Receiver Reports tell the SFU of the loss (the quality tests need
the loss in the SFU's measurements, not only in the packets)."""

from __future__ import annotations

from collections.abc import Callable

from aiortc.rtp import RtpPacket

from ..sfu.peers import Client


class LossyClient(Client):
    lose: Callable[[RtpPacket], bool] | None = None

    def _observe_rtp(self, data: bytes, arrival_ms: int) -> bool:
        if self.lose is not None and self.lose(RtpPacket.parse(data)):
            return True  # lost on the way: aiortc never sees it
        return super()._observe_rtp(data, arrival_ms)
