"""The Rooms REST API, wire-compatible with Twilio Video v1.

Handlers are thin: they authenticate, parse Twilio's form parameters into
typed values (refusing bad ones with Twilio's codes), call the room registry
and render its records as Twilio's JSON.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import os
import re
from collections.abc import Callable, Sequence
from datetime import date, datetime, timezone
from typing import Any
from urllib.parse import urlencode, urlparse

from jupyter_server.auth.decorator import allow_unauthenticated
from jupyter_server.base.handlers import APIHandler
from tornado import web

from ..errors import VideoError, invalid_parameter
from ..model import (
    Participant,
    ParticipantStatus,
    Recording,
    RecordingStatus,
    Room,
    RoomStatus,
    parse_rules,
)
from ..model.room import (
    MEDIA_REGIONS,
    VIDEO_CODECS,
    RoomType,
    check_room_type,
    check_type_parameters,
)
from . import resources
from .recordings import MEDIA_TYPES, RecordingFilter, Recordings
from .registry import Page, RoomRegistry

MAX_PAGE_SIZE = 1000
DEFAULT_PAGE_SIZE = 50
MAX_PARAM_LENGTH = 4096
MAX_OFFSET = 10**12
_PAGING = ("PageSize", "Page", "PageToken")
_PAGE_TOKEN = re.compile(r"^PT(\d{1,9})$")

# A deployment may limit what a Jupyter user (not an API key holder) changes:
# ``settings["jupyter_video_permissions"](user, action, participant)`` raises
# VideoError 20403 to refuse. The hub service supplies one (hub/roles.py).
Permissions = Callable[[Any, str, "Participant | None"], None]


class Params:
    """A request's Twilio parameters, each parsed once into the type it must have."""

    def __init__(self, raw: dict[str, list[str]], allowed: Sequence[str], where: str) -> None:
        unknown = sorted(set(raw) - set(allowed))
        if unknown:
            raise invalid_parameter(
                f"Unknown parameter(s) {', '.join(unknown)} for {where}; "
                f"allowed: {', '.join(allowed) or 'none'}"
            )
        for name, values in raw.items():
            for value in values:
                if len(value) > MAX_PARAM_LENGTH:
                    raise invalid_parameter(
                        f"{name} is {len(value)} characters long; the limit is {MAX_PARAM_LENGTH}"
                    )
        self.raw = raw

    def __contains__(self, name: str) -> bool:
        return name in self.raw

    def text(self, name: str) -> str | None:
        values = self.raw.get(name)
        if not values:
            return None
        if len(values) > 1:
            raise invalid_parameter(f"{name} was given {len(values)} times; give it once")
        return values[0]

    def texts(self, name: str) -> list[str] | None:
        return self.raw.get(name)

    def integer(self, name: str, code: int = 20001) -> int | None:
        value = self.text(name)
        if value is None:
            return None
        try:
            return int(value)
        except ValueError:
            raise VideoError(code, f"{name} must be a whole number, not {value!r}") from None

    def boolean(self, name: str) -> bool | None:
        value = self.text(name)
        if value is None:
            return None
        lowered = value.lower()
        if lowered not in ("true", "false"):
            raise invalid_parameter(f"{name} must be true or false, not {value!r}")
        return lowered == "true"

    def time(self, name: str) -> datetime | None:
        value = self.text(name)
        if value is None:
            return None
        try:
            if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
                parsed = datetime.combine(date.fromisoformat(value), datetime.min.time())
            else:
                parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise invalid_parameter(
                f"{name} must be an ISO 8601 date or time like 2026-11-23T16:00:00Z, not {value!r}"
            ) from None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)

    def choice(self, name: str, choices: Sequence[str], code: int = 20001) -> str | None:
        value = self.text(name)
        if value is not None and value not in choices:
            raise VideoError(code, f"{name} must be one of {', '.join(choices)}, not {value!r}")
        return value

    def filter_items(self) -> list[tuple[str, str]]:
        """The non-paging parameters, to repeat in paging URLs."""
        return [
            (name, value)
            for name, values in self.raw.items()
            if name not in _PAGING
            for value in values
        ]


