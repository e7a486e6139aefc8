"""``GET /video/token``: Access Tokens for the page's Jupyter user, identities made unique."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import requests

from jupyter_video.tokens import verify_token

from ..server_process import TOKEN, ServerProcess


def get_token(server: ServerProcess, auth: bool = True, **params: str) -> requests.Response:
    headers = {"Authorization": f"token {TOKEN}"} if auth else {}
    return requests.get(f"{server.url}video/token", params=params, headers=headers, timeout=10)


def claims(server: ServerProcess, body: dict[str, Any]) -> Any:
    creds = server.credentials()
    return verify_token(body["token"], account_sid=creds["account_sid"],
                        api_keys={creds["api_key_sid"]: creds["api_key_secret"]})


def test_token_is_signed_by_the_server_for_the_room_and_identity(server: ServerProcess) -> None:
    room = f"token-{uuid.uuid4().hex[:8]}"
    response = get_token(server, room=room, identity="ada")
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    body = response.json()
    assert (body["identity"], body["room"], body["ice_servers"]) == ("ada", room, [])
    granted = claims(server, body)
    assert (granted.identity, granted.room) == ("ada", room)


def test_the_same_identity_asked_twice_is_made_unique(server: ServerProcess) -> None:
    room = f"token-{uuid.uuid4().hex[:8]}"
    identities = [get_token(server, room=room, identity="ada").json()["identity"]
                  for _ in range(3)]
    assert identities == ["ada", "ada (2)", "ada (3)"]
    # Another room has its own identities.
    assert get_token(server, room=room + "-b", identity="ada").json()["identity"] == "ada"


def test_without_an_identity_the_jupyter_user_name_is_used(server: ServerProcess) -> None:
    body = get_token(server, room=f"token-{uuid.uuid4().hex[:8]}").json()
    assert body["identity"]  # the token-authenticated user's (anonymous) name
    assert claims(server, body).identity == body["identity"]


def test_without_a_jupyter_session_there_is_no_token(server: ServerProcess) -> None:
    response = get_token(server, auth=False, room="lab")
    assert response.status_code == 403
    assert "eyJ" not in response.text


@pytest.mark.parametrize("room", ["", " ", "x" * 129])
def test_a_room_name_must_be_1_to_128_characters(server: ServerProcess, room: str) -> None:
    assert get_token(server, room=room).status_code == 400
