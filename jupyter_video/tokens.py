"""Access Tokens: Twilio's JWT format, minted and verified.

A token is a JWT signed HS256 with an API key secret, exactly as Twilio's helper
library makes it (``twilio/jwt/access_token/__init__.py``): header
``{"alg": "HS256", "cty": "twilio-fpa;v=1", "typ": "JWT"}`` (plus ``twr`` for a
region), claims ``jti``, ``grants``, ``iss`` (API key SID), ``exp``, ``nbf`` and
``sub`` (account SID). Tokens minted here and tokens minted by Twilio's library
with the same key are interchangeable.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, ClassVar, TypeGuard

import jwt

from .errors import AccessTokenError

__all__ = ["ALGORITHM", "CONTENT_TYPE", "AccessToken", "TokenClaims", "VideoGrant", "verify_token"]

ALGORITHM = "HS256"
CONTENT_TYPE = "twilio-fpa;v=1"

_SEGMENT = re.compile(r"[A-Za-z0-9_-]*")
_MINT_HINT = (
    "mint a new one with AccessToken (or Twilio's helper library) and this server's API key"
)


@dataclass(frozen=True)
class VideoGrant:
    """Permission to connect to Video Rooms: to ``room`` only, or to any Room when None."""

    room: str | None = None

    key: ClassVar[str] = "video"

    def to_payload(self) -> dict[str, str]:
        """The grant's claim, as Twilio writes it (``{}`` when no room)."""
        return {"room": self.room} if self.room else {}


class AccessToken:
    """A Twilio Access Token for one identity, signed with an API key.

    ``nbf`` defaults to the time of minting (as in Twilio's library); ``exp`` is
    ``valid_until`` when given, else minting time + ``ttl`` seconds.
    """

    def __init__(
        self,
        account_sid: str,
        api_key_sid: str,
        api_key_secret: str,
        identity: str | None = None,
        ttl: int = 3600,
        nbf: int | None = None,
        valid_until: int | None = None,
        region: str | None = None,
    ) -> None:
        self.account_sid = account_sid
        self.api_key_sid = api_key_sid
        self.api_key_secret = api_key_secret
        self.identity = identity
        self.ttl = ttl
        self.nbf = nbf
        self.valid_until = valid_until
        self.region = region
        self.grants: list[VideoGrant] = []

    def add_grant(self, grant: VideoGrant) -> None:
        """Add a grant (only ``VideoGrant`` means anything to this server)."""
        if not isinstance(grant, VideoGrant):
            raise TypeError(f"expected a VideoGrant, got {type(grant).__name__}")
        self.grants.append(grant)

    @property
    def headers(self) -> dict[str, str]:
        """The JOSE header (PyJWT sorts its keys when encoding, as it does for Twilio)."""
        headers = {"cty": CONTENT_TYPE}
        if self.region:
            headers["twr"] = self.region
        headers["typ"] = "JWT"
        headers["alg"] = ALGORITHM
        return headers

    def payload(self, now: int | None = None) -> dict[str, Any]:
        """The claims, in the key order Twilio's library writes them."""
        now = int(time.time()) if now is None else now
        grants: dict[str, Any] = {grant.key: grant.to_payload() for grant in self.grants}
        if self.identity:
            grants["identity"] = self.identity
        return {
            "jti": f"{self.api_key_sid}-{now}",
            "grants": grants,
            "iss": self.api_key_sid,
            "exp": self.valid_until if self.valid_until else now + self.ttl,
            "nbf": self.nbf if self.nbf is not None else now,
            "sub": self.account_sid,
        }

    def to_jwt(self) -> str:
        """The signed token string."""
        if not self.api_key_secret:
            raise ValueError("AccessToken needs an API key secret to sign with")
        return jwt.encode(
            self.payload(), self.api_key_secret, algorithm=ALGORITHM, headers=self.headers
        )

    def __str__(self) -> str:
        return self.to_jwt()


