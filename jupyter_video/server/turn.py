"""ICE servers for participants: fixed STUN/TURN entries and TURN REST API credentials.

The TURN REST API (draft-uberti-behave-turn-rest-00, what coturn checks with
``use-auth-secret`` / ``static-auth-secret``) needs no per-user state on the
TURN server: the username is ``<expiry unix time>:<identity>`` (the identity's
characters other than letters, digits, ``.``, ``_`` and ``-`` as ``_``) and the password
is ``base64(HMAC-SHA1(secret, username))``. coturn recomputes it and refuses it
after the expiry. Here the expiry is the Access Token's: a participant's TURN
credential lasts exactly as long as its right to join.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

ICE_URL_SCHEMES = ("stun:", "stuns:", "turn:", "turns:")
_ICE_SERVER_KEYS = {"urls", "username", "credential"}


# coturn refuses usernames with spaces, quotes and the like ("check_stun_auth: wrong
# username"), and Twilio identities may hold any of them ("Ada Lovelace (2)").
_UNSAFE_IN_USERNAME = re.compile(r"[^A-Za-z0-9._-]")


def turn_username_part(identity: str) -> str:
    """``identity`` as coturn accepts it after ``<expiry>:``: other characters become ``_``."""
    return _UNSAFE_IN_USERNAME.sub("_", identity) or "_"


def turn_rest_credential(
    secret: str, identity: str, ttl: float, now: float | None = None
) -> tuple[str, str]:
    """``(username, credential)`` that coturn's ``use-auth-secret`` accepts for ``ttl`` s."""
    expiry = int((time.time() if now is None else now) + ttl)
    username = f"{expiry}:{turn_username_part(identity)}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode("ascii")


def check_ice_server(entry: Mapping[str, Any], where: str) -> dict[str, Any]:
    """An RTCIceServer dict (``urls`` a list), or ValueError saying what to fix."""
    unknown = sorted(set(entry) - _ICE_SERVER_KEYS)
    if unknown:
        raise ValueError(
            f"{where} has unknown key(s) {', '.join(unknown)}; an ICE server has "
            "urls, username and credential"
        )
    urls = entry.get("urls")
    url_list = [urls] if isinstance(urls, str) else urls
    if not url_list or not all(isinstance(url, str) for url in url_list):
        raise ValueError(f"{where} needs urls: a 'turn:host:3478' URL or a list of them")
    check_ice_urls(url_list, where)
    server: dict[str, Any] = {"urls": list(url_list)}
    for key in ("username", "credential"):
        if entry.get(key) is not None:
            if not isinstance(entry[key], str):
                raise ValueError(f"{where}: {key} must be a string")
            server[key] = entry[key]
    if any(url.startswith("turn") for url in url_list) and len(server) != 3:
        raise ValueError(
            f"{where} is a TURN server: give it a username and a credential "
            "(or use VideoApp.turn_secret for coturn's use-auth-secret)"
        )
    return server


def check_ice_urls(urls: Sequence[str], where: str) -> None:
    for url in urls:
        if not url.startswith(ICE_URL_SCHEMES):
            raise ValueError(
                f"{where}: {url!r} is not an ICE server URL; write it as "
                "stun:host:3478, turn:host:3478?transport=udp or turns:host:5349"
            )


@dataclass(frozen=True)
class IceServers:
    """What ``/video/token`` and the signaling ``iced`` answer hand a participant."""

    fixed: list[dict[str, Any]] = field(default_factory=list)
    """``VideoApp.ice_servers``, handed out as they are."""
    turn_secret: str | None = None
    """coturn's ``static-auth-secret``: ``turn_urls`` get TURN REST API credentials."""
    turn_urls: list[str] = field(default_factory=list)

    @classmethod
    def from_settings(
        cls,
        ice_servers: Sequence[Mapping[str, Any]],
        turn_secret: str | None,
        turn_urls: Sequence[str],
    ) -> IceServers:
        """Checked settings, or ValueError naming the traitlet to fix."""
        fixed = [
            check_ice_server(entry, f"VideoApp.ice_servers[{index}]")
            for index, entry in enumerate(ice_servers)
        ]
        if bool(turn_secret) != bool(turn_urls):
            raise ValueError(
                "VideoApp.turn_secret and VideoApp.turn_urls go together: the secret is "
                "coturn's static-auth-secret, the URLs (turn:host:3478) where it runs"
            )
        check_ice_urls(turn_urls, "VideoApp.turn_urls")
        return cls(fixed, turn_secret or None, list(turn_urls))

    def for_identity(self, identity: str, ttl: float) -> list[dict[str, Any]]:
        """RTCIceServer dicts for ``identity``; TURN credentials valid ``ttl`` seconds."""
        servers = [dict(server) for server in self.fixed]
        if self.turn_secret:
            username, credential = turn_rest_credential(self.turn_secret, identity, ttl)
            servers.append(
                {"urls": list(self.turn_urls), "username": username, "credential": credential}
            )
        return servers