class TwilioHandler(APIHandler):
    """Base for REST handlers: Twilio's auth, parameters, JSON and error bodies."""

    _basic_authenticated = False

    @property
    def registry(self) -> RoomRegistry:
        return self.settings["jupyter_video"].registry

    @property
    def urls(self) -> resources.Urls:
        root = f"{self.request.protocol}://{self.request.host}{self.base_url}video/v1"
        return resources.Urls(root)

    async def prepare(self) -> None:  # type: ignore[override]
        self._basic_authenticated = self._check_basic_auth()
        await super().prepare()
        if not self._basic_authenticated and self.current_user is None:
            raise VideoError(
                20003,
                "Authentication failed: send HTTP Basic credentials (API key SID and "
                "secret, or account SID and auth token), or use a Jupyter session",
            )

    def _check_basic_auth(self) -> bool:
        header = self.request.headers.get("Authorization", "")
        if not header.lower().startswith("basic "):
            return False
        credentials = self.settings["jupyter_video"].credentials
        try:
            username, _, password = (
                base64.b64decode(header[6:].strip(), validate=True).decode().partition(":")
            )
        except (binascii.Error, UnicodeDecodeError):
            raise VideoError(20003, "Authorization header is not valid HTTP Basic") from None
        accepted = {
            credentials.api_key_sid: credentials.api_key_secret,
            credentials.account_sid: credentials.auth_token,
        }
        secret = accepted.get(username)
        if secret is None or not hmac.compare_digest(secret.encode(), password.encode()):
            raise VideoError(
                20003,
                "Authentication failed: the username must be this server's API key SID "
                "or account SID, with its secret (jupyter_video.credentials() shows them)",
            )
        return True

    def check_xsrf_cookie(self) -> None:
        # A Basic-authenticated request carries its credentials itself; browsers
        # never add them on their own since this server never asks for them.
        if self._basic_authenticated:
            return None
        if getattr(self, "_jupyter_current_user", "unknown") is None:
            # Nobody is signed in: prepare() refuses with Twilio's 401/20003, which is
            # what a Twilio helper library understands, not Jupyter's 403 about _xsrf.
            return None
        return super().check_xsrf_cookie()

    def authorize(self, action: str, participant: Participant | None = None) -> None:
        """Ask the deployment's permission hook, if any, whether this user may ``action``."""
        permissions: Permissions | None = self.settings.get("jupyter_video_permissions")
        if permissions is not None and not self._basic_authenticated:
            permissions(self.current_user, action, participant)

    def params(self, allowed: Sequence[str], where: str) -> Params:
        if self.request.method in ("POST", "PUT"):
            content_type = self.request.headers.get("Content-Type", "")
            if self.request.body and not content_type.startswith(
                "application/x-www-form-urlencoded"
            ):
                raise invalid_parameter(
                    "Send parameters form-encoded (Content-Type: "
                    "application/x-www-form-urlencoded), as Twilio's helper libraries do"
                )
            source = self.request.body_arguments
        else:
            source = self.request.query_arguments
        raw: dict[str, list[str]] = {}
        for name, values in source.items():
            try:
                raw[name] = [value.decode("utf-8") for value in values]
            except UnicodeDecodeError:
                raise invalid_parameter(f"{name} is not valid UTF-8") from None
        return Params(raw, allowed, where)

    def reply(self, body: dict[str, Any], status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(json.dumps(body))

    def reply_page(
        self,
        key: str,
        params: Params,
        listing: Callable[[int, int], Page],
        render: Callable[[Any], dict[str, Any]],
    ) -> None:
        """One page of a listing with Twilio's ``meta``, absolute paging URLs included."""
        page_size = params.integer("PageSize") or DEFAULT_PAGE_SIZE
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise invalid_parameter(f"PageSize must be between 1 and {MAX_PAGE_SIZE}")
        page = params.integer("Page") or 0
        if page < 0:
            raise invalid_parameter("Page must not be negative")
        offset = page * page_size
        if offset > MAX_OFFSET:
            # The store's offsets are 64-bit integers; no listing reaches this far.
            raise invalid_parameter(
                f"Page {page} of PageSize {page_size} is past the end of any listing; "
                "follow next_page_url from page 0"
            )
        token = params.text("PageToken")
        if token is not None:
            match = _PAGE_TOKEN.match(token)
            if match is None:
                raise invalid_parameter(
                    f"PageToken {token!r} is not one this server issued; "
                    "follow next_page_url instead of building tokens"
                )
            offset = int(match.group(1))
        result = listing(offset, page_size)
        base = self.request.protocol + "://" + self.request.host + urlparse(self.request.uri).path
        filters = params.filter_items()

        def url(page_number: int, page_offset: int | None) -> str:
            query = [*filters, ("PageSize", str(page_size)), ("Page", str(page_number))]
            if page_offset is not None:
                query.append(("PageToken", f"PT{page_offset}"))
            return f"{base}?{urlencode(query)}"

        has_next = offset + page_size < result.total
        self.reply(
            {
                key: [render(item) for item in result.items],
                "meta": {
                    "page": page,
                    "page_size": page_size,
                    "first_page_url": url(0, None),
                    "previous_page_url": url(page - 1, max(0, offset - page_size))
                    if page > 0
                    else None,
                    "url": url(page, offset if token is not None else None),
                    "next_page_url": url(page + 1, offset + page_size) if has_next else None,
                    "key": key,
                },
            }
        )

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, VideoError):
            error = exc
        elif isinstance(exc, web.HTTPError):
            code = {404: 20404, 405: 20405, 403: 20003, 401: 20003}.get(status_code, 20001)
            error = VideoError(code, exc.log_message or None, status=status_code)
        else:
            error = VideoError(20500, "Internal server error; see the server log", status=500)
        self.set_status(error.status)
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.finish(json.dumps(error.to_dict()))

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        if isinstance(value, VideoError):
            self.log.info("%s %s -> %s", self.request.method, self.request.uri, value)
        else:
            super().log_exception(typ, value, tb)

    # Rooms and participants are addressed by SID or name in every sub-resource.
    def room(self, room_sid: str) -> Room:
        return self.registry.get_room(room_sid)

    def participant(self, room_sid: str, participant_sid: str) -> Participant:
        return self.registry.get_participant(self.room(room_sid), participant_sid)


