"""twilio-video.js in Chromium when its signaling socket is cut mid-call: it fires
``reconnecting`` (53001), then ``reconnected`` with the same participant SID, its
``sync`` answered by the server.

The cut is made by a user-space TCP relay of the test's own between the page and
the server (this kernel has no sch_netem): every connection through it is reset
(RST, no close frame), while the relay keeps accepting, as a network that drops
and comes back does.
"""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import threading
import time
from collections.abc import Iterator

import pytest
import requests

from ..client.participants import room_name, token
from ..server_process import ServerProcess
from ..widgets.browser import REPO, requires_browser
from ..widgets.driver import PageDriver

pytestmark = [pytest.mark.timeout(150), requires_browser]

TWILIO_VIDEO = REPO / "tests" / "browser" / "node_modules" / "twilio-video" / "dist"

CONNECT = """async ({token, wsServer, name}) => {
  window.events = [];
  const started = performance.now();
  const room = await Twilio.Video.connect(token, {
    name, wsServer, iceServers: [], insights: false, tracks: []});
  window.room = room;
  room.on('reconnecting', (error) => window.events.push(
    {event: 'reconnecting', code: error && error.code, at: performance.now()}));
  room.on('reconnected', () => window.events.push(
    {event: 'reconnected', at: performance.now(), sid: room.localParticipant.sid}));
  room.on('disconnected', (r, error) => window.events.push(
    {event: 'disconnected', code: error && error.code, at: performance.now()}));
  return {sid: room.localParticipant.sid, state: room.state, ms: performance.now() - started};
}"""


class Relay:
    """127.0.0.1:port -> the server: ``cut()`` resets every connection through it."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.connections: list[socket.socket] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target))
            with self.lock:
                self.connections += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def cut(self) -> int:
        with self.lock:
            cut, self.connections = self.connections, []
        for connection in cut:
            with contextlib.suppress(OSError):
                connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                connection.close()
        return len(cut) // 2

    def close(self) -> None:
        self.listener.close()
        self.cut()


@pytest.fixture
def relay(server: ServerProcess) -> Iterator[Relay]:
    through = Relay(server.port)
    yield through
    through.close()


def test_a_cut_signaling_socket_fires_reconnecting_then_reconnected_keeping_the_sid(
    server: ServerProcess, relay: Relay
) -> None:
    name = room_name()
    page = PageDriver(timeout=120)
    try:
        page.call("blank")
        page.call("addScript", path=str(TWILIO_VIDEO / "twilio-video.min.js"))
        joined = page.eval(CONNECT, {
            "token": token(server, "page"), "name": name,
            "wsServer": f"ws://127.0.0.1:{relay.port}{server.base_url}video/signaling"})
        assert joined["state"] == "connected", joined
        assert relay.cut() >= 1
        cut_at = page.eval("() => performance.now()")
        page.wait_for("() => window.events.some((e) => e.event === 'reconnected')", timeout=30)
        events = page.eval("() => window.events")
        kinds = [e["event"] for e in events]
        assert kinds[:2] == ["reconnecting", "reconnected"], events
        assert events[0]["code"] == 53001
        assert events[1]["sid"] == joined["sid"]
        seconds = (events[1]["at"] - cut_at) / 1000
        creds = server.credentials()
        record = requests.get(
            f"{server.url}video/v1/Rooms/{name}/Participants/{joined['sid']}",
            auth=(creds["api_key_sid"], creds["api_key_secret"]), timeout=10).json()
        assert record["status"] == "connected"
        print(json.dumps({"browser_signaling_cut": {"reconnected_after_s": round(seconds, 2)}}))
        page.eval("() => room.disconnect()")
        time.sleep(0.2)
    finally:
        page.close()
