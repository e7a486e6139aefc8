"""RoomMonitor: the teacher's live view of a room's connections."""

from __future__ import annotations

from typing import Any

import anywidget
import traitlets as t

from . import _frontend


class RoomMonitor(anywidget.AnyWidget):
    """Live plots per participant (send and receive bitrate, packet loss, jitter,
    frame rate), raised hands and warnings such as "s2's uplink is losing 12 % of
    packets", for the room ``room``.

    The browser half asks the server's classroom monitor with the page's Jupyter
    session every 2 s; ``series`` and ``warnings`` follow it here, and
    :meth:`table` gives the series as a pandas DataFrame.
    """

    _esm = _frontend.esm()
    _widget = t.Unicode("monitor").tag(sync=True)
    _server_url = t.Unicode("").tag(sync=True)

    room = t.Unicode("lecture", help="Room name (unique name) to watch.").tag(sync=True)
    series = t.List(
        t.Dict(),
        help="Samples: time, room, identity, direction (send|receive), kind, source, "
        "bitrate_kbps, packet_loss (0-1), jitter_ms, fps.",
    ).tag(sync=True)
    warnings = t.List(t.Unicode(), help="What needs the teacher's attention.").tag(sync=True)

    def __init__(self, room: str = "lecture", **kwargs: Any) -> None:
        kwargs.setdefault("_server_url", _frontend.server_url())
        super().__init__(room=room, **kwargs)

    def __repr__(self) -> str:
        return f"RoomMonitor(room={self.room!r}, samples={len(self.series)})"

    def table(self) -> Any:
        """``series`` as a pandas DataFrame (the rows themselves without pandas)."""
        try:
            import pandas
        except ImportError:
            return list(self.series)
        return pandas.DataFrame(self.series)
