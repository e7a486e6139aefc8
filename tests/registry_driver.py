"""A test-only server extension that drives the room registry from outside.

Until participants join through signaling, this is how REST tests put
participants, tracks and subscriptions into a real server's rooms: it calls
the same ``RoomRegistry`` methods signaling calls. Loaded only by tests
(``ServerProcess(..., driver=True)``), behind the Jupyter token.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join
from tornado import web

from jupyter_video.errors import VideoError
from jupyter_video.model import Participant, PublishedTrack, TrackKind


class DriverHandler(APIHandler):
    @web.authenticated
    def post(self, action: str) -> None:
        try:
            self._act(action)
        except VideoError as error:
            self.set_status(error.status)
            self.finish(error.to_dict())

    def _act(self, action: str) -> None:
        registry = self.settings["jupyter_video"].registry
        body: dict[str, Any] = json.loads(self.request.body)
        if action == "participants":
            room = registry.get_room(body["room"])
            participant = registry.connect_participant(room, body["identity"])
            self.finish({"sid": participant.sid})
        elif action == "tracks":
            participant = registry.store.get(Participant, body["participant_sid"])
            room = registry.get_room(participant.room_sid)
            track = registry.publish_track(room, participant, body["name"], TrackKind(body["kind"]))
            self.finish({"sid": track.sid})
        elif action == "subscriptions":
            subscriber = registry.store.get(Participant, body["participant_sid"])
            track = registry.store.get(PublishedTrack, body["track_sid"])
            registry.record_subscription(subscriber, track, body.get("subscribed", True))
            self.finish({})
        elif action == "classroom_channels":
            # The classroom channels open to a room; ``drop`` closes them from this side:
            # "close" with a close frame (a server going away), "abort" the TCP stream
            # (a proxy or network dropping it).
            classrooms = self.settings["jupyter_video_classroom"]
            channels = sorted(classrooms.channels.get(body["room"], ()), key=id)
            for channel in channels:
                if body.get("drop") == "close":
                    channel.close()
                elif body.get("drop") == "abort":
                    channel.ws_connection.stream.close()
            self.finish({"identities": [channel.identity for channel in channels],
                         "ids": [id(channel) for channel in channels]})
        elif action == "hold_lock":
            # Hold a live participant's lock for ``seconds``: what it does under the
            # lock (subscribing, negotiating) waits, as behind a slow negotiation.
            conference = self.settings["jupyter_video"].conference
            live = conference._participants[body["participant_sid"]]

            async def hold() -> None:
                async with live.lock:
                    await asyncio.sleep(float(body["seconds"]))

            conference.spawn(hold())
            self.finish({})
        else:
            raise web.HTTPError(404)


def _load_jupyter_server_extension(serverapp: Any) -> None:
    base = serverapp.web_app.settings["base_url"]
    serverapp.web_app.add_handlers(
        ".*$", [(url_path_join(base, r"/video-test/(\w+)"), DriverHandler)]
    )
