"""The media plane: an SFU on aiortc that forwards RTP packets (see :mod:`.rtp`).

``create_media_plane(media_workers=0)`` runs it in this process; any other
number runs it in that many worker processes (None: one per core), pinning
each room to one worker. Either way the control plane sees the same
:class:`~jupyter_video.sfu.interface.MediaPlane`.
"""

from __future__ import annotations

from collections.abc import Sequence

from .interface import DataLimits, MediaPlane, PeerState
from .plane import LocalMediaPlane
from .worker import WorkerMediaPlane


def create_media_plane(
    media_workers: int | None = None,
    host_addresses: Sequence[str] | None = None,
    public_address: str | None = None,
    data_limits: DataLimits | None = None,
) -> MediaPlane:
    """A media plane in-process (``media_workers=0``) or in worker processes
    (None: one per core). Call ``await plane.start()`` (or ``async with``) first."""
    if media_workers == 0:
        return LocalMediaPlane(host_addresses, public_address, data_limits)
    return WorkerMediaPlane(media_workers, host_addresses, public_address, data_limits)


__all__ = [
    "DataLimits",
    "LocalMediaPlane",
    "MediaPlane",
    "PeerState",
    "WorkerMediaPlane",
    "create_media_plane",
]
