"""Throwaway signaling server that records what twilio-video.js sends.

Not the product: it replies just enough (welcome, connected with an aiortc
answer, updates) to push the real client through a join, a renegotiation, a
remote participant with audio/video/data tracks and the chosen exit path, and
writes every frame both ways to a JSON-lines file. Used to produce the
captures in docs/signaling.md and tests/signaling/fixtures/.

    .venv/bin/python tests/browser/capture_server.py --port 8765 \
        --scenario join --out /tmp/capture.jsonl
Scenarios: join (default), error (RSP error 53205 after hello),
completed (disconnected status=completed), silent (no server heartbeats: the
client drops and reconnects with "sync"), nowelcome (hello never answered),
bad (TCMP bad after connected), early-error (RSP error before the welcome),
minimal (connected with only the required fields; published 3 s later).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from typing import Any

from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack, VideoStreamTrack
from aiortc.sdp import candidate_from_sdp
from tornado import web, websocket
from tornado.ioloop import IOLoop

OUT: Any = None
SCENARIO = "join"
MUNGE = True


def sid(prefix: str) -> str:
    return prefix + uuid.uuid4().hex


# Tasks started and not awaited, kept referenced until the process ends.
BACKGROUND: set[asyncio.Future[Any]] = set()

class Capture(websocket.WebSocketHandler):
    def check_origin(self, origin: str) -> bool:
        return True

    def open(self) -> None:  # type: ignore[override]
        self.pcs: dict[str, RTCPeerConnection] = {}
        self.revisions: dict[str, int] = {}
        self.published_revision = 0
        self.subscribed_revision = 0
        self.participant_sid = sid("PA")
        self.track_sids: dict[str, str] = {}
        self.session = str(uuid.uuid4())
        # uri -> id, as negotiated in the client's first offer: Chrome refuses a
        # re-offer that reassigns an RTP header extension id (aiortc's own ids differ).
        self.extmap: dict[str, str] = {}
        self.heartbeat_task: asyncio.Task[None] | None = None
        self.log("open", {"path": self.request.path})

    def log(self, direction: str, frame: Any) -> None:
        OUT.write(json.dumps({"t": round(time.time(), 3), "dir": direction, "frame": frame}) + "\n")
        OUT.flush()

    def send(self, frame: dict[str, Any]) -> None:
        self.log("out", frame)
        self.write_message(json.dumps(frame))

    def send_msg(self, body: dict[str, Any]) -> None:
        self.send({"type": "msg", "body": body})

    def on_close(self) -> None:
        self.log("close", {"code": self.close_code, "reason": self.close_reason})
        if self.heartbeat_task:
            self.heartbeat_task.cancel()
        for pc in self.pcs.values():
            BACKGROUND.add(asyncio.ensure_future(pc.close()))

    async def on_message(self, message: str | bytes) -> None:  # type: ignore[override]
        frame = json.loads(message)
        self.log("in", frame)
        kind = frame.get("type")
        if kind == "hello":
            timeout = frame.get("timeout", 5000)
            if SCENARIO == "nowelcome":
                return
            if SCENARIO == "early-error":
                self.send_msg({"type": "error", "code": 53205, "message": "before welcome"})
            self.send({"type": "welcome", "negotiatedTimeout": timeout})
            if SCENARIO != "silent":
                self.heartbeat_task = asyncio.ensure_future(self.heartbeats(timeout / 1000))
            body = frame.get("body")
            if body:
                await self.on_rsp(body)
        elif kind == "msg":
            await self.on_rsp(frame["body"])

    async def heartbeats(self, period: float) -> None:
        while True:
            await asyncio.sleep(period * 0.9)
            self.send({"type": "heartbeat"})

    async def on_rsp(self, body: dict[str, Any]) -> None:
        kind = body.get("type")
        if kind == "connect":
            if SCENARIO == "error":
                self.send_msg({"type": "error", "code": 53205,
                               "message": "Participant disconnected because of duplicate identity"})
                return
            await self.on_connect(body)
        elif kind == "sync":
            await self.on_sync(body)
        elif kind == "update":
            await self.on_update(body)

    def published(self, participant: dict[str, Any]) -> dict[str, Any]:
        self.published_revision += 1
        tracks = []
        for track in participant.get("tracks", []):
            track_sid = self.track_sids.setdefault(track["id"], sid("MT"))
            tracks.append({"id": track["id"], "sid": track_sid, "state": "ready"})
        return {"revision": self.published_revision, "tracks": tracks}

    async def answer(self, pc_state: dict[str, Any]) -> dict[str, Any] | None:
        pc_id = pc_state["id"]
        pc = self.pcs.get(pc_id)
        if pc is None:
            pc = self.pcs[pc_id] = RTCPeerConnection()
            self.watch_data_channels(pc)
        out: dict[str, Any] = {"id": pc_id}
        ice = pc_state.get("ice")
        desc = pc_state.get("description")
        if desc and desc["type"] == "offer":
            for line in desc["sdp"].splitlines():
                if line.startswith("a=extmap:"):
                    ext_id, uri = line[len("a=extmap:"):].split(" ", 1)
                    self.extmap.setdefault(uri.split(" ")[0], ext_id.split("/")[0])
            await pc.setRemoteDescription(RTCSessionDescription(desc["sdp"], "offer"))
            answer = await pc.createAnswer()
            await pc.setLocalDescription(answer)
            self.revisions[pc_id] = desc["revision"]
            out["description"] = {"type": "answer", "sdp": pc.localDescription.sdp,
                                  "revision": desc["revision"]}
        elif desc and desc["type"] == "answer":
            await pc.setRemoteDescription(RTCSessionDescription(desc["sdp"], "answer"))
            self.revisions[pc_id] = desc["revision"]
        if ice:
            for cand in ice.get("candidates", []):
                text = cand.get("candidate", "")
                if text:
                    c = candidate_from_sdp(text.split(":", 1)[1])
                    c.sdpMid = cand.get("sdpMid")
                    c.sdpMLineIndex = cand.get("sdpMLineIndex")
                    try:
                        await pc.addIceCandidate(c)
                    except Exception as e:  # capture tool: keep going
                        self.log("note", {"addIceCandidate": str(e)})
        return out if "description" in out else None

    def watch_data_channels(self, pc: RTCPeerConnection) -> None:
        """Log the client's data channels (one per published data track) and their messages."""

        @pc.on("datachannel")
        def _on_channel(channel: Any) -> None:
            self.log("datachannel", {"label": channel.label, "id": channel.id,
                                     "ordered": channel.ordered,
                                     "maxPacketLifeTime": channel.maxPacketLifeTime,
                                     "maxRetransmits": channel.maxRetransmits,
                                     "protocol": channel.protocol})

            @channel.on("message")
            def _on_message(data: Any) -> None:
                self.log("datachannel-message", {"label": channel.label, "data": str(data)})

    def open_media_signaling(self, requested: dict[str, Any]) -> dict[str, Any]:
        """One server-created data channel per requested MSP channel (room.js _update)."""
        pc = next(iter(self.pcs.values()))
        granted: dict[str, Any] = {}
        for name in requested:
            label = f"{name}-{uuid.uuid4().hex[:8]}"
            channel = pc.createDataChannel(label)
            granted[name] = {"transport": {"type": "data-channel", "label": label}}

            def make_handler(channel: Any, name: str) -> Any:
                def on_message(data: Any) -> None:
                    self.log("msp-in", {"channel": name, "data": json.loads(data)})
                    if name == "network_quality":
                        reply = {"type": "network_quality", "local": 4, "remotes": []}
                        self.log("msp-out", {"channel": name, "data": reply})
                        channel.send(json.dumps(reply))
                return on_message

            channel.on("message", make_handler(channel, name))
            if name == "active_speaker":
                self.active_speaker = channel
        return granted

    async def on_connect(self, body: dict[str, Any]) -> None:
        pcs = [a for a in [await self.answer(s) for s in body.get("peer_connections", [])] if a]
        media_signaling = self.open_media_signaling(body.get("media_signaling") or {})
        connected = {
            "type": "connected",
            "version": 2,
            "session": self.session,
            "sid": sid("RM"),
            "name": body.get("name") or "room",
            "participant": {"sid": self.participant_sid, "identity": "alice",
                            "revision": 1, "tracks": []},
            "participants": [],
            "peer_connections": pcs,
            "published": self.published(body.get("participant", {})),
            "subscribed": {"revision": 1, "tracks": []},
            "recording": {"is_recording": False, "revision": 1},
            "options": {"session_timeout": 30},
        }
        if media_signaling:
            connected["media_signaling"] = media_signaling
        self.subscribed_revision = 1
        if SCENARIO == "minimal":
            # only what connect() needs: is published really optional here?
            published = connected["published"]
            connected = {key: connected[key] for key in
                         ("type", "session", "sid", "name", "peer_connections", "options")}
            connected["participant"] = {"sid": self.participant_sid, "identity": "alice"}
            self.send_msg(connected)
            await asyncio.sleep(3)
            self.send_msg({"type": "update", "published": published})
            return
        self.send_msg(connected)
        if SCENARIO == "bad":
            await asyncio.sleep(2)
            self.send({"type": "bad", "reason": "testing bad after welcome"})
        if SCENARIO == "completed":
            await asyncio.sleep(2)
            self.send_msg({"type": "disconnected", "status": "completed"})
        elif SCENARIO == "join":
            BACKGROUND.add(asyncio.ensure_future(self.remote_participant_story()))

    async def on_sync(self, body: dict[str, Any]) -> None:
        pcs = [a for a in [await self.answer(s) for s in body.get("peer_connections", [])] if a]
        self.send_msg({
            "type": "synced", "version": 2, "session": self.session,
            "participant": {"sid": self.participant_sid, "identity": "alice", "revision": 2,
                            "tracks": []},
            "participants": [], "peer_connections": pcs,
            "published": self.published(body.get("participant", {})),
        })

    async def on_update(self, body: dict[str, Any]) -> None:
        reply: dict[str, Any] = {"type": "update", "version": 2, "session": self.session}
        pcs = [a for a in [await self.answer(s) for s in body.get("peer_connections", [])] if a]
        if pcs:
            reply["peer_connections"] = pcs
        if "participant" in body:
            reply["published"] = self.published(body["participant"])
        if len(reply) > 3:
            self.send_msg(reply)

    def keep_extmap_ids(self, sdp: str) -> str:
        """Rewrite a=extmap ids to the client's; drop extensions it never offered."""
        lines = []
        for line in sdp.split("\r\n"):
            if line.startswith("a=extmap:"):
                uri = line.split(" ", 1)[1].split(" ")[0]
                if uri not in self.extmap:
                    continue
                line = f"a=extmap:{self.extmap[uri]} {uri}"
            lines.append(line)
        return "\r\n".join(lines)

    async def remote_participant_story(self) -> None:
        """A fake 'bob' joins with audio, video and data; later leaves."""
        await asyncio.sleep(3)
        pc_id, pc = next(iter(self.pcs.items()))
        audio, video = AudioStreamTrack(), VideoStreamTrack()
        pc.addTrack(audio)
        pc.addTrack(video)
        data_label = str(uuid.uuid4())
        channel = pc.createDataChannel(data_label, ordered=True)
        offer = await pc.createOffer()
        if MUNGE:
            offer = RTCSessionDescription(self.keep_extmap_ids(offer.sdp), "offer")
        await pc.setLocalDescription(offer)
        revision = self.revisions.get(pc_id, 1) + 1
        self.revisions[pc_id] = revision
        bob = {"sid": sid("PA"), "identity": "bob", "state": "connected", "revision": 1,
               "tracks": [
                   {"sid": sid("MT"), "name": "bob-audio", "kind": "audio", "enabled": True,
                    "priority": "standard"},
                   {"sid": sid("MT"), "name": "bob-video", "kind": "video", "enabled": True,
                    "priority": "standard"},
                   {"sid": sid("MT"), "name": "bob-data", "kind": "data", "enabled": True,
                    "priority": "standard"}]}
        self.subscribed_revision += 1
        self.send_msg({
            "type": "update", "version": 2, "session": self.session,
            "participants": [bob],
            "subscribed": {"revision": self.subscribed_revision, "tracks": [
                {"sid": bob["tracks"][0]["sid"], "id": audio.id},
                {"sid": bob["tracks"][1]["sid"], "id": video.id},
                {"sid": bob["tracks"][2]["sid"], "id": data_label}]},
            "peer_connections": [{"id": pc_id, "description": {
                "type": "offer", "sdp": pc.localDescription.sdp, "revision": revision}}],
        })

        @channel.on("open")
        def _open() -> None:
            channel.send("hello from bob")

        if getattr(self, "active_speaker", None) is not None:
            message = {"type": "active_speaker", "participant": bob["sid"]}
            self.log("msp-out", {"channel": "active_speaker", "data": message})
            self.active_speaker.send(json.dumps(message))
        await asyncio.sleep(4)
        # server-initiated renegotiation request
        revision = self.revisions[pc_id] + 1
        self.revisions[pc_id] = revision
        self.send_msg({"type": "update", "version": 2, "session": self.session,
                       "peer_connections": [{"id": pc_id, "description": {
                           "type": "create-offer", "revision": revision}}]})
        await asyncio.sleep(3)
        bob["revision"] = 2
        bob["tracks"] = bob["tracks"][:2]
        self.send_msg({"type": "update", "version": 2, "session": self.session,
                       "participants": [bob],
                       "recording": {"is_recording": True, "revision": 2}})
        await asyncio.sleep(2)
        bob["revision"] = 3
        bob["state"] = "disconnected"
        self.subscribed_revision += 1
        self.send_msg({"type": "update", "version": 2, "session": self.session,
                       "participants": [bob],
                       "subscribed": {"revision": self.subscribed_revision, "tracks": []}})


def main() -> None:
    global OUT, MUNGE, SCENARIO
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--scenario", default="join")
    parser.add_argument("--out", default="/tmp/capture.jsonl")
    parser.add_argument("--no-munge", action="store_true",
                        help="send aiortc's re-offer as is (Chrome rejects it: extmap ids)")
    args = parser.parse_args()
    OUT = open(args.out, "w")  # noqa: SIM115
    SCENARIO = args.scenario
    MUNGE = not args.no_munge
    app = web.Application([(r"/.*", Capture)])
    app.listen(args.port, address="127.0.0.1")
    IOLoop.current().start()


if __name__ == "__main__":
    main()