_ROOM_CREATE = (
    "UniqueName",
    "Type",
    "StatusCallback",
    "StatusCallbackMethod",
    "MaxParticipants",
    "RecordParticipantsOnConnect",
    "TranscribeParticipantsOnConnect",
    "VideoCodecs",
    "MediaRegion",
    "RecordingRules",
    "TranscriptionsConfiguration",
    "AudioOnly",
    "MaxParticipantDuration",
    "EmptyRoomTimeout",
    "UnusedRoomTimeout",
    "LargeRoom",
    "EnableTurn",
)
_ROOM_LIST = ("Status", "UniqueName", "DateCreatedAfter", "DateCreatedBefore", *_PAGING)
_PARTICIPANT_LIST = ("Status", "Identity", "DateCreatedAfter", "DateCreatedBefore", *_PAGING)


def _room_settings(params: Params, default_type: RoomType) -> dict[str, Any]:
    """Keyword arguments for ``RoomRegistry.create_room`` from a create request."""
    settings: dict[str, Any] = {}
    if "Type" in params:
        settings["room_type"] = check_room_type(params.text("Type") or "")
    # What a Go or Peer-to-Peer room cannot do (no media reaches the server) is
    # refused before anything else is looked at, as Twilio does.
    check_type_parameters(
        settings.get("room_type", default_type),
        [name for name in ("VideoCodecs", "MediaRegion", "RecordingRules") if name in params]
        + [
            name
            for name in ("RecordParticipantsOnConnect", "AudioOnly", "LargeRoom")
            if params.boolean(name)
        ],
    )
    # An empty UniqueName is as good as none: the room is named by its SID (as Twilio does).
    if params.text("UniqueName"):
        settings["unique_name"] = params.text("UniqueName")
    callback = params.text("StatusCallback")
    if callback is not None:
        parsed = urlparse(callback)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise VideoError(53111, f"StatusCallback must be an http(s) URL, not {callback!r}")
        settings["status_callback"] = callback
    method = params.text("StatusCallbackMethod")
    if method is not None:
        if method.upper() not in ("GET", "POST"):
            raise VideoError(53110, f"StatusCallbackMethod must be GET or POST, not {method!r}")
        settings["status_callback_method"] = method.upper()
    for name, key, code in (
        ("MaxParticipants", "max_participants", 53107),
        ("EmptyRoomTimeout", "empty_room_timeout", 53109),
        ("UnusedRoomTimeout", "unused_room_timeout", 53109),
        ("MaxParticipantDuration", "max_participant_duration", 53109),
    ):
        value = params.integer(name, code)
        if value is not None:
            settings[key] = value
    for name, key in (
        ("RecordParticipantsOnConnect", "record_participants_on_connect"),
        ("AudioOnly", "audio_only"),
        ("EnableTurn", "enable_turn"),
    ):
        flag = params.boolean(name)
        if flag is not None:
            settings[key] = flag
    for name in ("TranscribeParticipantsOnConnect", "LargeRoom"):
        if params.boolean(name):
            raise VideoError(53114, f"{name}=true is not supported by this server")
    if "TranscriptionsConfiguration" in params:
        raise VideoError(53114, "TranscriptionsConfiguration is not supported by this server")
    codecs = params.texts("VideoCodecs")
    if codecs is not None:
        wrong = [codec for codec in codecs if codec not in VIDEO_CODECS]
        if wrong:
            raise invalid_parameter(f"VideoCodecs must be VP8 or H264, not {', '.join(wrong)}")
        if settings.get("audio_only"):
            raise VideoError(53114, "VideoCodecs cannot be set on an AudioOnly room")
        settings["video_codecs"] = list(dict.fromkeys(codecs))
    region = params.choice("MediaRegion", MEDIA_REGIONS)
    if region is not None:
        settings["media_region"] = region
    return settings


