"""The Compositions REST API, wire-compatible with Twilio Video v1.

``/v1/Compositions`` (create, list, fetch, delete, ``/Media``),
``/v1/CompositionHooks`` (create, list, fetch, update, delete) and
``/v1/CompositionSettings/Default``, ``/v1/RecordingSettings/Default``, as
Twilio's helper library calls them
(https://www.twilio.com/docs/video/api/compositions-resource,
https://www.twilio.com/docs/video/api/composition-hooks). Media stays on this
server's disk, so the settings' S3 storage and encryption cannot be turned on.
"""

from __future__ import annotations

import json
import os
from typing import Any
from urllib.parse import urlparse

from jupyter_server.auth.decorator import allow_unauthenticated

from .. import sids
from ..compositions import parse_layout, parse_resolution
from ..compositions.client import PERCENT_HEADER, REMAINING_HEADER
from ..compositions.layout import check_sources, layout_error
from ..errors import VideoError
from ..model import utcnow
from ..model.composition import (
    FORMATS,
    MEDIA_TYPES,
    Composition,
    CompositionHook,
    CompositionSpec,
    CompositionStatus,
    StorageSettings,
)
from ..store import Query
from .compositions import CompositionFilter, Compositions
from .registry import Page
from .resources import Urls, iso
from .rest import _PAGING, MEDIA_CHUNK, Params, TwilioHandler

_SPEC = (
    "VideoLayout", "AudioSources", "AudioSourcesExcluded", "Resolution", "Format", "Trim",
    "StatusCallback", "StatusCallbackMethod",
)  # fmt: skip
_CREATE = ("RoomSid", *_SPEC)
_LIST = ("Status", "DateCreatedAfter", "DateCreatedBefore", "RoomSid", *_PAGING)
_HOOK = ("FriendlyName", "Enabled", *_SPEC)
_HOOK_LIST = ("Enabled", "DateCreatedAfter", "DateCreatedBefore", "FriendlyName", *_PAGING)
_SETTINGS = (
    "FriendlyName", "AwsCredentialsSid", "EncryptionKeySid", "AwsS3Url", "AwsStorageEnabled",
    "EncryptionEnabled",
)  # fmt: skip
SETTINGS = {"CompositionSettings", "RecordingSettings"}


def parse_spec(params: Params, base: CompositionSpec | None = None) -> CompositionSpec:
    """A composition's (or hook's) parameters, checked; unset ones are ``base``'s."""
    spec = CompositionSpec() if base is None else CompositionSpec(**vars(base))
    resolution = params.text("Resolution")
    if resolution is not None:
        parse_resolution(resolution)
        spec.resolution = resolution
    width, height = parse_resolution(spec.resolution)
    text = params.text("VideoLayout")
    if text is not None:
        try:
            layout = json.loads(text) if text.strip() else {}
        except ValueError:
            raise layout_error(f"VideoLayout must be JSON, not {text[:80]!r}") from None
        spec.video_layout = layout
    parse_layout(spec.video_layout, width, height)
    for name, key in (("AudioSources", "audio_sources"),
                      ("AudioSourcesExcluded", "audio_sources_excluded")):  # fmt: skip
        values = params.texts(name)
        if values is not None:
            setattr(spec, key, check_sources([v for v in values if v], name))
    fmt = params.choice("Format", FORMATS)
    if fmt is not None:
        spec.format = fmt
    trim = params.boolean("Trim")
    if trim is not None:
        spec.trim = trim
    callback = params.text("StatusCallback")
    if callback is not None:
        parsed = urlparse(callback)
        if callback and (parsed.scheme not in ("http", "https") or not parsed.netloc):
            raise VideoError(20001, f"StatusCallback must be an http(s) URL, not {callback!r}",
                             status=400)
        spec.status_callback = callback or None
    method = params.text("StatusCallbackMethod")
    if method is not None:
        if method.upper() not in ("GET", "POST"):
            raise VideoError(20001, f"StatusCallbackMethod must be GET or POST, not {method!r}",
                             status=400)
        spec.status_callback_method = method.upper()
    if not any(region.get("video_sources") for region in spec.video_layout.values()) and not (
        spec.audio_sources
    ):
        raise layout_error(
            "Nothing to compose: give AudioSources (e.g. *) and/or a VideoLayout whose "
            "regions name video_sources"
        )
    return spec