@dataclass(frozen=True)
class TokenClaims:
    """What a verified Access Token grants: who, where, signed by which key, until when."""

    identity: str
    room: str | None
    api_key_sid: str
    account_sid: str
    expires_at: int
    """Unix seconds (the ``exp`` claim)."""
    jti: str


def verify_token(
    token: str,
    *,
    account_sid: str,
    api_keys: Mapping[str, str],
    leeway: int = 0,
    now: float | None = None,
) -> TokenClaims:
    """Check an Access Token against this server's account and API keys.

    ``api_keys`` maps API key SID to secret. ``leeway`` (seconds) tolerates clock
    skew on ``exp`` and ``nbf``. Raises ``AccessTokenError`` with Twilio's code
    (20101-20107) and a message saying what to fix.
    """
    header, payload = _decode_segments(token)
    _check_header(header)
    api_key_sid = _check_issuer_and_subject(payload, account_sid, api_keys)
    _check_signature(token, api_keys[api_key_sid])
    now = time.time() if now is None else now
    expires_at = _check_lifetime(payload, now, leeway)
    identity, room = _check_grants(payload)
    return TokenClaims(
        identity=identity,
        room=room,
        api_key_sid=api_key_sid,
        account_sid=account_sid,
        expires_at=int(expires_at),
        jti=payload["jti"],
    )


def _decode_segments(token: object) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and payload of a compact JWS, unverified; 20101 if it is not one."""
    if not isinstance(token, str) or not token:
        raise AccessTokenError(20101, "Access Token is empty or not a string; pass the JWT string")
    segments = token.split(".")
    if len(segments) != 3:
        raise AccessTokenError(
            20101,
            f"Access Token is not a JWT: it has {len(segments)} dot-separated segment(s), "
            f"a JWT has 3 (header.payload.signature); pass the token string unmodified",
        )
    header = _decode_json_object(segments[0], "header")
    payload = _decode_json_object(segments[1], "payload")
    if not isinstance(payload.get("jti"), str) or not payload["jti"]:
        raise AccessTokenError(20101, f"Access Token has no 'jti' claim; {_MINT_HINT}")
    if not _SEGMENT.fullmatch(segments[2]):
        raise AccessTokenError(20101, "Access Token signature is not base64url; pass it unmodified")
    return header, payload


def _decode_json_object(segment: str, name: str) -> dict[str, Any]:
    if not segment or not _SEGMENT.fullmatch(segment):
        raise AccessTokenError(
            20101, f"Access Token {name} is not base64url; pass the token string unmodified"
        )
    try:
        raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
        value = json.loads(raw)
    except (binascii.Error, ValueError):
        raise AccessTokenError(
            20101, f"Access Token {name} is not base64url-encoded JSON; {_MINT_HINT}"
        ) from None
    if not isinstance(value, dict):
        raise AccessTokenError(20101, f"Access Token {name} is not a JSON object; {_MINT_HINT}")
    return value


def _check_header(header: Mapping[str, Any]) -> None:
    """20102 unless the header is Twilio's: HS256, typ JWT, cty twilio-fpa;v=1."""
    alg = header.get("alg")
    if alg != ALGORITHM:
        # Refused before any key is touched: "none" and asymmetric algorithms
        # are the classic JWT confusion attacks (RFC 8725 section 2.1).
        raise AccessTokenError(
            20102, f"Access Token algorithm {alg!r} is not accepted; sign it with {ALGORITHM}"
        )
    if header.get("typ") != "JWT":
        raise AccessTokenError(
            20102, f"Access Token header 'typ' is {header.get('typ')!r}; it must be 'JWT'"
        )
    if header.get("cty") != CONTENT_TYPE:
        raise AccessTokenError(
            20102,
            f"Access Token header 'cty' is {header.get('cty')!r}; it must be {CONTENT_TYPE!r} "
            f"({_MINT_HINT})",
        )
    if "crit" in header or "b64" in header:
        raise AccessTokenError(
            20102, "Access Token header carries JWS extensions ('crit'/'b64'); remove them"
        )


