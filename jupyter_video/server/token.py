"""``GET /video/token``: an Access Token for the page's Jupyter user.

The widgets' browser half asks here with the page's own Jupyter session, so the
kernel never holds a secret. Query: ``room`` (default ``lab``) and optionally
``identity`` (a display name; made unique among the room's participants, else the
Jupyter user's name is used) and ``type`` (a room type: the room is created with it
when no room of that name is in progress; one in progress keeps its own). Reply:
``{"token", "identity", "room", "ice_servers", "ws_server", "media_server",
"rest_base", "media_transport", "room_type"}``: ``ice_servers`` being ``VideoApp.ice_servers``
and, with ``VideoApp.turn_secret``, TURN REST API credentials for
``VideoApp.turn_urls`` that last as long as the token; the three URLs absolute, so
a page or kernel that asked a relay (a hub user's server, see jupyter_video.hub)
connects where the room is; ``media_transport`` ``auto``, ``webrtc`` or ``websocket``
(see :func:`.media_socket.media_transport`).
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from jupyter_server.base.handlers import APIHandler
from tornado import web

from ..errors import VideoError
from ..model.room import check_room_type
from ..tokens import AccessToken, VideoGrant
from .media_socket import media_transport

TOKEN_TTL = 4 * 3600  # seconds; a token is only checked when joining and on reconnects
RESERVATION_SECONDS = 60.0  # an identity just handed out stays taken this long
MAX_NAME = 128


class TokenHandler(APIHandler):
    """Mints a token for one room, signed with this server's API key."""

    # (room name, identity) -> monotonic time until which it is reserved: two tabs
    # asking at once must not both get "alice" and push each other out (53205).
    _reserved: dict[tuple[str, str], float] = {}
    # The hub service names participants after the hub user, whatever is asked.
    identity_from_caller = True

    @web.authenticated
    def get(self) -> None:
        room = self.get_query_argument("room", "lab").strip()
        if not room or len(room) > MAX_NAME:
            raise web.HTTPError(400, f"room must be 1 to {MAX_NAME} characters")
        requested = (self.get_query_argument("identity", "") or "").strip()[:MAX_NAME]
        if not self.identity_from_caller:
            requested = ""
        identity = self._unique_identity(room, requested or self._user_name())
        context = self.settings["jupyter_video"]
        try:
            room_type = self._room_type(room, self.get_query_argument("type", ""))
        except VideoError as error:
            self.set_status(error.status)
            self.set_header("Content-Type", "application/json; charset=utf-8")
            self.finish(json.dumps(error.to_dict()))
            return
        credentials = context.credentials
        token = AccessToken(
            credentials.account_sid,
            credentials.api_key_sid,
            credentials.api_key_secret,
            identity=identity,
            ttl=TOKEN_TTL,
        )
        token.add_grant(self.video_grant(self.granted_room(room), identity))
        self.set_header("Cache-Control", "no-store")
        ice_servers = context.ice_servers.for_identity(identity, TOKEN_TTL)
        self.finish(
            json.dumps(
                {
                    "token": token.to_jwt(),
                    "identity": identity,
                    "room": room,
                    "ice_servers": ice_servers,
                    "ws_server": self._absolute("video/signaling", websocket=True),
                    "media_server": self._absolute("video/media", websocket=True),
                    "rest_base": self._absolute("video/v1"),
                    "media_transport": media_transport(context.app.media_transport, os.environ),
                    "room_type": room_type,
                }
            )
        )

    def _room_type(self, room: str, room_type: str) -> str:
        """The type of the room the token joins. ``RoomWidget(type=...)``: the room is
        created with that type unless one is in progress (whoever created it decided);
        without a type, a room not in progress will be created on connect with the
        server's default type."""
        registry = self.settings["jupyter_video"].registry
        wanted = check_room_type(room_type) if room_type else None
        try:
            in_progress = registry.find_joinable(room)
        except VideoError:  # a SID of no room in progress: connecting will say so
            if wanted is not None:
                raise
            return str(registry.defaults.room_type.value)
        if in_progress is None and wanted is not None:
            try:
                in_progress = registry.create_room(unique_name=room, room_type=wanted)
            except VideoError as error:
                if error.code != 53113:  # created meanwhile: join it
                    raise
                in_progress = registry.find_joinable(room)
        record = in_progress.type if in_progress is not None else registry.defaults.room_type
        return str(record.value)

    def video_grant(self, room: str, identity: str) -> VideoGrant:
        """The token's Video grant (the hub service's says whether a teacher moderates)."""
        return VideoGrant(room=room)

    def granted_room(self, room: str) -> str:
        """What the token's VideoGrant names: the room asked for (a name or a SID)."""
        return room

    def _absolute(self, path: str, websocket: bool = False) -> str:
        scheme = self.request.protocol
        if websocket:
            scheme = "wss" if scheme == "https" else "ws"
        return f"{scheme}://{self.request.host}{self.base_url}{path}"

    def _user_name(self) -> str:
        user: Any = self.current_user
        for attribute in ("display_name", "name", "username"):
            value = getattr(user, attribute, None)
            if isinstance(value, str) and value.strip():
                return value.strip()[:MAX_NAME]
        return "jupyter"

    def _unique_identity(self, room: str, wanted: str) -> str:
        now = time.monotonic()
        reserved = TokenHandler._reserved
        for key in [key for key, until in reserved.items() if until <= now]:
            del reserved[key]
        taken = {identity for (name, identity) in reserved if name == room}
        registry = self.settings["jupyter_video"].registry
        in_progress = registry.find_in_progress(room)
        if in_progress is not None:
            taken |= {p.identity for p in registry.connected_participants(in_progress.sid)}
        identity, number = wanted, 1
        while identity in taken:
            number += 1
            identity = f"{wanted} ({number})"
        reserved[(room, identity)] = now + RESERVATION_SECONDS
        return identity


handlers: list[tuple[str, type[APIHandler]]] = [(r"/video/token/?", TokenHandler)]
