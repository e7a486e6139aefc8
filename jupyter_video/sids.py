"""Twilio SIDs: a two-letter prefix and 32 lower-case hex digits."""

from __future__ import annotations

import re
import uuid

ROOM = "RM"
PARTICIPANT = "PA"
TRACK = "MT"
RECORDING = "RT"
ACCOUNT = "AC"
API_KEY = "SK"
COMPOSITION = "CJ"
HOOK = "HK"  # CompositionHook


def new_sid(prefix: str) -> str:
    """A fresh random SID with ``prefix`` (``RM``, ``PA``, ``MT`` ...)."""
    return prefix + uuid.uuid4().hex


def is_sid(value: object, prefix: str) -> bool:
    """Whether ``value`` is a well-formed SID with ``prefix``."""
    return isinstance(value, str) and re.fullmatch(prefix + "[0-9a-fA-F]{32}", value) is not None