class RoomsHandler(TwilioHandler):
    """``/v1/Rooms``: create and list."""

    @allow_unauthenticated
    def post(self) -> None:
        self.authorize("create_room")
        params = self.params(_ROOM_CREATE, "creating a Room")
        settings = _room_settings(params, self.registry.defaults.room_type)
        recording = params.text("RecordingRules")
        rules = parse_rules(recording, 53120) if recording is not None else None
        room = self.registry.create_room(**settings)
        if rules is not None:
            self.registry.update_recording_rules(room, rules)
        self.reply(resources.room_json(room, self.urls), status=201)

    @allow_unauthenticated
    def get(self) -> None:
        params = self.params(_ROOM_LIST, "listing Rooms")
        status = params.choice("Status", [s.value for s in RoomStatus], 53112)
        self.reply_page(
            "rooms",
            params,
            lambda offset, limit: self.registry.list_rooms(
                status=RoomStatus(status) if status else None,
                unique_name=params.text("UniqueName"),
                created_after=params.time("DateCreatedAfter"),
                created_before=params.time("DateCreatedBefore"),
                offset=offset,
                limit=limit,
            ),
            lambda room: resources.room_json(room, self.urls),
        )


class RoomHandler(TwilioHandler):
    """``/v1/Rooms/{RoomSid or UniqueName}``: fetch and complete."""

    @allow_unauthenticated
    def get(self, room_sid: str) -> None:
        self.params((), "fetching a Room")
        self.reply(resources.room_json(self.room(room_sid), self.urls))

    @allow_unauthenticated
    def post(self, room_sid: str) -> None:
        self.authorize("complete_room")
        params = self.params(("Status",), "updating a Room")
        status = params.text("Status")
        if status != RoomStatus.COMPLETED.value:
            raise VideoError(53112, f"Status must be 'completed' to end a Room, not {status!r}")
        room = self.registry.end_room(self.room(room_sid))
        self.reply(resources.room_json(room, self.urls))


