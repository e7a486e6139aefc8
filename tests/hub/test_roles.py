"""The hub service's roles, as rest.py's permission hook and the token handler ask them.

The real-hub tests show the scope path end to end; these cover what that hub's
three users do not: moderators by group, the student room policy, second tabs.
"""

from __future__ import annotations

import re

import pytest

from jupyter_video import sids
from jupyter_video.errors import VideoError
from jupyter_video.hub.activity import hub_user_of
from jupyter_video.hub.identity import HubUser
from jupyter_video.hub.roles import MODERATE_SCOPE, MODERATED, HubRoles, owns
from jupyter_video.model import Participant


def user(name: str, groups: tuple[str, ...] = (), scopes: tuple[str, ...] = ()) -> HubUser:
    return HubUser.from_model({"name": name, "groups": list(groups), "scopes": list(scopes)})


def participant(identity: str) -> Participant:
    return Participant(sid=sids.new_sid(sids.PARTICIPANT), room_sid=sids.new_sid(sids.ROOM),
                       account_sid=sids.new_sid(sids.ACCOUNT), identity=identity)


ROLES = HubRoles(frozenset({"assistants"}), re.compile(r"study-[a-z0-9-]+"))


@pytest.mark.parametrize("action", sorted(MODERATED))
def test_only_moderators_take_moderated_actions(action: str) -> None:
    ROLES.check_rest(user("t", scopes=(MODERATE_SCOPE,)), action, None)
    ROLES.check_rest(user("a", groups=("assistants",)), action, None)
    with pytest.raises(VideoError) as refused:
        ROLES.check_rest(user("s1", groups=("students",)), action, None)
    assert refused.value.code == 20403 and refused.value.status == 403
    assert MODERATE_SCOPE in refused.value.message and "assistants" in refused.value.message


def test_an_action_the_roles_do_not_know_is_a_moderators() -> None:
    ROLES.check_rest(user("t", scopes=(MODERATE_SCOPE,)), "rename_the_moon", None)
    with pytest.raises(VideoError) as refused:
        ROLES.check_rest(user("s1"), "rename_the_moon", None)
    assert refused.value.code == 20403 and "rename the moon" in refused.value.message


def test_every_rest_action_is_known_to_the_roles() -> None:
    """What rest.py and the compositions' handlers ask authorize() about."""
    from pathlib import Path

    server = Path(__file__).resolve().parents[2] / "jupyter_video" / "server"
    asked = set(re.findall(r'self\.authorize\("(\w+)"', "".join(
        path.read_text() for path in server.glob("*.py"))))
    assert "create_composition" in asked and "complete_room" in asked
    assert asked <= set(MODERATED) | {"update_subscribe_rules"}


def test_a_student_changes_only_their_own_subscribe_rules() -> None:
    student = user("s1")
    ROLES.check_rest(student, "update_subscribe_rules", participant("s1"))
    ROLES.check_rest(student, "update_subscribe_rules", participant("s1 (2)"))  # second tab
    for other in ("s2", "s10", "s1 (x)", "teacher"):
        with pytest.raises(VideoError) as refused:
            ROLES.check_rest(student, "update_subscribe_rules", participant(other))
        assert refused.value.code == 20403 and repr(other) in refused.value.message
    ROLES.check_rest(user("a", groups=("assistants",)), "update_subscribe_rules",
                     participant("s2"))


def test_students_join_rooms_in_progress_or_those_the_policy_names() -> None:
    student = user("s1")
    ROLES.check_join(student, "lecture", in_progress=True)
    ROLES.check_join(student, "study-group-3", in_progress=False)
    with pytest.raises(VideoError) as refused:
        ROLES.check_join(student, "lecture", in_progress=False)
    assert refused.value.code == 20403 and "student_room_policy" in refused.value.message
    with pytest.raises(VideoError):
        ROLES.check_join(student, "xstudy-group", in_progress=False)  # the whole name
    ROLES.check_join(user("a", groups=("assistants",)), "anything", in_progress=False)
    with pytest.raises(VideoError):
        HubRoles(frozenset(), None).check_join(student, "study-1", in_progress=False)


def test_api_key_callers_and_other_users_are_not_asked() -> None:
    # rest.py calls the hook only for session users; a non-hub user object is not refused.
    ROLES.check_rest(object(), "complete_room", None)


def test_participants_count_as_their_hub_user_for_activity() -> None:
    assert owns(user("ada"), "ada") and not owns(user("ada"), "adam")
    assert [hub_user_of(i) for i in ("ada", "ada (2)", "ada (x)")] == ["ada", "ada", "ada (x)"]
