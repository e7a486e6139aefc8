"""A classroom in a notebook: moderation, raised hands, chat history, breakouts, monitor.

Kernel side: :class:`Classroom` (the teacher's object) and :func:`attend` (a
kernel participant that follows breakout moves). The server side is
:mod:`.control` (imported by the server app, not here) and :mod:`.handlers`.
"""

from __future__ import annotations

from .channel import ClassroomChannel, Seat, attend
from .teacher import Classroom

__all__ = ["Classroom", "ClassroomChannel", "Seat", "attend"]