class ParticipantsHandler(TwilioHandler):
    """``/v1/Rooms/{RoomSid}/Participants``: list."""

    @allow_unauthenticated
    def get(self, room_sid: str) -> None:
        params = self.params(_PARTICIPANT_LIST, "listing Participants")
        room = self.room(room_sid)
        status = params.choice("Status", [s.value for s in ParticipantStatus], 53112)
        self.reply_page(
            "participants",
            params,
            lambda offset, limit: self.registry.list_participants(
                room,
                status=ParticipantStatus(status) if status else None,
                identity=params.text("Identity"),
                created_after=params.time("DateCreatedAfter"),
                created_before=params.time("DateCreatedBefore"),
                offset=offset,
                limit=limit,
            ),
            lambda participant: resources.participant_json(participant, self.urls),
        )


class ParticipantHandler(TwilioHandler):
    """``/v1/Rooms/{RoomSid}/Participants/{ParticipantSid or Identity}``: fetch, disconnect."""

    @allow_unauthenticated
    def get(self, room_sid: str, participant_sid: str) -> None:
        self.params((), "fetching a Participant")
        participant = self.participant(room_sid, participant_sid)
        self.reply(resources.participant_json(participant, self.urls))

    @allow_unauthenticated
    def post(self, room_sid: str, participant_sid: str) -> None:
        self.authorize("disconnect_participant")
        params = self.params(("Status",), "updating a Participant")
        status = params.text("Status")
        if status != ParticipantStatus.DISCONNECTED.value:
            raise VideoError(
                53112, f"Status must be 'disconnected' to remove a Participant, not {status!r}"
            )
        participant = self.registry.disconnect_participant(
            self.participant(room_sid, participant_sid)
        )
        self.reply(resources.participant_json(participant, self.urls))


def _list_all(items: list[Any], offset: int, limit: int) -> Page:
    return Page(items[offset : offset + limit], len(items))


class PublishedTracksHandler(TwilioHandler):
    @allow_unauthenticated
    def get(self, room_sid: str, participant_sid: str) -> None:
        params = self.params(_PAGING, "listing PublishedTracks")
        participant = self.participant(room_sid, participant_sid)
        tracks = self.registry.published_tracks(participant.sid)
        self.reply_page(
            "published_tracks",
            params,
            lambda offset, limit: _list_all(tracks, offset, limit),
            lambda track: resources.published_track_json(track, self.urls),
        )


class PublishedTrackHandler(TwilioHandler):
    @allow_unauthenticated
    def get(self, room_sid: str, participant_sid: str, track_sid: str) -> None:
        self.params((), "fetching a PublishedTrack")
        participant = self.participant(room_sid, participant_sid)
        track = self.registry.get_published_track(participant, track_sid)
        self.reply(resources.published_track_json(track, self.urls))


class SubscribedTracksHandler(TwilioHandler):
    @allow_unauthenticated
    def get(self, room_sid: str, participant_sid: str) -> None:
        params = self.params(_PAGING, "listing SubscribedTracks")
        participant = self.participant(room_sid, participant_sid)
        subscriptions = self.registry.subscribed_tracks(participant.sid)
        self.reply_page(
            "subscribed_tracks",
            params,
            lambda offset, limit: _list_all(subscriptions, offset, limit),
            lambda subscription: resources.subscribed_track_json(subscription, self.urls),
        )


