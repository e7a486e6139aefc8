"""VideoApp: the Jupyter server extension that hosts rooms, REST and signaling."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sqlite3
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from jupyter_core.paths import jupyter_data_dir
from jupyter_server.extension.application import ExtensionApp
from tornado.ioloop import PeriodicCallback
from traitlets import Bool, Dict, Enum, Float, Int, List, Unicode, default

from .. import account
from ..account import Credentials
from ..compositions import ComposerPool
from ..model import RoomType
from ..model.room import MAX_PARTICIPANTS, ROOM_TIMEOUT_RANGE, check_room_type
from ..sfu import DataLimits, MediaPlane, create_media_plane
from ..store import Store, open_store
from . import composition_resources, health, media_socket, metrics, rest, signaling, token
from .callbacks import Delivery, StatusCallbacks, StatusListener
from .compositions import Compositions
from .live import Conference, LiveSettings
from .recordings import Recordings
from .registry import RoomDefaults, RoomRegistry
from .signaling import JoinRate
from .turn import IceServers


@dataclass
class VideoContext:
    """What every handler of this extension reaches through ``settings["jupyter_video"]``."""

    app: VideoApp
    credentials: Credentials
    store: Store
    registry: RoomRegistry
    media: MediaPlane
    conference: Conference
    status_callbacks: StatusCallbacks
    recordings: Recordings
    compositions: Compositions
    ice_servers: IceServers = field(default_factory=IceServers)
    join_rate: JoinRate | None = None


def check_local_address(address: str, setting: str) -> None:
    """Raise ValueError unless ``address`` is one of this machine's: ICE would gather
    no candidate on it, and every participant's media would fail."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.bind((address, 0))
    except OSError as error:
        raise ValueError(
            f"{setting}: {address!r} is not an address of this machine ({error.strerror}); "
            "list addresses its interfaces have (`ip -brief address`), or leave the "
            "setting unset to use all of them"
        ) from None


def _env(name: str) -> str | None:
    return os.environ.get(name) or None


