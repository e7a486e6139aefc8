"""``Classroom("lecture")``: a teacher runs the class from a cell.

It speaks to the server's classroom handlers with this server's REST
credentials (the API key's holder moderates), so it works in the notebook
server's own kernels without a token: ``jupyter_video.credentials()`` finds
them. In a JupyterHub user's kernel where the hub runs the video service, it
speaks to the service as the hub user instead (their ``JUPYTERHUB_API_TOKEN``;
the hub's roles decide whether they moderate). Every method returns what the
server answered.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

from ..account import Credentials, load_credentials
from .channel import request, room_path


class Classroom:
    """The classroom of room ``room`` (its unique name)."""

    def __init__(self, room: str = "lecture", server: str | None = None,
                 credentials: Credentials | None = None, hub_token: str | None = None) -> None:
        from ..hub import discovery

        self.room = room
        if hub_token is None and credentials is None and discovery.service_url():
            hub_token = os.environ.get(discovery.HUB_TOKEN_ENV)
            server = server or discovery.service_url()
        if hub_token is not None:
            if not server:
                raise ValueError("Pass server= (the hub's video service URL) with hub_token=")
            self.server = server
            self._headers = {"Authorization": f"token {hub_token}"}
            return
        credentials = credentials or load_credentials()
        server = server or credentials.url
        if not server:
            raise ValueError("No running jupyter_video server found: pass server=")
        self.server = server
        basic = f"{credentials.api_key_sid}:{credentials.api_key_secret}"
        self._headers = {"Authorization": "Basic " + base64.b64encode(basic.encode()).decode()}

    def __repr__(self) -> str:
        return f"Classroom({self.room!r}, participants={len(self.participants)})"

    def _get(self, tail: str = "") -> Any:
        return request(self.server, room_path(self.room) + tail, headers=self._headers)

    def _act(self, action: str, **args: Any) -> Any:
        body = request(self.server, room_path(self.room) + "/actions/" + action,
                       method="POST", body=args, headers=self._headers)
        return body["result"]

    # -- who is here -----------------------------------------------------------------

    @property
    def state(self) -> dict[str, Any]:
        """Lock, guards, spotlight, hands, breakouts, participants and room records."""
        return self._get()

    @property
    def participants(self) -> list[dict[str, Any]]:
        """Connected participants: identity, sid, moderator, hand_raised, tracks."""
        return list(self._get()["participants"])

    @property
    def hands(self) -> list[dict[str, Any]]:
        """Raised hands in the order raised: identity, raised_at, waiting_seconds."""
        return list(self._get()["hands"])

    def records(self) -> dict[str, Any]:
        """The main room and its breakouts with their SIDs and participants."""
        return self._get()["records"]

    # -- moderation ------------------------------------------------------------------

    def mute(self, identity: str, kind: str = "audio") -> Any:
        """Stop forwarding ``identity``'s microphone (or camera) at once."""
        return self._act("mute", identity=identity, kind=kind)

    def allow_unmute(self, identity: str, kind: str | None = None) -> Any:
        """Let a participant muted under ``self_unmute=False`` unmute again."""
        return self._act("allow_unmute", identity=identity, **({"kind": kind} if kind else {}))

    def remove(self, identity: str) -> Any:
        """Disconnect ``identity`` from the room."""
        return self._act("remove", identity=identity)

    def lock(self) -> Any:
        """Refuse new participants (53105, "locked by its moderator")."""
        return self._act("lock")

    def unlock(self) -> Any:
        return self._act("unlock")

    def settings(self, *, mute_on_join: bool | None = None,
                 self_unmute: bool | None = None) -> Any:
        """``mute_on_join``: join muted, video off; ``self_unmute``: muted ones may unmute."""
        args = {k: v for k, v in (("mute_on_join", mute_on_join),
                                  ("self_unmute", self_unmute)) if v is not None}
        return self._act("settings", **args)

    def spotlight(self, identity: str | None) -> Any:
        """Show ``identity`` large for everyone (None: no spotlight)."""
        return self._act("spotlight", identity=identity)

    def lower_hand(self, identity: str) -> Any:
        return self._act("lower_hand", identity=identity)

    def lower_all_hands(self) -> Any:
        return self._act("lower_all_hands")

    # -- breakouts ---------------------------------------------------------------------

    def breakout(self, rooms: int = 2, assignment: Any = "even",
                 duration: float | None = None, names: list[str] | None = None) -> Any:
        """Open breakout rooms and move participants there: ``assignment`` is
        ``"even"``, a dict identity -> room name, or a list of groups of identities;
        ``duration`` (seconds) recalls everyone when it ends."""
        args: dict[str, Any] = {"rooms": rooms, "assignment": assignment}
        if duration is not None:
            args["duration"] = duration
        if names is not None:
            args["names"] = names
        return self._act("breakout", **args)

    def broadcast(self, text: str) -> Any:
        """A message to the main room and every breakout."""
        return self._act("broadcast", text=text)

    def visit(self, room: str) -> Any:
        return self._act("visit", room=room)

    def recall(self) -> Any:
        """Everyone back to the main room."""
        return self._act("recall")

    # -- chat ------------------------------------------------------------------------

    def send_chat(self, text: str) -> Any:
        return self._act("chat", text=text)

    def history(self) -> list[dict[str, Any]]:
        """Every chat message of the room's name, oldest first."""
        return list(self._get("/chat")["messages"])

    def export_chat(self, path: str | Path) -> Path:
        """Write the chat history to ``path`` (``.csv`` or ``.json``)."""
        target = Path(path)
        if target.suffix == ".csv":
            target.write_text(self._get("/chat?format=csv"))
        elif target.suffix == ".json":
            target.write_text(json.dumps(self.history(), indent=1))
        else:
            raise ValueError(f"export_chat writes .csv or .json, not {target.suffix!r}")
        return target

    # -- room monitor ------------------------------------------------------------------

    def monitor_data(self) -> dict[str, Any]:
        """Series rows, warnings, hands, participants and the media plane's counters."""
        return self._get("/monitor")

    def stats(self) -> Any:
        """Per-participant series as a table (a pandas DataFrame when pandas is
        installed, else the list of rows ``pandas.DataFrame`` takes)."""
        rows = self.monitor_data()["series"]
        try:
            import pandas
        except ImportError:
            return rows
        return pandas.DataFrame(rows)

    def warnings(self) -> list[str]:
        return list(self.monitor_data()["warnings"])

    def monitor(self) -> Any:
        """The :class:`~jupyter_video.widgets.RoomMonitor` of this room."""
        from ..widgets.monitor import RoomMonitor

        return RoomMonitor(room=self.room)