class SubscribedTrackHandler(TwilioHandler):
    @allow_unauthenticated
    def get(self, room_sid: str, participant_sid: str, track_sid: str) -> None:
        self.params((), "fetching a SubscribedTrack")
        participant = self.participant(room_sid, participant_sid)
        subscription = self.registry.get_subscribed_track(participant, track_sid)
        self.reply(resources.subscribed_track_json(subscription, self.urls))


class SubscribeRulesHandler(TwilioHandler):
    @allow_unauthenticated
    def get(self, room_sid: str, participant_sid: str) -> None:
        self.params((), "fetching SubscribeRules")
        participant = self.participant(room_sid, participant_sid)
        self.reply(resources.subscribe_rules_json(self.registry.subscribe_rules(participant)))

    @allow_unauthenticated
    def post(self, room_sid: str, participant_sid: str) -> None:
        params = self.params(("Rules",), "updating SubscribeRules")
        participant = self.participant(room_sid, participant_sid)
        self.authorize("update_subscribe_rules", participant)
        check_type_parameters(self.room(room_sid).type, ["SubscribeRules"])
        rules = parse_rules(params.text("Rules"), 53215)
        updated = self.registry.update_subscribe_rules(participant, rules)
        self.reply(resources.subscribe_rules_json(updated))


class RecordingRulesHandler(TwilioHandler):
    @allow_unauthenticated
    def get(self, room_sid: str) -> None:
        self.params((), "fetching RecordingRules")
        self.reply(
            resources.recording_rules_json(self.registry.recording_rules(self.room(room_sid)))
        )

    @allow_unauthenticated
    def post(self, room_sid: str) -> None:
        self.authorize("update_recording_rules")
        params = self.params(("Rules",), "updating RecordingRules")
        room = self.room(room_sid)
        check_type_parameters(room.type, ["RecordingRules"])
        rules = parse_rules(params.text("Rules"), 53120)
        self.reply(
            resources.recording_rules_json(self.registry.update_recording_rules(room, rules))
        )


_RECORDING_LIST = (
    "Status", "SourceSid", "GroupingSid", "MediaType", "DateCreatedAfter", "DateCreatedBefore",
    *_PAGING,
)  # fmt: skip
_ROOM_RECORDING_LIST = ("Status", "SourceSid", "DateCreatedAfter", "DateCreatedBefore", *_PAGING)
MEDIA_CHUNK = 1 << 20


class RecordingsBase(TwilioHandler):
    """``/Recordings/...`` and ``/Rooms/{RoomSid}/Recordings/...`` alike: the path's
    groups are the room (when there is one), then the recording."""

    @property
    def recordings(self) -> Recordings:
        return self.settings["jupyter_video"].recordings

    def recording(self, path: Sequence[str]) -> Recording:
        room_sid = self.room(path[0]).sid if len(path) == 2 else None
        return self.recordings.get(path[-1], room_sid)


class RecordingsHandler(RecordingsBase):
    """``/v1/Recordings`` and ``/v1/Rooms/{RoomSid}/Recordings``: list."""

    @allow_unauthenticated
    def get(self, *path: str) -> None:
        room = self.room(path[0]) if path else None
        params = self.params(
            _ROOM_RECORDING_LIST if room else _RECORDING_LIST, "listing Recordings"
        )
        status = params.choice("Status", [s.value for s in RecordingStatus])
        where = RecordingFilter(
            status=RecordingStatus(status) if status else None,
            source_sid=params.text("SourceSid"),
            grouping_sids=tuple(params.texts("GroupingSid") or ()),
            media_type=params.choice("MediaType", ("audio", "video")),
            room_sid=room.sid if room else None,
            created_after=params.time("DateCreatedAfter"),
            created_before=params.time("DateCreatedBefore"),
        )
        self.reply_page(
            "recordings",
            params,
            lambda offset, limit: self.recordings.list(where, offset, limit),
            lambda recording: resources.recording_json(recording, self.urls, room is not None),
        )


