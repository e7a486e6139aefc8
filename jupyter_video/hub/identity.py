"""Who is asking: the hub user behind a request to the service, by Hub OAuth.

A request carries a hub token (``Authorization: token ...``: a user's server
relaying, a kernel, a script) or the service's OAuth cookie (a browser that
visited the service and went through ``/hub/api/oauth2/authorize``). Either way
the hub says whose it is and with which scopes; the caller never names itself.
"""

from __future__ import annotations

import dataclasses
from typing import Any
from unittest import mock

from jupyter_server.auth.decorator import allow_unauthenticated
from jupyter_server.auth.identity import IdentityProvider, User
from jupyter_server.base.handlers import JupyterHandler
from jupyterhub.services.auth import HubOAuth, HubOAuthCallbackHandler
from tornado import web
from tornado.httputil import url_concat
from traitlets import Instance, default


@dataclasses.dataclass
class HubUser(User):
    """A Jupyter user that is a hub user, with the groups and scopes the hub gave."""

    groups: frozenset[str] = frozenset()
    scopes: frozenset[str] = frozenset()

    @classmethod
    def from_model(cls, model: dict[str, Any]) -> HubUser:
        return cls(
            username=model["name"],
            groups=frozenset(model.get("groups") or ()),
            scopes=frozenset(model.get("scopes") or ()),
        )


class ServiceOAuth(HubOAuth):
    """HubOAuth, leaving jupyter_server's XSRF check in place."""

    def _patch_xsrf(self, handler: web.RequestHandler) -> None:
        # HubAuth would replace jupyter_server's check class-wide with one that
        # lacks its guard (check only once the user, token or cookie, is known),
        # so tornado's early check would refuse every token-authenticated POST.
        return None


class OAuthCallbackHandler(HubOAuthCallbackHandler):
    """``{prefix}oauth_callback``: finishes the hub's OAuth and sets the service's cookie."""

    def initialize(self, hub_auth: HubOAuth) -> None:
        self.hub_auth = hub_auth

    @allow_unauthenticated  # it is where an unauthenticated browser comes back to
    async def get(self) -> None:
        await super().get()


class LoginHandler(JupyterHandler):
    """``{prefix}login?next=...``: a browser signs in to the service through the hub's
    OAuth (it needs no confirmation page: ``oauth_no_confirm``), then goes to ``next``."""

    @web.authenticated
    def get(self) -> None:
        target = self.get_argument("next", "")
        # Only somewhere in this service: an open redirect would pass the login on.
        if not target.startswith(self.base_url) or target.startswith("//"):
            target = self.base_url + "api/status"
        self.redirect(target)


class HubIdentityProvider(IdentityProvider):
    """jupyter_server's identity from the hub (``HubOAuth``), for the video service."""

    hub_auth = Instance(HubOAuth)

    @default("hub_auth")
    def _default_hub_auth(self) -> HubOAuth:
        # HubOAuth reads the hub's URL, its API token and the access scope
        # (access:services!service=<name>) from the JUPYTERHUB_* variables the hub sets.
        return ServiceOAuth(parent=self)

    @property
    def token(self) -> str:  # type: ignore[override]
        return self.hub_auth.api_token

    async def get_user(self, handler: web.RequestHandler) -> HubUser | None:
        if hasattr(handler, "_video_hub_user"):
            return handler._video_hub_user
        self._redirect_logins_to_hub(handler)
        model = await self.hub_auth.get_user(handler, sync=False)
        user = None
        if model is not None:
            if self.hub_auth.check_scopes(self.hub_auth.access_scopes, model):
                user = HubUser.from_model(model)
            else:
                # Logged in to the hub but not granted this service: no login loop.
                self.log.warning("hub %s %s may not use this service (needs %s)",
                                 model.get("kind", "user"), model["name"],
                                 " or ".join(sorted(self.hub_auth.access_scopes)))
                name = model["name"]

                def refuse(*args: Any, **kwargs: Any) -> None:
                    raise web.HTTPError(403, f"{name} may not use this service")

                handler.redirect = refuse  # type: ignore[method-assign]
        handler._video_hub_user = user  # type: ignore[attr-defined]
        return user

    def _redirect_logins_to_hub(self, handler: web.RequestHandler) -> None:
        """A browser without a session goes through the hub's OAuth, then comes back."""
        original = handler.get_login_url

        def get_login_url() -> str:
            # APIHandler's get_login_url raises 403 instead: keep that for API calls.
            with mock.patch.dict(handler.application.settings,
                                 {"login_url": self.hub_auth.login_url}):
                login_url = original()
            state = self.hub_auth.set_state_cookie(handler, next_url=handler.request.uri)
            return url_concat(login_url, {"state": state})

        handler.get_login_url = get_login_url  # type: ignore[method-assign]

    def is_token_authenticated(self, handler: web.RequestHandler) -> bool:
        # HubAuth marks requests that carried a token: those need no XSRF check.
        return bool(getattr(handler, "_token_authenticated", False))

    def get_handlers(self) -> list[tuple[str, object]]:
        callback: Any = ("/oauth_callback", OAuthCallbackHandler, {"hub_auth": self.hub_auth})
        return [callback, ("/login", LoginHandler)]

    @property
    def login_available(self) -> bool:
        return True

    @property
    def auth_enabled(self) -> bool:
        return True

    def validate_security(self, app: Any, ssl_options: dict[str, Any] | None = None) -> None:
        return None  # no Jupyter token or password: the hub authenticates
