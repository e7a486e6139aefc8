"""``jupyter-video-hub``: the video server as a JupyterHub-managed service.

Run by the hub (``c.JupyterHub.services``), it serves under
``/services/<name>/`` the video handlers and ``/api/status`` only; identity
comes from the hub (Hub OAuth), roles from hub scopes and groups (roles.py),
and it posts activity for users in rooms so the idle culler leaves their
servers alone (activity.py). The hub's ``JUPYTERHUB_*`` variables tell it where
to listen and who it is; every ``VideoApp`` traitlet still applies. The server
is the standalone one (``jupyter video``, server/standalone.py), narrowed the same way.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any
from urllib.parse import urlparse

from tornado import web
from tornado.ioloop import PeriodicCallback
from traitlets import Float, default

from ..classroom.grant import ClassroomVideoGrant
from ..errors import VideoError
from ..server.app import VideoApp
from ..server.standalone import VideoServerApp
from ..server.token import TokenHandler
from ..tokens import VideoGrant
from .activity import HubActivity, users_in_rooms
from .identity import HubIdentityProvider, HubUser
from .roles import HubRoles

EXTENSION_PACKAGE = "jupyter_video.hub"


class HubServerApp(VideoServerApp):
    """The standalone server's narrowed app (only the video handlers and
    ``/api/status``), listening where the hub says, with the hub's identities."""

    name = "jupyter-video-hub"

    @default("identity_provider_class")
    def _default_identity_provider_class(self) -> type[HubIdentityProvider]:
        return HubIdentityProvider

    @default("ip")
    def _default_ip(self) -> str:
        return urlparse(os.environ.get("JUPYTERHUB_SERVICE_URL", "")).hostname or "127.0.0.1"

    @default("port")
    def _default_port(self) -> int:
        return urlparse(os.environ.get("JUPYTERHUB_SERVICE_URL", "")).port or 8890

    @default("base_url")
    def _default_base_url(self) -> str:
        return os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/services/video/")

    def init_server_extensions(self) -> None:
        # Extensions enabled in the environment's config (JupyterLab, terminals)
        # would add their pages and APIs here; only the video service runs.
        self.jpserver_extensions = {EXTENSION_PACKAGE: True}
        super().init_server_extensions()


class HubTokenHandler(TokenHandler):
    """``/video/token`` of the service: for the hub user asking, in a room they may join."""

    identity_from_caller = False
    _grant = ""  # set by get() for granted_room()

    @web.authenticated
    def get(self) -> None:
        user = self.current_user
        if not isinstance(user, HubUser):
            raise web.HTTPError(403, "only hub users get tokens here")
        room = self.get_query_argument("room", "lab").strip()
        context = self.settings["jupyter_video"]
        roles = context.app.roles
        try:
            in_progress = context.registry.find_joinable(room)  # by name or SID
            roles.check_join(user, room, in_progress is not None)
            # Who may not create the room gets a grant for this one by its SID: once it
            # is completed the token joins nothing (53118), and never recreates it.
            self._grant = (
                in_progress.sid
                if in_progress is not None and not roles.may_create(user, room)
                else room
            )
        except VideoError as error:
            self.log.info("GET /video/token for %s -> %s", user.username, error)
            self.set_status(error.status)
            self.set_header("Content-Type", "application/json; charset=utf-8")
            self.finish(json.dumps(error.to_dict()))
            return
        super().get()

    def granted_room(self, room: str) -> str:
        return self._grant

    def video_grant(self, room: str, identity: str) -> VideoGrant:
        # The hub's roles reach the classroom channel in the signed token: the channel
        # sees only the token, and only this service knows the user's scopes and groups.
        user = self.current_user
        moderator = isinstance(user, HubUser) and self.settings["jupyter_video"].app.roles \
            .is_moderator(user)
        if moderator:  # a locked room admits the teacher before their channel opens
            self.settings["jupyter_video_classroom"].grant_moderator(identity)
        return ClassroomVideoGrant(room=room, moderator=moderator)

    def _user_name(self) -> str:
        user = self.current_user
        return user.username if isinstance(user, HubUser) else super()._user_name()


class HubVideoApp(VideoApp):
    """The video server for every user of a hub (``jupyter-video-hub``)."""

    name = "jupyter_video"
    serverapp_class = HubServerApp
    load_other_extensions = False

    activity_interval = Float(
        60.0,
        config=True,
        help="Seconds between posts of hub activity for the users in rooms (the idle "
        "culler's resolution is minutes).",
    )

    @classmethod
    def get_extension_package(cls) -> str:
        return EXTENSION_PACKAGE

    @default("hub_service_url")
    def _default_hub_service_url(self) -> str:
        return ""  # this is the service: it relays to nobody

    def initialize_settings(self) -> None:
        super().initialize_settings()
        try:
            policy = re.compile(self.student_room_policy) if self.student_room_policy else None
        except re.error as error:
            raise ValueError(
                f"VideoApp.student_room_policy is not a regular expression: {error}"
            ) from None
        self.roles = HubRoles(frozenset(self.moderator_groups), policy)
        self.settings["jupyter_video_permissions"] = self.roles.check_rest

    def initialize_handlers(self) -> None:
        # First, so that it answers /video/token instead of the plain handler.
        self.handlers.append((r"/video/token/?", HubTokenHandler))
        super().initialize_handlers()

    async def _start_jupyter_server_extension(self, serverapp: Any) -> None:
        await super()._start_jupyter_server_extension(serverapp)
        hub_auth = serverapp.identity_provider.hub_auth
        self.activity = HubActivity(hub_auth.api_url, hub_auth.api_token)
        self._activity_timer = PeriodicCallback(self._post_activity,
                                                self.activity_interval * 1000)
        self._activity_timer.start()
        self.log.info("jupyter-video-hub: rooms at %s (REST %svideo/v1)",
                      serverapp.connection_url, serverapp.connection_url)

    async def _post_activity(self) -> None:
        await self.activity.post(users_in_rooms(self.context.registry))

    async def stop_extension(self) -> None:
        timer = getattr(self, "_activity_timer", None)
        if timer is not None:
            timer.stop()
        await super().stop_extension()


def main(argv: list[str] | None = None) -> None:
    """``jupyter-video-hub [--VideoApp.trait=value ...]``, as the hub's service command."""
    HubVideoApp.launch_instance(argv)
