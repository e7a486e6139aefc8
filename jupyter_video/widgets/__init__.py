"""Notebook widgets: a video room in a cell, and a camera preview before joining.

    from jupyter_video import RoomWidget
    room = RoomWidget(room="lab")
    room            # joins on display; room.participants, room.messages, ... update live
"""

from .monitor import RoomMonitor
from .preview import PreviewWidget
from .room import RoomWidget

__all__ = ["PreviewWidget", "RoomMonitor", "RoomWidget"]
