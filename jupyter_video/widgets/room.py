"""RoomWidget: a video room in a notebook cell, its state live in Python."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import anywidget
import traitlets as t

from . import _frontend

MessageCallback = Callable[[dict[str, Any]], Any]
ParticipantCallback = Callable[[str, dict[str, Any]], Any]
Kind = Literal["audio", "video"]

STATES = ("connecting", "connected", "reconnecting", "disconnected")


class RoomWidget(anywidget.AnyWidget):
    """Joins ``room`` when displayed, with the browser's camera and microphone.

    The browser half is twilio-video.js; it fetches its Access Token from the
    server's ``/video/token`` with the page's Jupyter session, so no secret
    passes through the kernel. The traitlets below are set by the browser and
    update while the kernel is idle (between cells).
    """

    _esm = _frontend.esm()
    _widget = t.Unicode("room").tag(sync=True)
    _server_url = t.Unicode("").tag(sync=True)

    room = t.Unicode("lab", help="Room name (unique name) to join.").tag(sync=True)
    identity = t.Unicode(
        None,
        allow_none=True,
        help="Display identity asked for (made unique in the room); once joined, the one used.",
    ).tag(sync=True)
    type = t.Enum(
        ["", "group", "group-small", "peer-to-peer", "go"], "",
        help="Type of the room if this widget creates it: 'group' or 'group-small' (media "
        "through the server's SFU), 'peer-to-peer' or 'go' (media straight between the "
        "participants); '' takes the server's VideoApp.default_room_type. A room already "
        "in progress keeps the type it was created with.",
    ).tag(sync=True)
    audio = t.Bool(True, help="Publish the microphone.").tag(sync=True)
    video = t.Bool(True, help="Publish the camera.").tag(sync=True)
    audio_device = t.Unicode(None, allow_none=True, help="Microphone deviceId.").tag(sync=True)
    video_device = t.Unicode(None, allow_none=True, help="Camera deviceId.").tag(sync=True)

    media_transport = t.Enum(
        ["", "auto", "webrtc", "websocket"], "",
        help="How this widget's media travels: 'webrtc', 'websocket' (the server's own "
        "URL, where UDP does not reach), 'auto' (WebRTC, then WebSocket if ICE does not "
        "connect); '' takes the server's VideoApp.media_transport.",
    ).tag(sync=True)
    layout = t.Enum(
        ["grid", "speaker", "presentation"], "grid",
        help="How the room is laid out, which sets the Bandwidth Profile mode the widget "
        "connects with: 'grid' (every tile alike), 'speaker' (collaboration: the dominant "
        "speaker high priority), 'presentation' (only high-priority tracks get high layers).",
    ).tag(sync=True)
    transport = t.Unicode(
        "", help="The transport in use once connected: 'webrtc' or 'websocket'."
    ).tag(sync=True)
    state = t.Enum(STATES, "disconnected", help="Connection state of the browser.").tag(sync=True)
    room_sid = t.Unicode("", help="RM... once connected.").tag(sync=True)
    participant_sid = t.Unicode("", help="PA... of this widget's participant.").tag(sync=True)
    participants = t.List(
        t.Dict(),
        help="Remote participants: sid, identity, state, network_quality_level (0-5 or None), "
        "tracks (sid, kind, name, enabled, subscribed, switched_off).",
    ).tag(sync=True)
    messages = t.List(
        t.Dict(), help="Chat messages in order: sid (sender), identity, text, time (ISO 8601)."
    ).tag(sync=True)
    dominant_speaker = t.Unicode(
        None, allow_none=True, help="Identity of the dominant speaker."
    ).tag(sync=True)
    error = t.Dict(
        default_value=None,
        allow_none=True,
        help="Last error: code (Twilio's, or None), name, message, remedy.",
    ).tag(sync=True)
    classroom = t.Dict(
        default_value=None,
        allow_none=True,
        help="The room's classroom state (docs/classroom.md): locked, mute_on_join, "
        "spotlight, hands (identity, waiting_seconds), breakouts, and 'you' (identity, "
        "moderator, held: kinds a moderator holds off).",
    ).tag(sync=True)

    def __init__(
        self,
        room: str = "lab",
        identity: str | None = None,
        audio: bool = True,
        video: bool = True,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("_server_url", _frontend.server_url())
        super().__init__(room=room, identity=identity, audio=audio, video=video, **kwargs)
        self._message_callbacks: list[MessageCallback] = []
        self._participant_callbacks: list[ParticipantCallback] = []
        self.observe(self._on_messages, names="messages")
        self.observe(self._on_participants, names="participants")

    def __repr__(self) -> str:
        kind = f", type={self.type!r}" if self.type else ""
        return (f"RoomWidget(room={self.room!r}{kind}, state={self.state!r}, "
                f"identity={self.identity!r})")

    # -- commands to the browser -------------------------------------------------

    def send_message(self, text: str) -> None:
        """Send ``text`` to everyone in the room on the chat data track."""
        self._command("send_message", text=str(text))

    def subscribe(self, track_sid: str) -> None:
        """Receive a remote track again (SubscribeRules of this participant)."""
        self._command("subscribe", track_sid=track_sid)

    def unsubscribe(self, track_sid: str) -> None:
        """Stop receiving a remote track (SubscribeRules of this participant)."""
        self._command("unsubscribe", track_sid=track_sid)

    def mute(self, kind: Kind = "audio") -> None:
        """Disable the local microphone (``"audio"``) or camera (``"video"``); others see it."""
        self._command("mute", kind=_kind(kind))

    def unmute(self, kind: Kind = "audio") -> None:
        """Enable the local microphone or camera again."""
        self._command("unmute", kind=_kind(kind))

    def leave(self) -> None:
        """Disconnect the browser from the room."""
        self._command("leave")

    def raise_hand(self) -> None:
        """Raise this participant's hand (the teacher's list shows it, in order)."""
        self._command("raise_hand")

    def lower_hand(self, identity: str | None = None) -> None:
        """Lower this participant's hand (a moderator may lower ``identity``'s)."""
        self._command("lower_hand", identity=identity)

    def react(self, reaction: str = "thumbs_up") -> None:
        """Show a reaction to everyone: thumbs_up, clap, laugh, surprised, heart, celebrate."""
        self._command("classroom", action="react", args={"reaction": reaction})

    @property
    def hands(self) -> list[dict[str, Any]]:
        """Raised hands in order, as this widget last saw them."""
        return list((self.classroom or {}).get("hands", []))

    def _command(self, command: str, **fields: Any) -> None:
        if self.state not in ("connected", "reconnecting"):
            raise RuntimeError(
                f"RoomWidget is {self.state}: display it and wait until state is 'connected' "
                "(traitlets update between cells)"
            )
        self.send({"command": command, **fields})

    # -- callbacks ---------------------------------------------------------------

    def on_message(self, callback: MessageCallback) -> MessageCallback:
        """Call ``callback(message)`` for every new chat message (usable as a decorator)."""
        self._message_callbacks.append(callback)
        return callback

    def on_participant(self, callback: ParticipantCallback) -> ParticipantCallback:
        """Call ``callback(event, participant)`` when a remote participant connects or
        disconnects (``event`` is ``"connected"`` or ``"disconnected"``)."""
        self._participant_callbacks.append(callback)
        return callback

    def _on_messages(self, change: dict[str, Any]) -> None:
        old, new = change["old"] or [], change["new"] or []
        for message in new[len(old):]:
            for callback in list(self._message_callbacks):
                callback(message)

    def _on_participants(self, change: dict[str, Any]) -> None:
        old = {p["sid"]: p for p in change["old"] or []}
        new = {p["sid"]: p for p in change["new"] or []}
        events = [("connected", p) for sid, p in new.items() if sid not in old]
        events += [("disconnected", p) for sid, p in old.items() if sid not in new]
        for event, participant in events:
            for callback in list(self._participant_callbacks):
                callback(event, participant)


def _kind(kind: str) -> str:
    if kind not in ("audio", "video"):
        raise ValueError(f"kind must be 'audio' or 'video', not {kind!r}")
    return kind
