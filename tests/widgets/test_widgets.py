"""The widgets' Python side: commands to the browser, callbacks from its state."""

from __future__ import annotations

from typing import Any

import pytest

from jupyter_video import PreviewWidget, RoomWidget


class Sent:
    """Records what a widget sends to its front end."""

    def __init__(self, widget: Any) -> None:
        self.messages: list[dict[str, Any]] = []
        widget.send = self.messages.append


def test_a_new_room_widget_is_disconnected_with_no_state() -> None:
    widget = RoomWidget(room="lab", identity="ada", audio=False)
    assert (widget.room, widget.identity, widget.audio, widget.video) == ("lab", "ada", False, True)
    assert widget.state == "disconnected"
    assert widget.participants == [] and widget.messages == [] and widget.error is None
    assert widget._widget == "room"


def test_commands_need_a_connected_room() -> None:
    widget = RoomWidget(room="lab")
    with pytest.raises(RuntimeError, match="display it"):
        widget.send_message("hello")


def test_commands_go_to_the_browser_once_connected() -> None:
    widget = RoomWidget(room="lab")
    sent = Sent(widget)
    widget.state = "connected"
    widget.send_message("hello")
    widget.mute("video")
    widget.unmute()
    widget.unsubscribe("MT1")
    widget.subscribe("MT1")
    widget.leave()
    assert sent.messages == [
        {"command": "send_message", "text": "hello"},
        {"command": "mute", "kind": "video"},
        {"command": "unmute", "kind": "audio"},
        {"command": "unsubscribe", "track_sid": "MT1"},
        {"command": "subscribe", "track_sid": "MT1"},
        {"command": "leave"},
    ]
    with pytest.raises(ValueError, match="audio' or 'video"):
        widget.mute("data")  # type: ignore[arg-type]


def test_on_message_is_called_once_for_each_new_message() -> None:
    widget = RoomWidget(room="lab")
    seen: list[str] = []
    widget.on_message(lambda message: seen.append(message["text"]))
    first = {"sid": "PA1", "identity": "ada", "text": "one", "time": "t1"}
    second = {"sid": "PA2", "identity": "bob", "text": "two", "time": "t2"}
    widget.messages = [first]
    widget.messages = [first, second]
    assert seen == ["one", "two"]


def test_on_participant_sees_joins_and_leaves() -> None:
    widget = RoomWidget(room="lab")
    events: list[tuple[str, str]] = []
    widget.on_participant(lambda event, person: events.append((event, person["identity"])))
    ada = {"sid": "PA1", "identity": "ada", "tracks": []}
    bob = {"sid": "PA2", "identity": "bob", "tracks": []}
    widget.participants = [ada]
    widget.participants = [ada, {**bob, "tracks": [{"sid": "MT1"}]}]
    widget.participants = [bob]
    assert events == [("connected", "ada"), ("connected", "bob"), ("disconnected", "ada")]


def test_preview_join_releases_the_devices_and_hands_them_to_a_room() -> None:
    preview = PreviewWidget()
    sent = Sent(preview)
    preview.audio_device, preview.video_device = "mic-1", "cam-2"
    room = preview.join("lab", identity="ada", video=False)
    assert sent.messages == [{"command": "release"}]
    assert isinstance(room, RoomWidget)
    assert (room.room, room.identity, room.audio_device, room.video_device, room.video) == (
        "lab", "ada", "mic-1", "cam-2", False)