def composition_json(composition: Composition, urls: Urls) -> dict[str, Any]:
    url = f"{urls.root}/Compositions/{composition.sid}"
    return {
        "account_sid": composition.account_sid,
        "status": composition.status.value,
        "date_created": iso(composition.date_created),
        "date_completed": iso(composition.date_completed),
        "date_deleted": iso(composition.date_deleted),
        "sid": composition.sid,
        "room_sid": composition.room_sid,
        "audio_sources": composition.audio_sources,
        "audio_sources_excluded": composition.audio_sources_excluded,
        "video_layout": composition.video_layout,
        "resolution": composition.resolution,
        "trim": composition.trim,
        "format": composition.format,
        "bitrate": composition.bitrate,
        "size": composition.size,
        "duration": composition.duration,
        "media_external_location": None,
        "status_callback": composition.status_callback,
        "status_callback_method": composition.status_callback_method,
        "url": url,
        "links": {"media": f"{url}/Media"},
    }


def hook_json(hook: CompositionHook, urls: Urls) -> dict[str, Any]:
    return {
        "account_sid": hook.account_sid,
        "friendly_name": hook.friendly_name,
        "enabled": hook.enabled,
        "date_created": iso(hook.date_created),
        "date_updated": iso(hook.date_updated),
        "sid": hook.sid,
        "audio_sources": hook.audio_sources,
        "audio_sources_excluded": hook.audio_sources_excluded,
        "video_layout": hook.video_layout,
        "resolution": hook.resolution,
        "trim": hook.trim,
        "format": hook.format,
        "status_callback": hook.status_callback,
        "status_callback_method": hook.status_callback_method,
        "url": f"{urls.root}/CompositionHooks/{hook.sid}",
    }


def settings_json(settings: StorageSettings, urls: Urls) -> dict[str, Any]:
    return {
        "account_sid": settings.account_sid,
        "friendly_name": settings.friendly_name,
        "aws_credentials_sid": None,
        "aws_s3_url": None,
        "aws_storage_enabled": False,
        "encryption_key_sid": None,
        "encryption_enabled": False,
        "url": f"{urls.root}/{settings.sid}/Default",
    }


class CompositionsBase(TwilioHandler):
    @property
    def compositions(self) -> Compositions:
        return self.settings["jupyter_video"].compositions


class CompositionsHandler(CompositionsBase):
    """``/v1/Compositions``: create and list."""

    @allow_unauthenticated
    def post(self) -> None:
        self.authorize("create_composition")
        params = self.params(_CREATE, "creating a Composition")
        room_sid = params.text("RoomSid")
        if not room_sid:
            raise VideoError(20001, "RoomSid is required: the RM... SID of an ended room",
                             status=400)
        spec = parse_spec(params)
        composition = self.compositions.create(self.room(room_sid), spec)
        self.reply(composition_json(composition, self.urls), status=201)

    @allow_unauthenticated
    def get(self) -> None:
        params = self.params(_LIST, "listing Compositions")
        status = params.choice("Status", [s.value for s in CompositionStatus])
        room_sid = params.text("RoomSid")
        where = CompositionFilter(
            status=CompositionStatus(status) if status else None,
            room_sid=room_sid,  # a SID no room has lists nothing, as Twilio does
            created_after=params.time("DateCreatedAfter"),
            created_before=params.time("DateCreatedBefore"),
        )
        self.reply_page(
            "compositions",
            params,
            lambda offset, limit: self.compositions.list(where, offset, limit),
            lambda composition: composition_json(composition, self.urls),
        )


