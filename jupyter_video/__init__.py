"""jupyter_video: live video rooms inside Jupyter, compatible with Twilio Programmable Video."""

from __future__ import annotations

from typing import Any

from .account import Credentials, load_credentials
from .errors import VideoError
from .tokens import AccessToken, VideoGrant

__version__ = "0.1.0"

__all__ = [
    "AccessToken",
    "Credentials",
    "VideoError",
    "VideoGrant",
    "__version__",
    "credentials",
]


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    from .server.app import VideoApp

    return [{"module": "jupyter_video.server.app", "app": VideoApp}]


def credentials() -> Credentials:
    """This user's server credentials and URL (account, API key, base URL)."""
    return load_credentials()