def _check_issuer_and_subject(
    payload: Mapping[str, Any], account_sid: str, api_keys: Mapping[str, str]
) -> str:
    """The issuing API key SID; 20103 if unknown or the subject is another account."""
    issuer = payload.get("iss")
    if not isinstance(issuer, str) or issuer not in api_keys:
        raise AccessTokenError(
            20103,
            f"Access Token issuer {issuer!r} is not an API key of this server; "
            f"sign it with this server's API key SID and secret",
        )
    subject = payload.get("sub")
    if subject != account_sid:
        raise AccessTokenError(
            20103,
            f"Access Token subject {subject!r} is not this server's account SID {account_sid}; "
            f"mint it with that account SID",
        )
    return issuer


def _check_signature(token: str, secret: str) -> None:
    """20107 unless the HS256 signature matches ``secret``; the algorithm is fixed, not read."""
    try:
        jwt.api_jws.PyJWS().decode_complete(token, secret, algorithms=[ALGORITHM])
    except jwt.InvalidSignatureError:
        raise AccessTokenError(
            20107,
            "Access Token signature does not match the API key's secret; "
            "sign it with the secret of the API key named in 'iss'",
        ) from None
    except jwt.InvalidTokenError as error:
        raise AccessTokenError(
            20101, f"Access Token is malformed ({error}); {_MINT_HINT}"
        ) from None


def _check_lifetime(payload: Mapping[str, Any], now: float, leeway: int) -> float:
    """The expiry time; 20104 if expired or missing, 20105 if not yet valid."""
    exp = payload.get("exp")
    if not _is_numeric_date(exp):
        raise AccessTokenError(
            20104, f"Access Token 'exp' is {exp!r}, not a time in Unix seconds; {_MINT_HINT}"
        )
    if now >= exp + leeway:
        raise AccessTokenError(20104, f"Access Token expired at {_iso(exp)}; mint a new one")
    nbf = payload.get("nbf")
    if nbf is not None:
        if not _is_numeric_date(nbf):
            raise AccessTokenError(
                20105, f"Access Token 'nbf' is {nbf!r}, not a time in Unix seconds; {_MINT_HINT}"
            )
        if nbf > now + leeway:
            raise AccessTokenError(
                20105,
                f"Access Token is not valid before {_iso(nbf)}; use it then, or mint it with an "
                f"earlier nbf (check this machine's clock)",
            )
    return float(exp)


def _check_grants(payload: Mapping[str, Any]) -> tuple[str, str | None]:
    """Identity and room from the grants; 20106 if they do not give Video access."""
    grants = payload.get("grants")
    if not isinstance(grants, dict):
        raise AccessTokenError(20106, f"Access Token has no 'grants' object; {_MINT_HINT}")
    identity = grants.get("identity")
    if not isinstance(identity, str) or not identity:
        raise AccessTokenError(
            20106, "Access Token has no identity; mint it with a non-empty identity"
        )
    video = grants.get("video")
    if not isinstance(video, dict):
        raise AccessTokenError(
            20106, "Access Token has no Video grant; add a VideoGrant before minting it"
        )
    room = video.get("room")
    if room is not None and not isinstance(room, str):
        raise AccessTokenError(
            20106, f"Access Token Video grant 'room' is {room!r}; it must be a Room name (string)"
        )
    return identity, room or None


def _is_numeric_date(value: object) -> TypeGuard[float]:
    # RFC 7519 NumericDate: integer or not; a float ``valid_until`` passed to
    # Twilio's library is written as-is, so both are accepted.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return math.isfinite(value)


def _iso(timestamp: float) -> str:
    try:
        return datetime.fromtimestamp(timestamp, tz=timezone.utc).isoformat()
    except (OverflowError, OSError, ValueError):
        return f"{timestamp} (Unix seconds)"
