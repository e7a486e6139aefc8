"""Hub activity: a user in a room is active, so the idle culler keeps their server.

jupyterhub-idle-culler culls servers whose ``last_activity`` is old. A student
watching a lecture types nothing into their own server, so the service posts
activity for every hub user with a participant connected, as single-user
servers do for themselves (``POST /hub/api/users/{name}/activity``; the
service's role needs the ``users:activity`` scope).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable
from datetime import datetime, timezone
from urllib.parse import quote

from tornado.httpclient import AsyncHTTPClient, HTTPRequest

from ..model import RoomStatus
from ..server.registry import RoomRegistry

log = logging.getLogger(__name__)

_NUMBERED = re.compile(r"(.+) \(\d+\)")  # a second tab of "alice" is "alice (2)"


def hub_user_of(identity: str) -> str:
    """The hub user a participant identity the service gave belongs to."""
    match = _NUMBERED.fullmatch(identity)
    return match.group(1) if match else identity


def users_in_rooms(registry: RoomRegistry) -> set[str]:
    """Hub users with a participant connected (or reconnecting) in a room in progress."""
    users: set[str] = set()
    offset = 0
    while True:
        page = registry.list_rooms(status=RoomStatus.IN_PROGRESS, offset=offset, limit=200)
        for room in page.items:
            users |= {hub_user_of(p.identity) for p in registry.connected_participants(room.sid)}
        offset += len(page.items)
        if not page.items or offset >= page.total:
            return users


class HubActivity:
    """Posts ``last_activity`` to the hub for the users in rooms."""

    def __init__(self, hub_api_url: str, api_token: str) -> None:
        self.hub_api_url = hub_api_url.rstrip("/")
        self.api_token = api_token
        self.posted: dict[str, datetime] = {}  # user -> last time the hub accepted it

    async def post(self, users: Iterable[str]) -> None:
        now = datetime.now(timezone.utc)
        stamp = now.isoformat().replace("+00:00", "Z")
        for user in sorted(users):
            # The default server's activity is what the culler looks at; a user
            # with no server (joined from elsewhere) gets the user's own only.
            bodies: tuple[dict[str, object], ...] = (
                {"last_activity": stamp, "servers": {"": {"last_activity": stamp}}},
                {"last_activity": stamp},
            )
            for body in bodies:
                code = await self._send(user, body)
                if code < 300:
                    self.posted[user] = now
                    break
                if code != 400:
                    log.info("hub refused activity for %s (HTTP %s)", user, code)
                    break

    async def _send(self, user: str, body: dict[str, object]) -> int:
        request = HTTPRequest(
            f"{self.hub_api_url}/users/{quote(user, safe='')}/activity",
            method="POST",
            headers={"Authorization": f"token {self.api_token}",
                     "Content-Type": "application/json"},
            body=json.dumps(body),
            request_timeout=10.0,
        )
        try:
            response = await AsyncHTTPClient().fetch(request, raise_error=False)
        except OSError as error:
            log.warning("cannot post activity to the hub: %s", error)
            return 599
        return response.code
