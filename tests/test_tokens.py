"""Access Tokens: Twilio's format byte for byte, and every Twilio rejection code."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import jwt
import pytest
from twilio.jwt.access_token import AccessToken as TwilioAccessToken
from twilio.jwt.access_token.grants import VideoGrant as TwilioVideoGrant

from jupyter_video.errors import AccessTokenError
from jupyter_video.tokens import AccessToken, TokenClaims, VideoGrant, verify_token

ACCOUNT_SID = "AC" + "1" * 32
API_KEY_SID = "SK" + "2" * 32
API_KEY_SECRET = "s3cr3t-s3cr3t-s3cr3t-s3cr3t-s3cr"
OTHER_KEY_SID = "SK" + "3" * 32
OTHER_KEY_SECRET = "another-secret-another-secret-xx"
API_KEYS = {API_KEY_SID: API_KEY_SECRET, OTHER_KEY_SID: OTHER_KEY_SECRET}
NOW = 1_767_225_600  # 2026-01-01T00:00:00Z


@pytest.fixture
def frozen_time(monkeypatch: pytest.MonkeyPatch) -> int:
    """Both libraries read ``time.time()``; pin it so their outputs can be compared."""
    monkeypatch.setattr(time, "time", lambda: float(NOW))
    return NOW


def ours(identity: str | None = "alice", room: str | None = "lab", **kwargs: Any) -> str:
    token = AccessToken(ACCOUNT_SID, API_KEY_SID, API_KEY_SECRET, identity=identity, **kwargs)
    token.add_grant(VideoGrant(room=room))
    return token.to_jwt()


def twilios(identity: str | None = "alice", room: str | None = "lab", **kwargs: Any) -> str:
    token = TwilioAccessToken(
        ACCOUNT_SID, API_KEY_SID, API_KEY_SECRET, identity=identity, **kwargs
    )
    token.add_grant(TwilioVideoGrant(room=room))
    return token.to_jwt()


def verify(token: str, **kwargs: Any) -> TokenClaims:
    kwargs.setdefault("now", NOW + 10)
    return verify_token(token, account_sid=ACCOUNT_SID, api_keys=API_KEYS, **kwargs)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def craft(
    header: Any = None,
    payload: Any = None,
    secret: str = API_KEY_SECRET,
    signature: str | None = None,
) -> str:
    """A token with arbitrary header and payload, HMAC-SHA256 signed unless told otherwise."""
    if header is None:
        header = {"alg": "HS256", "cty": "twilio-fpa;v=1", "typ": "JWT"}
    if payload is None:
        payload = claims()
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    if signature is None:
        digest = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
        signature = b64(digest)
    return f"{signing_input}.{signature}"


def claims(**changes: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "jti": f"{API_KEY_SID}-{NOW}",
        "grants": {"video": {"room": "lab"}, "identity": "alice"},
        "iss": API_KEY_SID,
        "exp": NOW + 3600,
        "nbf": NOW,
        "sub": ACCOUNT_SID,
    }
    payload.update(changes)
    return {key: value for key, value in payload.items() if value is not ...}


def decode(token: str) -> dict[str, Any]:
    """Plain PyJWT, signature checked; the pinned clock is in the past, so exp is not."""
    return jwt.decode(
        token, API_KEY_SECRET, algorithms=["HS256"], options={"verify_exp": False}
    )


def code_of(token: str, **kwargs: Any) -> int:
    with pytest.raises(AccessTokenError) as raised:
        verify(token, **kwargs)
    return raised.value.code


# Minting: identical to Twilio's helper library


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"room": None},
        {"region": "us1"},
        {"ttl": 600},
        {"valid_until": NOW + 120},
        {"nbf": NOW - 30},
        {"identity": "a user with spaces and ünïcode"},
    ],
)
def test_minted_token_is_the_same_string_twilio_mints(
    frozen_time: int, options: dict[str, Any]
) -> None:
    assert ours(**options) == twilios(**options)


def test_minted_token_has_twilios_header_and_claims(frozen_time: int) -> None:
    token = ours(region="ie1")

    assert jwt.get_unverified_header(token) == {
        "alg": "HS256",
        "cty": "twilio-fpa;v=1",
        "typ": "JWT",
        "twr": "ie1",
    }
    assert decode(token) == {
        "jti": f"{API_KEY_SID}-{NOW}",
        "grants": {"identity": "alice", "video": {"room": "lab"}},
        "iss": API_KEY_SID,
        "sub": ACCOUNT_SID,
        "exp": NOW + 3600,
        "nbf": NOW,
    }


def test_video_grant_without_room_is_an_empty_object(frozen_time: int) -> None:
    payload = decode(ours(room=None))

    assert payload["grants"]["video"] == {}


def test_twilio_decodes_our_token_as_its_own() -> None:
    decoded = TwilioAccessToken.from_jwt(ours(), API_KEY_SECRET)

    assert decoded.payload["grants"] == {"identity": "alice", "video": {"room": "lab"}}
    assert decoded.headers["cty"] == "twilio-fpa;v=1"


def test_minting_without_a_secret_is_refused() -> None:
    token = AccessToken(ACCOUNT_SID, API_KEY_SID, "", identity="alice")

    with pytest.raises(ValueError, match="secret"):
        token.to_jwt()


# Verifying


def test_our_token_verifies_to_its_claims(frozen_time: int) -> None:
    assert verify(ours()) == TokenClaims(
        identity="alice",
        room="lab",
        api_key_sid=API_KEY_SID,
        account_sid=ACCOUNT_SID,
        expires_at=NOW + 3600,
        jti=f"{API_KEY_SID}-{NOW}",
    )


def test_token_minted_by_twilios_library_verifies(frozen_time: int) -> None:
    claims = verify(twilios(identity="bob", room="standup", ttl=120))

    assert (claims.identity, claims.room, claims.expires_at) == ("bob", "standup", NOW + 120)
    assert claims.api_key_sid == API_KEY_SID


def test_token_without_room_grants_any_room(frozen_time: int) -> None:
    assert verify(ours(room=None)).room is None
    assert verify(twilios(room=None)).room is None


def test_token_signed_with_any_of_the_servers_keys_verifies() -> None:
    token = craft(payload=claims(iss=OTHER_KEY_SID), secret=OTHER_KEY_SECRET)

    assert verify(token).api_key_sid == OTHER_KEY_SID


def test_long_identity_is_returned_for_signaling_to_judge() -> None:
    identity = "x" * 300
    token = craft(payload=claims(grants={"identity": identity, "video": {}}))

    assert verify(token).identity == identity


def test_verification_uses_the_wall_clock_by_default() -> None:
    token = ours()

    assert verify_token(token, account_sid=ACCOUNT_SID, api_keys=API_KEYS).identity == "alice"


# 20101: not a JWT


@pytest.mark.parametrize(
    "token",
    [
        "",
        "garbage",
        "not a token at all",
        "a.b",
        "a.b.c.d",
        "header.payload.signature",
        "!!!.???.###",
        f"{b64(b'[1, 2]')}.{b64(b'{}')}.c2ln",
        f"{b64(b'{}')}.{b64(b'not json')}.c2ln",
        f"{b64(json.dumps({'alg': 'HS256', 'typ': 'JWT', 'cty': 'twilio-fpa;v=1'}).encode())}..x",
    ],
)
def test_malformed_token_is_invalid_20101(token: str) -> None:
    assert code_of(token) == 20101


def test_token_with_wrong_segment_count_says_how_many_it_has() -> None:
    with pytest.raises(AccessTokenError, match="2 dot-separated"):
        verify(ours().rsplit(".", 1)[0])


def test_token_that_is_not_a_string_is_invalid_20101() -> None:
    assert code_of(b"a.b.c") == 20101  # type: ignore[arg-type]


def test_token_without_jti_is_invalid_20101() -> None:
    assert code_of(craft(payload=claims(jti=...))) == 20101


# 20102: header


def test_alg_none_is_refused_20102() -> None:
    header = {"alg": "none", "cty": "twilio-fpa;v=1", "typ": "JWT"}
    token = craft(header=header, signature="")

    with pytest.raises(AccessTokenError, match="'none'") as raised:
        verify(token)
    assert raised.value.code == 20102


@pytest.mark.parametrize("alg", ["RS256", "HS512", "ES256", "hs256", None])
def test_any_algorithm_but_hs256_is_refused_20102(alg: str | None) -> None:
    # Signed with HMAC-SHA256 all the same: the header alone must get it refused.
    header = {"alg": alg, "cty": "twilio-fpa;v=1", "typ": "JWT"}

    assert code_of(craft(header=header)) == 20102


@pytest.mark.filterwarnings("ignore::jwt.InsecureKeyLengthWarning")
def test_genuine_hs512_token_is_refused_20102() -> None:
    token = jwt.encode(
        claims(), API_KEY_SECRET, algorithm="HS512", headers={"cty": "twilio-fpa;v=1"}
    )

    assert code_of(token) == 20102


@pytest.mark.parametrize("cty", [None, "", "twilio-fpa;v=2", "JWT"])
def test_wrong_or_missing_content_type_is_refused_20102(cty: str | None) -> None:
    header = {"alg": "HS256", "typ": "JWT", **({"cty": cty} if cty is not None else {})}

    with pytest.raises(AccessTokenError, match="twilio-fpa;v=1") as raised:
        verify(craft(header=header))
    assert raised.value.code == 20102


@pytest.mark.parametrize("typ", [None, "JWS", "at+jwt"])
def test_typ_other_than_jwt_is_refused_20102(typ: str | None) -> None:
    header = {"alg": "HS256", "cty": "twilio-fpa;v=1", **({"typ": typ} if typ else {})}

    assert code_of(craft(header=header)) == 20102


def test_critical_header_extensions_are_refused_20102() -> None:
    header = {"alg": "HS256", "cty": "twilio-fpa;v=1", "typ": "JWT", "crit": ["b64"], "b64": False}

    assert code_of(craft(header=header)) == 20102


# 20103: issuer and subject


def test_unknown_issuer_is_refused_20103() -> None:
    token = craft(payload=claims(iss="SK" + "9" * 32))

    with pytest.raises(AccessTokenError, match="not an API key of this server") as raised:
        verify(token)
    assert raised.value.code == 20103


def test_missing_issuer_is_refused_20103() -> None:
    assert code_of(craft(payload=claims(iss=...))) == 20103


@pytest.mark.parametrize("sub", ["AC" + "f" * 32, None, ...])
def test_other_accounts_subject_is_refused_20103(sub: Any) -> None:
    assert code_of(craft(payload=claims(sub=sub))) == 20103


# 20104 / 20105: lifetime


def test_expired_token_is_refused_20104_with_when() -> None:
    token = craft(payload=claims(exp=NOW - 1, nbf=NOW - 3600))

    with pytest.raises(AccessTokenError, match=r"expired at 2025-12-31T23:59:59\+00:00") as raised:
        verify(token, now=NOW)
    assert raised.value.code == 20104


def test_token_expires_exactly_at_exp() -> None:
    token = craft(payload=claims(exp=NOW + 60))

    assert verify(token, now=NOW + 59).identity == "alice"
    assert code_of(token, now=NOW + 60) == 20104


def test_leeway_tolerates_clock_skew() -> None:
    expired = craft(payload=claims(exp=NOW - 5))
    early = craft(payload=claims(nbf=NOW + 5))

    assert verify(expired, now=NOW, leeway=10).identity == "alice"
    assert verify(early, now=NOW, leeway=10).identity == "alice"


@pytest.mark.parametrize("exp", [..., None, "1767229200", True, float("inf"), float("nan")])
def test_missing_or_malformed_exp_is_refused_20104(exp: Any) -> None:
    assert code_of(craft(payload=claims(exp=exp))) == 20104


def test_not_yet_valid_token_is_refused_20105() -> None:
    token = craft(payload=claims(nbf=NOW + 600, exp=NOW + 3600))

    with pytest.raises(AccessTokenError, match="not valid before 2026-01-01T00:10:00") as raised:
        verify(token, now=NOW)
    assert raised.value.code == 20105


def test_malformed_nbf_is_refused_20105() -> None:
    assert code_of(craft(payload=claims(nbf="soon"))) == 20105


def test_token_without_nbf_is_valid_immediately() -> None:
    assert verify(craft(payload=claims(nbf=...))).identity == "alice"


# 20106: grants


@pytest.mark.parametrize(
    "grants",
    [
        ...,
        None,
        "video",
        [],
        {"video": {"room": "lab"}},
        {"video": {}, "identity": ""},
        {"video": {}, "identity": 42},
        {"identity": "alice"},
        {"identity": "alice", "video": "lab"},
        {"identity": "alice", "video": None},
        {"identity": "alice", "video": {"room": 7}},
        {"identity": "alice", "video": {"room": ["lab"]}},
    ],
)
def test_grants_without_identity_or_video_are_refused_20106(grants: Any) -> None:
    assert code_of(craft(payload=claims(grants=grants))) == 20106


def test_token_minted_without_identity_is_refused_20106(frozen_time: int) -> None:
    with pytest.raises(AccessTokenError, match="identity") as raised:
        verify(ours(identity=None))
    assert raised.value.code == 20106


def test_token_minted_without_video_grant_is_refused_20106(frozen_time: int) -> None:
    token = AccessToken(ACCOUNT_SID, API_KEY_SID, API_KEY_SECRET, identity="alice").to_jwt()

    with pytest.raises(AccessTokenError, match="VideoGrant") as raised:
        verify(token)
    assert raised.value.code == 20106


# 20107: signature


def test_token_signed_with_wrong_secret_is_refused_20107() -> None:
    token = craft(secret="not-the-secret-not-the-secret-xx")

    with pytest.raises(AccessTokenError, match="signature") as raised:
        verify(token)
    assert raised.value.code == 20107


def test_token_signed_with_another_servers_key_is_refused_20107() -> None:
    token = craft(payload=claims(iss=OTHER_KEY_SID), secret=API_KEY_SECRET)

    assert code_of(token) == 20107


def test_tampered_payload_is_refused_20107(frozen_time: int) -> None:
    header, _, signature = ours(room="lab").split(".")
    forged = b64(json.dumps(claims(grants={"identity": "admin", "video": {}})).encode())

    assert code_of(f"{header}.{forged}.{signature}") == 20107


def test_tampered_signature_is_refused_20107(frozen_time: int) -> None:
    header, payload, signature = ours().split(".")
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]

    assert code_of(f"{header}.{payload}.{flipped}") == 20107


def test_empty_signature_is_refused_20107() -> None:
    assert code_of(craft(signature="")) == 20107


def test_error_carries_twilio_status_and_more_info() -> None:
    with pytest.raises(AccessTokenError) as raised:
        verify(craft(secret="not-the-secret-not-the-secret-xx"))

    assert raised.value.status == 401
    assert raised.value.to_dict()["more_info"] == "https://www.twilio.com/docs/errors/20107"
