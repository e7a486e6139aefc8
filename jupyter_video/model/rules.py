"""SubscribeRules and RecordingRules: ordered include/exclude filters over tracks.

Rules apply in order: an ``include`` adds the tracks it matches, an
``exclude`` removes them, so a later rule overrides an earlier one
(https://www.twilio.com/docs/video/api/track-subscriptions). Criteria in
one rule must all match.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

from ..errors import VideoError
from .record import Record, utcnow
from .track import TrackKind

MAX_RULES = 20
_CRITERIA = ("all", "publisher", "track", "kind")
_FIELDS = ("type", *_CRITERIA, "priority")


@dataclass(frozen=True)
class TrackFacts:
    """What a rule can match a track on."""

    track_sid: str
    track_name: str
    kind: str
    publisher_sid: str
    publisher_identity: str


@dataclass(frozen=True)
class Rule:
    """One include/exclude filter."""

    type: str
    all: bool | None = None
    publisher: str | None = None
    track: str | None = None
    kind: str | None = None
    priority: str | None = None

    def matches(self, facts: TrackFacts) -> bool:
        if self.all:
            return True
        if self.publisher is not None and self.publisher not in (
            facts.publisher_sid,
            facts.publisher_identity,
        ):
            return False
        if self.track is not None and self.track not in (facts.track_sid, facts.track_name):
            return False
        return self.kind is None or self.kind == facts.kind

    def to_json(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _FIELDS}


def parse_rules(raw: object, code: int) -> list[Rule]:
    """Rules from the ``Rules`` parameter: a JSON array, or an object with ``rules``.

    Raises ``code`` (53215 subscribe, 53120 recording) saying which rule is wrong.
    """
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise VideoError(code, f"Rules is not valid JSON ({exc.msg} at {exc.pos})") from None
    if isinstance(raw, dict) and "rules" in raw:
        raw = raw["rules"]
    if not isinstance(raw, list):
        raise VideoError(code, "Rules must be a JSON array of rule objects")
    if not raw:
        raise VideoError(code, "Rules must contain at least one rule")
    if len(raw) > MAX_RULES:
        raise VideoError(code, f"Rules has {len(raw)} rules; at most {MAX_RULES} are allowed")
    return [_parse_rule(index, item, code) for index, item in enumerate(raw)]


def _parse_rule(index: int, item: object, code: int) -> Rule:
    where = f"Rule {index}"
    if not isinstance(item, dict):
        raise VideoError(code, f'{where} must be an object like {{"type": "include", ...}}')
    unknown = sorted(set(item) - set(_FIELDS))
    if unknown:
        raise VideoError(code, f"{where} has unknown fields {unknown}; allowed: {list(_FIELDS)}")
    rule_type = item.get("type")
    if rule_type not in ("include", "exclude"):
        raise VideoError(code, f'{where} needs "type": "include" or "exclude"')
    present = [name for name in _CRITERIA if item.get(name) is not None]
    if not present:
        raise VideoError(code, f"{where} needs one of {list(_CRITERIA)}")
    if "all" in present:
        # Twilio's helper libraries and test helpers send it as the string "true" too.
        if item["all"] is not True and str(item["all"]).lower() != "true":
            raise VideoError(code, f'{where}: "all" must be true, not {item["all"]!r}')
        if len(present) > 1:
            raise VideoError(code, f'{where}: a rule with "all" may have no other criteria')
    for name in ("publisher", "track"):
        if name in present and not (isinstance(item[name], str) and item[name]):
            raise VideoError(code, f'{where}: "{name}" must be a non-empty string')
    kind = item.get("kind")
    if kind is not None and kind not in {k.value for k in TrackKind}:
        raise VideoError(code, f'{where}: "kind" must be audio, video or data, not {kind!r}')
    priority = item.get("priority")
    if priority is not None and not isinstance(priority, str):
        raise VideoError(code, f'{where}: "priority" must be a string')
    return Rule(
        type=rule_type,
        all=True if "all" in present else None,
        publisher=item.get("publisher"),
        track=item.get("track"),
        kind=kind,
        priority=priority,
    )


def evaluate(rules: list[Rule], facts: TrackFacts) -> bool:
    """Whether the ordered ``rules`` select the track."""
    selected = False
    for rule in rules:
        if rule.matches(facts):
            selected = rule.type == "include"
    return selected


INCLUDE_ALL = [Rule(type="include", all=True)]


class RuleSet(Record):
    """An ordered list of rules kept as JSON, replaced whole on update."""

    rules: list[dict[str, Any]]
    date_updated: datetime

    @property
    def parsed(self) -> list[Rule]:
        return [Rule(**rule) for rule in self.rules]

    def replace(self, rules: list[Rule], now: datetime | None = None) -> None:
        self.rules = [rule.to_json() for rule in rules]
        self.date_updated = now or utcnow()

    def selects(self, facts: TrackFacts) -> bool:
        return evaluate(self.parsed, facts)


@dataclass
class SubscribeRules(RuleSet):
    """A participant's subscribe rules (keyed by participant SID). Default: everything."""

    kind: ClassVar[str] = "subscribe_rules"

    sid: str  # the participant SID
    room_sid: str
    rules: list[dict[str, Any]] = field(
        default_factory=lambda: [rule.to_json() for rule in INCLUDE_ALL]
    )
    date_created: datetime = field(default_factory=utcnow)
    date_updated: datetime = field(default_factory=utcnow)


@dataclass
class RecordingRules(RuleSet):
    """A room's recording rules (keyed by room SID). Default: record nothing."""

    kind: ClassVar[str] = "recording_rules"

    sid: str  # the room SID
    rules: list[dict[str, Any]] = field(default_factory=list)
    date_created: datetime = field(default_factory=utcnow)
    date_updated: datetime = field(default_factory=utcnow)