class CompositionHandler(CompositionsBase):
    """``/v1/Compositions/{CompositionSid}``: fetch, and delete (the media goes, the record
    stays ``deleted``)."""

    @allow_unauthenticated
    def get(self, sid: str) -> None:
        self.params((), "fetching a Composition")
        composition = self.compositions.get(sid)
        # Progress is not a field of Twilio's resource (it comes in callbacks): headers
        # give it to jupyter_video.compose()'s progress bar without changing the JSON.
        if composition.sid in self.compositions.progress:
            percent, remaining = self.compositions.progress[composition.sid]
            self.set_header(PERCENT_HEADER, str(percent))
            if remaining is not None:
                self.set_header(REMAINING_HEADER, str(remaining))
        self.reply(composition_json(composition, self.urls))

    @allow_unauthenticated
    def delete(self, sid: str) -> None:
        self.authorize("delete_composition")
        self.params((), "deleting a Composition")
        self.compositions.delete(self.compositions.get(sid))
        self.set_status(204)
        self.finish()


class CompositionMediaHandler(CompositionsBase):
    """``/v1/Compositions/{CompositionSid}/Media``: as Twilio, a redirect to the file (with
    ``redirect_to`` in the body, for clients that do not follow it); the file itself at
    ``/Media/{CompositionSid}.{format}``."""

    @allow_unauthenticated
    async def get(self, sid: str, file: str | None = None) -> None:
        self.params(("Ttl",), "fetching a Composition's media")
        composition = self.compositions.get(sid)
        if composition.status is not CompositionStatus.COMPLETED:
            raise VideoError(
                20404,
                f"Composition {sid} is {composition.status.value}: its media is there "
                "once it is completed",
                status=404,
            )
        name = f"{composition.sid}.{composition.format}"
        if file is None:
            target = f"{self.urls.root}/Compositions/{sid}/Media/{name}"
            self.set_status(302)
            self.set_header("Location", target)
            self.reply({"redirect_to": target}, status=302)
            return
        if file != name:
            raise VideoError(20404, f"Composition {sid}'s media is {name}", status=404)
        try:
            media = open(composition.path, "rb")  # noqa: SIM115 - closed below, across awaits
        except FileNotFoundError:
            raise VideoError(20404, f"The media of Composition {sid} is gone") from None
        with media:
            remaining = os.fstat(media.fileno()).st_size
            self.set_header("Content-Type", MEDIA_TYPES[composition.format])
            self.set_header("Content-Length", str(remaining))
            self.set_header("Content-Disposition", f'attachment; filename="{name}"')
            while remaining and (chunk := media.read(min(MEDIA_CHUNK, remaining))):
                remaining -= len(chunk)
                self.write(chunk)
                await self.flush()
        self.finish()


class CompositionHooksHandler(CompositionsBase):
    """``/v1/CompositionHooks``: create and list."""

    @allow_unauthenticated
    def post(self) -> None:
        self.authorize("create_composition_hook")
        params = self.params(_HOOK, "creating a CompositionHook")
        hook = CompositionHook(
            sid=sids.new_sid(sids.HOOK),
            account_sid=self.registry.account_sid,
            friendly_name=_friendly_name(params),
            enabled=params.boolean("Enabled") is not False,
            **vars(parse_spec(params)),
        )
        self.reply(hook_json(self.compositions.save_hook(hook), self.urls), status=201)

    @allow_unauthenticated
    def get(self) -> None:
        params = self.params(_HOOK_LIST, "listing CompositionHooks")
        equal: dict[str, Any] = {}
        enabled = params.boolean("Enabled")
        if enabled is not None:
            equal["enabled"] = enabled
        if params.text("FriendlyName") is not None:
            equal["friendly_name"] = params.text("FriendlyName")
        after, before = params.time("DateCreatedAfter"), params.time("DateCreatedBefore")
        store = self.compositions.store
        self.reply_page(
            "composition_hooks",
            params,
            lambda offset, limit: Page(
                store.list(CompositionHook, Query(equal, after, before, offset, limit)),
                store.count(CompositionHook, Query(equal, after, before)),
            ),
            lambda hook: hook_json(hook, self.urls),
        )