class VideoApp(ExtensionApp):
    """Live video rooms in Jupyter, compatible with Twilio Programmable Video."""

    name = "jupyter_video"
    description = __doc__ or ""
    load_other_extensions = True

    account_sid = Unicode(
        None,
        allow_none=True,
        config=True,
        help="Account SID (AC + 32 hex) that REST resources and tokens carry. "
        "Default: $JUPYTER_VIDEO_ACCOUNT_SID, else generated once and kept in the "
        "Jupyter data directory.",
    )
    auth_token = Unicode(
        None,
        allow_none=True,
        config=True,
        help="Auth token: HTTP Basic password with the account SID, and the key that "
        "signs status callbacks. Default: $JUPYTER_VIDEO_AUTH_TOKEN, else generated once.",
    )
    api_key_sid = Unicode(
        None,
        allow_none=True,
        config=True,
        help="API key SID (SK + 32 hex): the issuer of Access Tokens and a REST username. "
        "Default: $JUPYTER_VIDEO_API_KEY_SID, else generated once.",
    )
    api_key_secret = Unicode(
        None,
        allow_none=True,
        config=True,
        help="API key secret that signs Access Tokens (HS256) and authenticates REST calls. "
        "Default: $JUPYTER_VIDEO_API_KEY_SECRET, else generated once.",
    )
    credentials_file = Unicode(
        config=True,
        help="File (mode 0600) where generated credentials are kept.",
    )
    default_room_type = Unicode(
        "group",
        config=True,
        help="Type of rooms created without a Type (over REST, or ad hoc on connect): "
        "'group' or 'group-small' (media through the SFU), 'peer-to-peer' or 'go' "
        "(media straight between participants).",
    )
    max_participants = Int(
        50,
        config=True,
        help="Most participants a room may hold, and the default for new rooms.",
    )
    ad_hoc_rooms = Bool(
        True,
        config=True,
        help="Whether a client may create a room by connecting to a name that has no "
        "room in progress (otherwise it gets 53106 Room not found).",
    )
    empty_room_timeout = Int(
        5,
        config=True,
        help="Minutes a room stays in progress after its last participant left (1-60).",
    )
    unused_room_timeout = Int(
        5,
        config=True,
        help="Minutes a room nobody joined stays in progress (1-60).",
    )
    status_callback = Unicode(
        None,
        allow_none=True,
        config=True,
        help="Status callback URL for rooms created without a StatusCallback (over REST "
        "or ad hoc by connecting): Twilio's room, participant, track and recording events.",
    )
    status_callback_method = Unicode(
        "POST",
        config=True,
        help="HTTP method (POST or GET) of the default status_callback.",
    )
    region = Unicode(
        "gll",
        config=True,
        help="Region name clients are told: twilio-video's localParticipant.signalingRegion, "
        "and room.mediaRegion of rooms created without a MediaRegion ('gll', Twilio's "
        "Global Low Latency, unless you name your deployment's region, e.g. 'de1').",
    )
    timeout_minute_seconds = Float(
        60.0,
        config=True,
        help="Length in seconds of one room-timeout minute. Only tests shorten it.",
    )
    store_url = Unicode(
        config=True,
        help="Where rooms and participants are kept: 'sqlite:////abs/path.sqlite' "
        "(default: jupyter_video.sqlite in the Jupyter data directory) or 'memory://'.",
    )
    recordings_dir = Unicode(
        config=True,
        help="Directory where track recordings are written, one folder per room "
        "(default: recordings/ under jupyter_video's folder in the Jupyter data directory).",
    )
    compositions_dir = Unicode(
        config=True,
        help="Directory where compositions (one video file of a room's recordings) are "
        "written (default: compositions/ under jupyter_video's folder in the Jupyter data "
        "directory).",
    )
    composition_concurrency = Int(
        1,
        config=True,
        help="Compositions composed at once, each in a process of its own at lower "
        "priority (more compose faster, but take more cores from live rooms).",
    )

    media_workers = Int(
        None,
        allow_none=True,
        config=True,
        help="Media worker processes running the SFU (None: one per core; 0: in the "
        "server's own process, for debugging). A room lives on one worker.",
    )
    ice_host_addresses = List(
        Unicode(),
        default_value=None,
        allow_none=True,
        config=True,
        help="Addresses the SFU gathers ICE host candidates on (None: every interface "
        "but loopback, as aioice chooses). ['127.0.0.1'] for a machine used alone.",
    )
    media_transport = Enum(
        ["auto", "webrtc", "websocket"],
        "auto",
        config=True,
        help="How the widgets' media travels: 'webrtc' (ICE/UDP), 'websocket' (encoded "
        "frames over WebSockets on this server's own URL, where only it reaches), or "
        "'auto': WebRTC, falling back to WebSocket when ICE does not connect; auto "
        "means websocket on Binder and on a JupyterHub in Kubernetes (docs/media_socket.md).",
    )
    ice_public_address = Unicode(
        None,
        allow_none=True,
        config=True,
        help="Public IP address announced in the SFU's candidates, behind a 1:1 NAT.",
    )
    ice_servers = List(
        Dict(),
        config=True,
        help="STUN/TURN servers handed to every participant (by /video/token and the "
        "signaling 'iced' answer), as RTCIceServer dicts: "
        "[{'urls': ['turn:turn.example.org:3478'], 'username': ..., 'credential': ...}].",
    )
    turn_secret = Unicode(
        None,
        allow_none=True,
        config=True,
        help="coturn's static-auth-secret (use-auth-secret): each participant gets TURN "
        "REST API credentials for turn_urls, valid as long as its Access Token. "
        "Default: $JUPYTER_VIDEO_TURN_SECRET.",
    )
    turn_urls = List(
        Unicode(),
        config=True,
        help="URLs of the coturn that turn_secret is for: ['turn:turn.example.org:3478', "
        "'turns:turn.example.org:5349?transport=tcp'].",
    )
    metrics_public = Bool(
        False,
        config=True,
        help="Whether /video/metrics answers without authentication (a Prometheus on a "
        "private network); otherwise it takes REST credentials or a Jupyter session.",
    )
    joins_per_second = Float(
        10.0,
        config=True,
        help="Joins (signaling connect or sync) one client address may make per second "
        "on average, beyond join_burst at once; more are told busy (53006) and when to "
        "retry. 0: no limit.",
    )
    join_burst = Int(
        50,
        config=True,
        help="Joins one client address may make at once (a class behind one NAT address) "
        "before joins_per_second applies.",
    )
    max_tracks_per_participant = Int(
        16,
        config=True,
        help="Tracks one participant may publish at once; more are refused with 53203 "
        "(the room's MaxConcurrentPublishedTracks also applies).",
    )
    max_data_message_bytes = Int(
        16384,
        config=True,
        help="Largest data track message (bytes; Twilio's DataTrack limit is 16 KiB) the "
        "SFU forwards; it is announced in the SFU's SDP (a=max-message-size), so a WebRTC "
        "sender's send() refuses larger ones, and larger ones that arrive anyway are "
        "dropped, counted in /video/metrics and logged. 0: no limit.",
    )
    data_messages_per_second = Float(
        100.0,
        config=True,
        help="Data track messages one participant may send per second on average (all its "
        "data tracks together), beyond data_message_burst at once; more are dropped, "
        "counted in /video/metrics and logged. 0: no limit.",
    )
    data_message_burst = Int(
        200,
        config=True,
        help="Data track messages one participant may send at once before "
        "data_messages_per_second applies.",
    )
    session_timeout = Float(
        30.0,
        config=True,
        help="Seconds a participant whose signaling connection dropped may reconnect "
        "(twilio-video.js 'sync') before it is disconnected.",
    )
    status_callback_attempts = Int(
        4,
        config=True,
        help="Requests a room's status callback gets (the first included) before it is "
        "given up on and logged: a connection error, timeout or non-2xx answer fails one.",
    )
    status_callback_retry_delay = Float(
        1.0,
        config=True,
        help="Seconds before a failed status callback's first retry; each next retry "
        "waits twice as long.",
    )
    status_callback_timeout = Float(
        15.0,
        config=True,
        help="Seconds one status callback request may take (Twilio's webhook default).",
    )
    status_callback_queue_size = Int(
        1000,
        config=True,
        help="Status callbacks one room may have waiting for a slow or dead receiver; "
        "beyond it the oldest waiting ones are dropped (and counted in the log).",
    )

    moderator_groups = List(
        Unicode(),
        config=True,
        help="Hub service only: hub groups whose members moderate (create, complete and "
        "record rooms, disconnect participants), as the scope custom:video:moderate does.",
    )
    moderators = List(
        Unicode(),
        config=True,
        help="Identities that moderate classrooms (mute, remove, lock, spotlight, breakouts: "
        "docs/classroom.md) when they join with an Access Token; the REST API key's holder "
        "always does, and on a hub service the hub's moderators.",
    )
    student_room_policy = Unicode(
        "",
        config=True,
        help="Hub service only: regular expression (whole name) of the rooms a user who "
        "is not a moderator may create by joining; '' (default): only rooms in progress.",
    )
    hub_service_url = Unicode(
        config=True,
        help="In a JupyterHub user's server: base URL of the hub's video service "
        "(default: $JUPYTER_VIDEO_HUB_SERVICE_URL). When set, this server runs no rooms "
        "of its own: /video/token and REST are relayed to the service.",
    )

    @default("hub_service_url")
    def _default_hub_service_url(self) -> str:
        from ..hub.discovery import service_url

        return service_url() or ""

    @default("account_sid")
    def _default_account_sid(self) -> str | None:
        return _env("JUPYTER_VIDEO_ACCOUNT_SID")

    @default("auth_token")
    def _default_auth_token(self) -> str | None:
        return _env("JUPYTER_VIDEO_AUTH_TOKEN")

    @default("api_key_sid")
    def _default_api_key_sid(self) -> str | None:
        return _env("JUPYTER_VIDEO_API_KEY_SID")

    @default("api_key_secret")
    def _default_api_key_secret(self) -> str | None:
        return _env("JUPYTER_VIDEO_API_KEY_SECRET")

    @default("turn_secret")
    def _default_turn_secret(self) -> str | None:
        return _env("JUPYTER_VIDEO_TURN_SECRET")

    @default("credentials_file")
    def _default_credentials_file(self) -> str:
        return str(account.default_credentials_path())

    @default("store_url")
    def _default_store_url(self) -> str:
        return "sqlite:///" + str(
            Path(jupyter_data_dir()) / "jupyter_video" / "jupyter_video.sqlite"
        )

    @default("recordings_dir")
    def _default_recordings_dir(self) -> str:
        return str(Path(jupyter_data_dir()) / "jupyter_video" / "recordings")

    @default("compositions_dir")
    def _default_compositions_dir(self) -> str:
        return str(Path(jupyter_data_dir()) / "jupyter_video" / "compositions")

    def initialize_settings(self) -> None:
        self._log_the_package_here()
        if self.hub_service_url:
            return  # the relay's handlers carry all they need (hub/relay.py)
        try:
            self._initialize_settings()
        except (ValueError, OSError, sqlite3.Error) as error:
            # Jupyter logs a failed extension and serves on without it: a server that
            # looks up but has no rooms, or rooms that never carry media. Stop instead.
            self.log.critical("jupyter_video cannot start: %s", error)
            raise SystemExit(f"jupyter_video cannot start: {error}") from error

    def _log_the_package_here(self) -> None:
        """Send the package's module loggers (the SFU's layer choices and ICE
        restarts, the media socket's failures) to this app's log, at its level: with
        no handler of their own only warnings reached stderr, unformatted, and
        ``--VideoApp.log_level=DEBUG`` changed nothing."""
        package = logging.getLogger("jupyter_video")
        package.handlers = list(self.log.handlers)
        package.setLevel(min((h.level for h in self.log.handlers if h.level),
                             default=self.log.getEffectiveLevel()))
        package.propagate = False

    def _initialize_settings(self) -> None:
        if self.status_callback_method.upper() not in ("GET", "POST"):
            raise ValueError("VideoApp.status_callback_method must be GET or POST")
        self.status_callback_method = self.status_callback_method.upper()
        room_type = check_room_type(self.default_room_type)
        for name in ("max_data_message_bytes", "data_messages_per_second"):
            if getattr(self, name) < 0:
                raise ValueError(f"VideoApp.{name} must be 0 (no limit) or more")
        if self.data_message_burst < 1:
            raise ValueError("VideoApp.data_message_burst must be 1 or more")
        for name in ("empty_room_timeout", "unused_room_timeout"):
            low, high = ROOM_TIMEOUT_RANGE
            if not low <= getattr(self, name) <= high:
                raise ValueError(f"VideoApp.{name} must be between {low} and {high} minutes")
        if not 1 <= self.max_participants <= MAX_PARTICIPANTS[RoomType.GROUP]:
            raise ValueError("VideoApp.max_participants must be between 1 and 50")
        ice_servers = IceServers.from_settings(self.ice_servers, self.turn_secret, self.turn_urls)
        for address in self.ice_host_addresses or ():
            check_local_address(address, "VideoApp.ice_host_addresses")
        credentials = account.ensure_credentials(
            Path(self.credentials_file),
            {
                "account_sid": self.account_sid,
                "auth_token": self.auth_token,
                "api_key_sid": self.api_key_sid,
                "api_key_secret": self.api_key_secret,
            },
        )
        store = open_store(self.store_url)
        registry = RoomRegistry(
            store,
            credentials.account_sid,
            RoomDefaults(
                room_type=room_type,
                max_participants=self.max_participants,
                empty_room_timeout=self.empty_room_timeout,
                unused_room_timeout=self.unused_room_timeout,
                status_callback=self.status_callback,
                status_callback_method=self.status_callback_method,
                media_region=self.region,
            ),
            timeout_minute=timedelta(seconds=self.timeout_minute_seconds),
        )
        registry.recover()
        media = create_media_plane(
            self.media_workers, self.ice_host_addresses, self.ice_public_address,
            DataLimits(self.max_data_message_bytes, self.data_messages_per_second,
                       self.data_message_burst),
        )
        conference = Conference(
            registry,
            media,
            credentials.account_sid,
            credentials.api_keys,
            LiveSettings(
                ad_hoc_rooms=self.ad_hoc_rooms,
                session_timeout=self.session_timeout,
                signaling_region=self.region,
                max_tracks_per_participant=self.max_tracks_per_participant,
            ),
        )
        status_callbacks = StatusCallbacks(
            credentials.auth_token,
            Delivery(
                attempts=self.status_callback_attempts,
                first_delay=self.status_callback_retry_delay,
                timeout=self.status_callback_timeout,
                queue_size=self.status_callback_queue_size,
            ),
            self.log,
            store,
        )
        # First, so that it numbers events in the order the registry emits them.
        registry.listeners.insert(0, status_callbacks.on_room_event)
        recordings = Recordings(registry, media, Path(self.recordings_dir), status_callbacks)
        if self.serverapp is not None:
            recordings.api_root = self.serverapp.connection_url.rstrip("/") + "/video/v1"
        recordings.recover()  # after registry.recover(): nothing is recording any more
        conference.recordings = recordings
        compositions = Compositions(
            registry,
            Path(self.compositions_dir),
            ComposerPool(self.composition_concurrency),
            status_callbacks,
        )
        registry.listeners.append(compositions.on_room_event)
        compositions.recover()  # after recordings.recover(): their files are finished
        self.context = VideoContext(
            self,
            credentials,
            store,
            registry,
            media,
            conference,
            status_callbacks,
            recordings,
            compositions,
            ice_servers,
            JoinRate(self.joins_per_second, self.join_burst),
        )
        self.settings["jupyter_video"] = self.context
        # Imported here: the classroom builds on this package (server.live, server.rest).
        from ..classroom.control import Classrooms

        self.settings["jupyter_video_classroom"] = Classrooms(
            conference, registry, store,
            (credentials.account_sid, credentials.api_key_sid, credentials.api_key_secret),
            self.moderators,
        )

    @property
    def status_listeners(self) -> list[StatusListener]:
        """Python callables given every room event's status callback parameters (a dict).

        Sync or async; called as each event happens, for every room; what they raise
        is logged. ``app.status_listeners.append(fn)`` or ``app.on_status_callback(fn)``.
        """
        return self.context.status_callbacks.listeners

    def on_status_callback(self, listener: StatusListener) -> StatusListener:
        """Add ``listener`` to ``status_listeners``; usable as a decorator."""
        self.status_listeners.append(listener)
        return listener

    def initialize_handlers(self) -> None:
        if self.hub_service_url:
            from ..hub import relay

            self.handlers.extend(relay.handlers(self.hub_service_url))
            return
        from ..classroom import handlers as classroom

        self.handlers.extend(signaling.handlers)
        self.handlers.extend(classroom.handlers)
        self.handlers.extend(media_socket.handlers)
        self.handlers.extend(composition_resources.handlers)  # before rest's catch-all
        self.handlers.extend(rest.handlers)
        self.handlers.extend(token.handlers)
        self.handlers.extend(health.handlers)
        self.handlers.extend(metrics.handlers)

    async def _start_jupyter_server_extension(self, serverapp: Any) -> None:
        if self.hub_service_url:
            self.log.info("jupyter_video: rooms are the hub service's, at %s",
                          self.hub_service_url)
            return
        await self.context.media.start()
        self.context.status_callbacks.start()
        self._media_events = asyncio.ensure_future(self.context.conference.run_media_events())
        # Rooms end by themselves after their timeouts: check a few times per minute.
        interval_ms = max(100.0, min(10_000.0, self.timeout_minute_seconds * 1000 / 6))
        self._expiry = PeriodicCallback(self._expire_rooms, interval_ms)
        self._expiry.start()
        self._server_info = account.write_server_info(serverapp.connection_url)
        self.context.recordings.api_root = serverapp.connection_url.rstrip("/") + "/video/v1"
        self.context.compositions.api_root = self.context.recordings.api_root
        self.context.compositions.start()

    def _expire_rooms(self) -> None:
        self.context.registry.expire_rooms()

    async def stop_extension(self) -> None:
        expiry = getattr(self, "_expiry", None)
        if expiry is not None:
            expiry.stop()
        if getattr(self, "_server_info", None) is not None:
            account.remove_server_info()
        context = getattr(self, "context", None)
        if context is not None:
            await context.compositions.close()
            await context.conference.close()
            await context.status_callbacks.close()
            if getattr(self, "_media_events", None) is not None:
                self._media_events.cancel()
            await context.media.close()
            context.store.close()
