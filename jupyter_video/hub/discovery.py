"""Where the hub's video service is, from a user's server or kernel.

The hub admin sets ``JUPYTER_VIDEO_HUB_SERVICE_URL`` for single-user servers
(``c.Spawner.environment``); kernels inherit it, together with the server's own
``JUPYTERHUB_API_TOKEN``. That token is the user's: the service identifies the
user by it, so nobody chooses their identity.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from ..errors import VideoError

SERVICE_URL_ENV = "JUPYTER_VIDEO_HUB_SERVICE_URL"
HUB_TOKEN_ENV = "JUPYTERHUB_API_TOKEN"


def service_url() -> str | None:
    """The service's base URL (``http://hub/services/video/``), or None outside a hub."""
    url = os.environ.get(SERVICE_URL_ENV, "").strip()
    if not url:
        return None
    return url if url.endswith("/") else url + "/"


@dataclass(frozen=True)
class Grant:
    """What the service's ``/video/token`` answers: a token and where to use it."""

    token: str
    identity: str
    room: str
    ws_server: str
    rest_base: str
    ice_servers: list[dict[str, Any]]


def request_grant(room: str, url: str | None = None, hub_token: str | None = None,
                  timeout: float = 10.0) -> Grant:
    """Ask the service for an Access Token for ``room`` as this hub user (blocking).

    Raises :class:`VideoError` with the service's code (20403 when the user may
    not create the room) or 53000 when the service cannot be reached.
    """
    url = url or service_url()
    hub_token = hub_token or os.environ.get(HUB_TOKEN_ENV)
    if not url or not hub_token:
        raise VideoError(
            53000,
            f"No hub video service: {SERVICE_URL_ENV} and {HUB_TOKEN_ENV} must be set "
            "(they are in a JupyterHub user's server and kernels when the hub admin "
            "configured the video service)",
        )
    request = urllib.request.Request(
        f"{url}video/token?{urlencode({'room': room})}",
        headers={"Authorization": f"token {hub_token}", "Accept": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = json.loads(response.read())
    except urllib.error.HTTPError as error:
        raise _service_error(error) from None
    except (urllib.error.URLError, OSError) as error:
        raise VideoError(
            53000, f"The hub video service at {url} cannot be reached: {error}"
        ) from None
    return Grant(
        token=body["token"],
        identity=body["identity"],
        room=body["room"],
        ws_server=body["ws_server"],
        rest_base=body["rest_base"],
        ice_servers=list(body.get("ice_servers") or []),
    )


def _service_error(error: urllib.error.HTTPError) -> VideoError:
    try:
        body = json.loads(error.read())
    except ValueError:
        body = {}
    code = body.get("code") if isinstance(body.get("code"), int) else None
    message = body.get("message") or f"{error.code} {error.reason}"
    return VideoError(code or 53000, f"The hub video service refused: {message}",
                      status=error.code)
