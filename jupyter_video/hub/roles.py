"""Who may do what in the hub's rooms.

A moderator (a teacher) holds the custom scope ``custom:video:moderate`` or is in
one of ``VideoApp.moderator_groups``: they create and complete rooms, record,
and disconnect participants. Everyone else joins rooms that are in progress (or
whose name ``VideoApp.student_room_policy`` allows) and changes only their own
SubscribeRules. An API key holder (HTTP Basic) is the admin and is not asked.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ..errors import VideoError
from ..model import Participant
from .identity import HubUser

MODERATE_SCOPE = "custom:video:moderate"

# REST actions (rest.py's names) that only a moderator may take, and what they are.
MODERATED: dict[str, str] = {
    "create_room": "create a room",
    "complete_room": "complete a room",
    "disconnect_participant": "disconnect a participant",
    "update_recording_rules": "change what a room records",
    "delete_recording": "delete a recording",
    "create_composition": "compose a room's recordings",
    "delete_composition": "delete a composition",
    "create_composition_hook": "create a composition hook",
    "update_composition_hook": "change a composition hook",
    "delete_composition_hook": "delete a composition hook",
    "update_storage_settings": "change where recordings and compositions are kept",
}
OWN = "update_subscribe_rules"
"""The one action anyone takes, on their own participant; any other is a moderator's."""


def owns(user: HubUser, identity: str) -> bool:
    """Whether ``identity`` is one the service gave ``user`` (``name``, ``name (2)``...)."""
    name = user.username
    return identity == name or re.fullmatch(re.escape(name) + r" \(\d+\)", identity) is not None


@dataclass(frozen=True)
class HubRoles:
    """The service's policy, from VideoApp's ``moderator_groups`` and ``student_room_policy``."""

    moderator_groups: frozenset[str]
    student_room_policy: re.Pattern[str] | None

    def is_moderator(self, user: HubUser) -> bool:
        return MODERATE_SCOPE in user.scopes or bool(self.moderator_groups & user.groups)

    def _moderators(self) -> str:
        groups = ", ".join(sorted(self.moderator_groups))
        return f"the scope {MODERATE_SCOPE}" + (f" or membership in {groups}" if groups else "")

    def check_rest(self, user: Any, action: str, participant: Participant | None) -> None:
        """rest.py's permission hook: raise 20403 when ``user`` may not take ``action``."""
        if not isinstance(user, HubUser) or self.is_moderator(user):
            return
        if action != OWN:  # unknown actions too: a new endpoint is closed until listed
            what = MODERATED.get(action, action.replace("_", " "))
            raise VideoError(
                20403, f"{user.username} may not {what}: that needs {self._moderators()}"
            )
        if (
            participant is not None
            and not owns(user, participant.identity)
        ):
            raise VideoError(
                20403,
                f"{user.username} may change only their own SubscribeRules, not "
                f"{participant.identity!r}'s; moderating others needs {self._moderators()}",
            )

    def may_create(self, user: HubUser, room: str) -> bool:
        """Whether joining ``room`` may create it: a moderator, or a name the policy allows."""
        if self.is_moderator(user):
            return True
        return self.student_room_policy is not None and bool(
            self.student_room_policy.fullmatch(room)
        )

    def check_join(self, user: HubUser, room: str, in_progress: bool) -> None:
        """Before a token is given: a non-moderator joins only a room that exists or
        that the student room policy allows (joining creates it)."""
        if in_progress or self.may_create(user, room):
            return
        raise VideoError(
            20403,
            f"Room {room!r} is not in progress and {user.username} may not create it: "
            f"creating rooms needs {self._moderators()} (or a name matching "
            "VideoApp.student_room_policy); ask a moderator to start it",
        )
