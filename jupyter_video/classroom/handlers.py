"""The classroom's HTTP and WebSocket handlers, under ``{base_url}video/classroom/``.

- ``GET  rooms/{room}``: the classroom state, participants and room records
  (the main room and its breakouts).
- ``POST rooms/{room}/actions/{action}``: JSON body of the action's arguments
  (:class:`.model.Action`); the reply is the action's result.
- ``GET  rooms/{room}/chat?format=json|csv``: the chat history (every session of
  the room's name, oldest first).
- ``GET  rooms/{room}/monitor``: the room monitor's series, warnings and the
  media plane's counters.
- ``channel`` (WebSocket): a participant's channel. Its first message is
  ``{"type": "hello", "token": <Access Token>, "room": <name>}``; then the server
  sends ``state``, ``chat_history``, ``chat``, ``muted``, ``unmute_allowed``,
  ``removed``, ``move``, ``broadcast`` and ``result`` messages, and takes
  ``action`` (``{"type": "action", "id", "action", "args"}``) and ``stats``.

Who asks decides what they may do: HTTP Basic with the API key (the admin), an
Access Token (``X-Video-Token`` header, or the channel's hello: its identity is
a moderator when listed in ``VideoApp.moderators``), or a Jupyter session (the
server's owner; on a hub service, a moderator by the hub's roles).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
from typing import Any

from jupyter_server.auth.decorator import allow_unauthenticated
from tornado.websocket import WebSocketClosedError, WebSocketHandler

from ..errors import VideoError
from ..server.rest import Permissions, TwilioHandler
from ..tokens import TokenClaims, verify_token
from .control import Actor, Classrooms
from .grant import moderator_claim

CHAT_FIELDS = ("time", "identity", "text", "room", "room_sid", "sid")


def _verify(handler: Any, token: str) -> TokenClaims:
    credentials = handler.settings["jupyter_video"].credentials
    return verify_token(token, account_sid=credentials.account_sid,
                        api_keys=credentials.api_keys)


class ClassroomHandler(TwilioHandler):
    """Base: who the caller is, as an :class:`Actor`."""

    actor: Actor

    @property
    def classrooms(self) -> Classrooms:
        return self.settings["jupyter_video_classroom"]

    async def prepare(self) -> None:  # type: ignore[override]
        token = self.request.headers.get("X-Video-Token")
        if token:
            claims = _verify(self, token)
            if moderator_claim(token):
                self.classrooms.grant_moderator(claims.identity)
            self.actor = Actor(claims.identity, self.classrooms.is_moderator(claims.identity))
            return
        await super().prepare()  # HTTP Basic or a Jupyter session, else 20003
        if self._basic_authenticated:
            self.actor = Actor(None, True)
            return
        permissions: Permissions | None = self.settings.get("jupyter_video_permissions")
        moderator = True
        if permissions is not None:
            try:
                permissions(self.current_user, "moderate_classroom", None)
            except VideoError:
                moderator = False
        # A hub user acts as themselves; the owner of a plain Jupyter server as the
        # teacher (as the API key's holder does: they can read the key anyway).
        name = getattr(self.current_user, "username", None) if permissions else None
        if moderator and name is not None:  # the hub's teacher, as their widget's token says
            self.classrooms.grant_moderator(name)
        self.actor = Actor(name, moderator)

    def check_xsrf_cookie(self) -> None:
        if self.request.headers.get("X-Video-Token"):
            return None  # the token is the credential; browsers never add it themselves
        return super().check_xsrf_cookie()

    def body_json(self) -> dict[str, Any]:
        if not self.request.body:
            return {}
        try:
            body = json.loads(self.request.body)
        except ValueError:
            raise VideoError(20001, "Send the action's arguments as a JSON object") from None
        if not isinstance(body, dict):
            raise VideoError(20001, "Send the action's arguments as a JSON object")
        return body


class ClassroomRoomHandler(ClassroomHandler):
    @allow_unauthenticated
    def get(self, room: str) -> None:
        classrooms = self.classrooms
        self.reply({
            **classrooms.view(room, self.actor.identity),
            "participants": classrooms.participants(room),
            "records": classrooms.room_records(room),
        })


class ClassroomActionHandler(ClassroomHandler):
    @allow_unauthenticated
    async def post(self, room: str, action: str) -> None:
        result = await self.classrooms.act(self.actor, room, action, self.body_json())
        self.reply({"result": result})


class ChatHistoryHandler(ClassroomHandler):
    @allow_unauthenticated
    def get(self, room: str) -> None:
        messages = [m.to_json() for m in self.classrooms.chat_history(room)]
        form = self.get_query_argument("format", "json")
        if form == "csv":
            out = io.StringIO()
            writer = csv.DictWriter(out, CHAT_FIELDS, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(messages)
            self.set_header("Content-Disposition", f'attachment; filename="{room}-chat.csv"')
            self.finish(out.getvalue(), set_content_type="text/csv; charset=utf-8")
        elif form == "json":
            self.reply({"room": room, "messages": messages})
        else:
            raise VideoError(20001, f"format must be json or csv, not {form!r}")


class MonitorHandler(ClassroomHandler):
    @allow_unauthenticated
    async def get(self, room: str) -> None:
        if not self.actor.moderator:
            raise VideoError(20403, f"{self.actor.name} may not watch the room monitor: "
                             "only a moderator may")
        self.reply(await self.classrooms.monitor_view(room))


class ChannelHandler(WebSocketHandler):
    """A participant's classroom channel; the hello's Access Token says who it is."""

    identity = ""
    room = ""
    moderator = False
    _greeted = False

    @property
    def classrooms(self) -> Classrooms:
        return self.settings["jupyter_video_classroom"]

    def check_origin(self, origin: str) -> bool:
        return True  # the Access Token in hello is the credential, as for signaling

    def send(self, message: dict[str, Any]) -> None:
        with contextlib.suppress(WebSocketClosedError):
            self.write_message(json.dumps(message))

    async def on_message(self, message: str | bytes) -> None:
        try:
            data = json.loads(message)
            if not isinstance(data, dict):
                raise ValueError
        except ValueError:
            self.send({"type": "error", "code": 53004, "message": "Send JSON objects"})
            return
        try:
            await self._handle(data)
        except VideoError as error:
            self.send({"type": "result" if "id" in data else "error", "id": data.get("id"),
                       "error": {"code": error.code, "message": error.message}})
            if not self._greeted:
                self.close(4000 + error.code % 1000, error.message[:120])

    async def _handle(self, data: dict[str, Any]) -> None:
        kind = data.get("type")
        if not self._greeted:
            if kind != "hello":
                raise VideoError(53004, "The channel's first message is hello with a token")
            token = str(data.get("token", ""))
            claims = _verify(self, token)
            room = data.get("room") or claims.room
            if not isinstance(room, str) or not room:
                raise VideoError(20001, "hello needs the room's name")
            live = self.classrooms.registry.find_in_progress(room)
            # A hub student's token names the room by its SID (hub/service.py).
            if claims.room is not None and claims.room not in (room, live and live.sid):
                raise VideoError(20106, f"The Access Token grants room {claims.room!r}, "
                                 f"not {room!r}")
            self.identity, self.room = claims.identity, room
            if moderator_claim(token):  # signed by this server: a hub service's teacher
                self.classrooms.grant_moderator(claims.identity)
            self.moderator = self.classrooms.is_moderator(claims.identity)
            self._greeted = True
            self.classrooms.open(self)
        elif kind == "action":
            actor = Actor(self.identity, self.moderator)
            result = await self.classrooms.act(actor, self.room, str(data.get("action")),
                                               data.get("args") or {})
            if "id" in data:
                self.send({"type": "result", "id": data["id"], "result": result})
        elif kind == "stats":
            samples = data.get("samples")
            if isinstance(samples, list):
                self.classrooms.report_stats(self.room, self.identity, samples)
            self.classrooms.monitor.speaker(self.room, data.get("dominant_speaker"))
        else:
            raise VideoError(53004, f"Unknown classroom message type {kind!r}")

    def on_close(self) -> None:
        if self._greeted:
            self.classrooms.closed(self)


_ROOM = r"/video/classroom/rooms/([^/]+)"

handlers: list[tuple[str, Any]] = [
    (r"/video/classroom/channel/?", ChannelHandler),
    (_ROOM + r"/?", ClassroomRoomHandler),
    (_ROOM + r"/actions/([a-z_]+)/?", ClassroomActionHandler),
    (_ROOM + r"/chat/?", ChatHistoryHandler),
    (_ROOM + r"/monitor/?", MonitorHandler),
]
