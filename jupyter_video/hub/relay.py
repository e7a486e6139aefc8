"""The extension in a hub user's server when the hub runs the video service.

That server starts no media plane and keeps no rooms. A page's ``/video/token``
and REST calls (the widget's subscribe controls) arrive here with the page's own
Jupyter session and go on to the service with this server's hub token
(``$JUPYTERHUB_API_TOKEN``, owned by the user, scoped by
``Spawner.server_token_scopes``), so the service sees the user and nobody else.
The service's answer comes back unchanged: its ``ws_server`` and ``rest_base``
are absolute, so the same ``RoomWidget(room="lecture")`` cell in every user's
notebook joins the service's one room.
"""

from __future__ import annotations

import json
import os
from typing import Any

from jupyter_server.auth.decorator import allow_unauthenticated
from jupyter_server.base.handlers import APIHandler
from tornado import web
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

from ..errors import VideoError
from .discovery import HUB_TOKEN_ENV

RELAY_TIMEOUT = 20.0  # seconds; the service answers tokens and REST in milliseconds
_FORWARDED_HEADERS = ("Content-Type", "Accept")


class RelayHandler(APIHandler):
    """Forwards one request to the service as this server's user."""

    def initialize(self, service_url: str) -> None:
        self.service_url = service_url

    async def relay(self, path: str) -> None:
        if self.current_user is None:
            raise VideoError(20003, "Log in to this Jupyter server first (the hub's login)")
        hub_token = os.environ.get(HUB_TOKEN_ENV)
        if not hub_token:
            raise VideoError(
                53000, f"{HUB_TOKEN_ENV} is not set: this server was not started by a hub"
            )
        query = self.request.query
        headers = {name: self.request.headers[name] for name in _FORWARDED_HEADERS
                   if name in self.request.headers}
        headers["Authorization"] = f"token {hub_token}"
        method = self.request.method or "GET"
        request = HTTPRequest(
            f"{self.service_url}{path}" + (f"?{query}" if query else ""),
            method=method,
            headers=headers,
            body=self.request.body if method in ("POST", "PUT") else None,
            allow_nonstandard_methods=True,
            request_timeout=RELAY_TIMEOUT,
            follow_redirects=False,
        )
        try:
            response = await AsyncHTTPClient().fetch(request, raise_error=False)
        except (OSError, HTTPClientError) as error:
            raise VideoError(
                53000, f"The hub video service at {self.service_url} cannot be reached: {error}",
                status=502,
            ) from None
        if response.code == 599:
            raise VideoError(
                53000, f"The hub video service at {self.service_url} did not answer: "
                f"{response.error}", status=502,
            )
        self.set_status(response.code)
        self.set_header("Content-Type", response.headers.get("Content-Type", "application/json"))
        self.set_header("Cache-Control", "no-store")
        self.finish(response.body or b"")

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        error = exc if isinstance(exc, VideoError) else VideoError(
            20003 if status_code in (401, 403) else 53000,
            getattr(exc, "log_message", None) or None, status=status_code,
        )
        self.set_status(error.status)
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(json.dumps(error.to_dict()))


class TokenRelayHandler(RelayHandler):
    """``/video/token``: an Access Token from the service, for this server's user."""

    @web.authenticated
    async def get(self) -> None:
        await self.relay("video/token")


class RestRelayHandler(RelayHandler):
    """``/video/v1/...``: the service's Rooms API, as this server's user."""

    # The relay answers 20003 itself (Twilio's body) instead of Jupyter's redirect.
    @allow_unauthenticated
    async def get(self, path: str) -> None:
        await self.relay(f"video/v1/{path}")

    post = delete = get


def handlers(service_url: str) -> list[tuple[str, type[APIHandler], dict[str, str]]]:
    """The relay's routes, for ``VideoApp.initialize_handlers``."""
    arguments = {"service_url": service_url}
    return [
        (r"/video/token/?", TokenRelayHandler, arguments),
        (r"/video/v1/(.*)", RestRelayHandler, arguments),
    ]
