"""The classroom's moderator claim, carried in an Access Token's Video grant.

Where the hub's roles decide who moderates (jupyter_video.hub), the service that
mints a teacher's token knows the teacher's scopes and groups; the widget's
classroom channel only sees the token. So the service writes what it knows into
the token: ``grants.video.classroom = {"moderator": true}``. The token is signed
with the server's API key secret, so a student cannot add or keep the claim
without the signature failing; twilio-video.js and Twilio's own servers ignore
a Video grant's unknown keys.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

from ..tokens import VideoGrant

CLAIM = "classroom"


@dataclass(frozen=True)
class ClassroomVideoGrant(VideoGrant):
    """A VideoGrant that also says its holder moderates the classroom."""

    moderator: bool = False

    def to_payload(self) -> dict[str, Any]:
        payload: dict[str, Any] = dict(super().to_payload())
        if self.moderator:
            payload[CLAIM] = {"moderator": True}
        return payload


def moderator_claim(verified_token: str) -> bool:
    """Whether a token, already checked by ``verify_token``, carries the moderator claim.

    Only call it after verification: the payload is read here, not checked again.
    """
    try:
        segment = verified_token.split(".")[1]
        payload = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
        claim = payload["grants"]["video"].get(CLAIM)
    except (IndexError, KeyError, ValueError, AttributeError, TypeError):
        return False
    return isinstance(claim, dict) and claim.get("moderator") is True