class CompositionHookHandler(CompositionsBase):
    """``/v1/CompositionHooks/{Sid}``: fetch, update (FriendlyName required, as Twilio
    has it), delete."""

    @allow_unauthenticated
    def get(self, sid: str) -> None:
        self.params((), "fetching a CompositionHook")
        self.reply(hook_json(self.compositions.get_hook(sid), self.urls))

    @allow_unauthenticated
    def post(self, sid: str) -> None:
        self.authorize("update_composition_hook")
        params = self.params(_HOOK, "updating a CompositionHook")
        hook = self.compositions.get_hook(sid)
        spec = parse_spec(params, hook.spec)
        hook.friendly_name = _friendly_name(params)
        enabled = params.boolean("Enabled")
        if enabled is not None:
            hook.enabled = enabled
        for key, value in vars(spec).items():
            setattr(hook, key, value)
        hook.date_updated = utcnow()
        self.reply(hook_json(self.compositions.save_hook(hook), self.urls))

    @allow_unauthenticated
    def delete(self, sid: str) -> None:
        self.authorize("delete_composition_hook")
        self.params((), "deleting a CompositionHook")
        self.compositions.store.delete(CompositionHook, self.compositions.get_hook(sid).sid)
        self.set_status(204)
        self.finish()


def _friendly_name(params: Params) -> str:
    name = params.text("FriendlyName")
    if not name or len(name) > 100:
        raise VideoError(20001, "FriendlyName is required, up to 100 characters", status=400)
    return name


class StorageSettingsHandler(CompositionsBase):
    """``/v1/CompositionSettings/Default`` and ``/v1/RecordingSettings/Default``."""

    @allow_unauthenticated
    def get(self, which: str) -> None:
        self.params((), f"fetching {which}")
        settings = self.compositions.settings(which, self.registry.account_sid)
        self.reply(settings_json(settings, self.urls))

    @allow_unauthenticated
    def post(self, which: str) -> None:
        self.authorize("update_storage_settings")
        params = self.params(_SETTINGS, f"updating {which}")
        for name in ("AwsStorageEnabled", "EncryptionEnabled"):
            if params.boolean(name):
                raise VideoError(
                    53114,
                    f"{name}=true is not supported: this server keeps media on its own disk "
                    "(VideoApp.recordings_dir, VideoApp.compositions_dir), unencrypted",
                )
        settings = self.compositions.settings(which, self.registry.account_sid)
        if params.text("FriendlyName") is None:
            raise VideoError(20001, "FriendlyName is required", status=400)
        settings.friendly_name = params.text("FriendlyName") or ""
        self.compositions.store.save(settings)
        self.reply(settings_json(settings, self.urls), status=201)


_ROOT = r"/video/v1"
handlers: list[tuple[str, type[TwilioHandler]]] = [
    (_ROOT + r"/Compositions/?", CompositionsHandler),
    (_ROOT + r"/Compositions/([^/]+)/?", CompositionHandler),
    (_ROOT + r"/Compositions/([^/]+)/Media/?", CompositionMediaHandler),
    (_ROOT + r"/Compositions/([^/]+)/Media/([^/]+)", CompositionMediaHandler),
    (_ROOT + r"/CompositionHooks/?", CompositionHooksHandler),
    (_ROOT + r"/CompositionHooks/([^/]+)/?", CompositionHookHandler),
    (_ROOT + r"/(CompositionSettings|RecordingSettings)/Default/?", StorageSettingsHandler),
]
"""Registered before ``rest.handlers``, whose last pattern answers every other path 20404."""