class RecordingHandler(RecordingsBase):
    """``.../Recordings/{RecordingSid}``: fetch, and delete (the media goes, the record
    stays ``deleted``)."""

    @allow_unauthenticated
    def get(self, *path: str) -> None:
        self.params((), "fetching a Recording")
        recording = self.recording(path)
        self.reply(resources.recording_json(recording, self.urls, len(path) == 2))

    @allow_unauthenticated
    def delete(self, *path: str) -> None:
        self.authorize("delete_recording")
        self.params((), "deleting a Recording")
        self.recordings.delete(self.recording(path))
        self.set_status(204)
        self.finish()


class RecordingMediaHandler(RecordingsBase):
    """``.../Recordings/{RecordingSid}/Media``: the Matroska file itself."""

    @allow_unauthenticated
    async def get(self, *path: str) -> None:
        self.params((), "fetching a Recording's media")
        recording = self.recording(path)
        if recording.status is RecordingStatus.DELETED:
            raise VideoError(20404, f"The media of Recording {recording.sid} was deleted")
        try:
            media = open(recording.path, "rb")  # noqa: SIM115 - closed below, across awaits
        except FileNotFoundError:
            raise VideoError(20404, f"The media of Recording {recording.sid} is gone") from None
        with media:
            name = f"{recording.sid}.{recording.container_format}"
            self.set_header("Content-Type", MEDIA_TYPES[recording.container_format])
            # A recording still processing grows: send what it held when asked.
            remaining = os.fstat(media.fileno()).st_size
            self.set_header("Content-Length", str(remaining))
            self.set_header("Content-Disposition", f'attachment; filename="{name}"')
            while remaining and (chunk := media.read(min(MEDIA_CHUNK, remaining))):
                remaining -= len(chunk)
                self.write(chunk)
                await self.flush()
        self.finish()


class NotFoundHandler(TwilioHandler):
    """Any other path under ``/video/v1``: Twilio's 20404 body, not Jupyter's page."""

    @allow_unauthenticated
    def get(self, path: str) -> None:
        raise VideoError(20404, f"/video/v1/{path} is not a resource of this API")

    post = get


_ROOM = r"/video/v1/Rooms/([^/]+)"
_PARTICIPANT = _ROOM + r"/Participants/([^/]+)"

handlers: list[tuple[str, type[TwilioHandler]]] = [
    (r"/video/v1/Rooms/?", RoomsHandler),
    (_ROOM + r"/?", RoomHandler),
    (_ROOM + r"/Participants/?", ParticipantsHandler),
    (_PARTICIPANT + r"/?", ParticipantHandler),
    (_PARTICIPANT + r"/PublishedTracks/?", PublishedTracksHandler),
    (_PARTICIPANT + r"/PublishedTracks/([^/]+)/?", PublishedTrackHandler),
    (_PARTICIPANT + r"/SubscribedTracks/?", SubscribedTracksHandler),
    (_PARTICIPANT + r"/SubscribedTracks/([^/]+)/?", SubscribedTrackHandler),
    (_PARTICIPANT + r"/SubscribeRules/?", SubscribeRulesHandler),
    (_ROOM + r"/RecordingRules/?", RecordingRulesHandler),
    (_ROOM + r"/Recordings/?", RecordingsHandler),
    (_ROOM + r"/Recordings/([^/]+)/?", RecordingHandler),
    (_ROOM + r"/Recordings/([^/]+)/Media/?", RecordingMediaHandler),
    (r"/video/v1/Recordings/?", RecordingsHandler),
    (r"/video/v1/Recordings/([^/]+)/?", RecordingHandler),
    (r"/video/v1/Recordings/([^/]+)/Media/?", RecordingMediaHandler),
    (r"/video/v1/(.*)", NotFoundHandler),
]
