"""The media socket against WebRTC: glass-to-glass latency, frame rate, audio, CPU.

One Python publisher sends 320x240 15 fps VP8 (camera-like content)
whose top row carries the machine's monotonic clock (16 black/white blocks:
milliseconds mod 65536) and a 440 Hz Opus tone; one Python subscriber, another
process, decodes the frames, reads the clock back and compares it with its
own: glass-to-glass latency (encode, send, SFU, send, decode), p50 / p95, and
p95 in windows of 10 s to see whether it grows.
Both participants use the same transport: ``websocket`` (the media socket) or
``webrtc``, measured in the same run, on each link:

- ``loopback``: server and participants on 127.0.0.1;
- ``rtt_50ms``: participants in a network namespace, 25 ms each way (tc netem;
  where the kernel has no netem, a user-space delay line: the namespaces are
  joined by two TUN devices instead of a veth pair and this script carries every
  IP packet, TCP and UDP alike, from one to the other 25 ms after it left);
- ``cap_300kbit``: the subscriber in a network namespace whose downlink (server
  to it) is capped at 300 kbit/s (tc tbf).

The namespaces (two, joined by a veth pair; the server and the publisher in
one, the server bound there, the subscriber in the other) are made and removed
by this script (root).
A link whose qdisc the kernel lacks (the cap's tbf) is reported as
``{"skipped": why}``; each link made says how in ``"emulation"``.

Reported per transport and link: ``latency_ms`` p50 / p95 overall and
``p95_by_window`` (10 s windows), ``video_fps`` and ``audio_fps`` received (Opus
is 50 frames/s), and ``server_cpu_percent_per_stream``: user + system CPU of the
server and its media worker (100 = one core) over the streams it forwards (one
video, one audio), and ``audio_delay_above_min_ms``: each audio frame's arrival
against its RTP timestamp, above the run's smallest (queueing behind video, not
the absolute delay). ``--audio-socket`` adds, under the cap, the media socket
with the audio on a second socket (a second participant of the subscriber's,
subscribed to the audio only, the first to the video only): head-of-line, one
socket with priorities against two. Prints one JSON line.

    python benchmarks/websocket.py --seconds 60 [--links loopback,cap_300kbit] [--audio-socket]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import heapq
import json
import os
import select
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

from tests.server_process import ServerProcess  # noqa: E402

WIDTH, HEIGHT, FPS = 320, 240, 15
BITS = 16
BLOCK = WIDTH // BITS
NS_SERVER, NS_CLIENTS = "jvbench-server", "jvbench-clients"
SERVER_IP, CLIENT_IP = "10.231.7.1", "10.231.7.2"
WINDOW = 10.0


def now_ms() -> int:
    return int(time.monotonic() * 1000)


def stamped_frames() -> Iterator[np.ndarray]:
    """Camera-like content (moving gradients, sensor noise, a moving object: VP8 meets
    its target bitrate on it, ~470 kbit/s by default) under a top row that says the
    time of capture."""
    index = 0
    random = np.random.default_rng(7)
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH]
    while True:
        frame = np.empty((HEIGHT, WIDTH, 3), np.int16)
        frame[..., 0] = (x + 3 * index) % 256
        frame[..., 1] = (2 * y + index) % 256
        frame[..., 2] = 128
        frame += random.integers(-6, 6, frame.shape, dtype=np.int16)
        frame = frame.clip(0, 255).astype(np.uint8)
        frame[60:140, (index * 5) % 300:(index * 5) % 300 + 20] = 240
        stamp = now_ms() & 0xFFFF
        for bit in range(BITS):
            frame[:24, bit * BLOCK:(bit + 1) * BLOCK] = 255 if stamp >> bit & 1 else 0
        index += 1
        yield frame


def stamped_track() -> Any:
    """A video track whose frames are stamped when they are handed to the sender
    (LocalVideoTrack.from_frames takes a frame, then waits for its time)."""
    import av
    from aiortc.mediastreams import VIDEO_TIME_BASE

    from jupyter_video.client import LocalVideoTrack

    class Stamped(LocalVideoTrack):
        async def _next_frame(self) -> av.VideoFrame:
            await self._pace()
            frame = av.VideoFrame.from_ndarray(next(frames), format="rgb24")
            frame.pts, frame.time_base = self._pts, VIDEO_TIME_BASE
            return frame

    frames = stamped_frames()
    track = Stamped()
    track.fps = float(FPS)
    return track


def read_stamp(frame: np.ndarray) -> int:
    stamp = 0
    for bit in range(BITS):
        if frame[4:20, bit * BLOCK + 3:(bit + 1) * BLOCK - 3].mean() > 128:
            stamp |= 1 << bit
    return stamp


def percentile(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 1) if values else None


# ------------------------------------------------------------------ participants


async def publish(url: str, token_file: str, room: str, transport: str, seconds: float,
                  host: str) -> None:
    """The publisher: stamped video and a tone, for ``seconds`` (plus set-up)."""
    from jupyter_video.client import LocalAudioTrack, connect

    tokens = json.loads(Path(token_file).read_text())
    tone = 0.3 * np.sin(2 * np.pi * 440 * np.arange(48000 * int(seconds + 40)) / 48000)
    publisher = await connect(tokens["publisher"], room, url, ice_host_addresses=[host],
                              transport=transport,
                              tracks=[stamped_track(), LocalAudioTrack.from_array(tone)])
    print("published", flush=True)
    await asyncio.sleep(seconds + 25)
    await publisher.disconnect()


async def subscribe(url: str, token_file: str, room: str, transport: str, seconds: float,
                    host: str, audio_socket: bool = False) -> dict[str, Any]:
    """The subscriber: what it sees of the publisher. With ``audio_socket``, two
    participants in this process (so behind the same link): one subscribed to the
    video only, one to the audio only, each with its own connection (socket)."""
    from jupyter_video.client import RemoteAudioTrack, RemoteVideoTrack, connect
    from jupyter_video.client import room as client_room

    # Each audio frame's arrival against its RTP timestamp (48 kHz): the delay up to
    # a constant (the sender's clock offset); reported above its minimum.
    arrivals: list[tuple[float, int]] = []
    deliver = RemoteAudioTrack._deliver

    def record(track: Any, frame: Any) -> None:
        if recording and frame.pts is not None:
            arrivals.append((time.monotonic(), int(frame.pts)))
        deliver(track, frame)

    RemoteAudioTrack._deliver = record  # type: ignore[method-assign]
    recording = False
    tokens = json.loads(Path(token_file).read_text())
    tracks: dict[str, Any] = {}
    joined = []
    subscribed: list[list[str]] = []  # the kinds each participant got
    kinds: list[str | None] = ["video", "audio"] if audio_socket else [None]
    for kind, identity in zip(kinds, ["subscriber", "subscriber-audio"], strict=False):
        connect_message = client_room.rsp.Connect

        def only(*args: Any, kind: str | None = kind, _make: Any = connect_message,
                 **kwargs: Any) -> Any:
            if kind is not None:  # SubscribeRules: this kind only
                kwargs["subscribe"] = {"rules": [{"type": "include", "kind": kind}],
                                       "revision": 1}
            return _make(*args, **kwargs)

        client_room.rsp.Connect = only  # type: ignore[misc]
        try:
            participant = await connect(tokens[identity], room, url,
                                        ice_host_addresses=[host], transport=transport)
        finally:
            client_room.rsp.Connect = connect_message  # type: ignore[misc]
        got: list[str] = []
        subscribed.append(got)

        def on_track(event: Any, got: list[str] = got) -> None:
            if isinstance(event.track, RemoteVideoTrack | RemoteAudioTrack):
                tracks[event.track.kind] = event.track
                got.append(event.track.kind)

        participant.on("track_subscribed", on_track)
        joined.append(participant)
    deadline = time.monotonic() + 20
    while len(tracks) < 2 and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    video, audio = tracks.get("video"), tracks.get("audio")
    samples: list[tuple[float, float]] = []

    async def watch_video() -> None:
        assert video is not None
        async for frame in video.frames():
            # CLOCK_MONOTONIC is the machine's, in every namespace and process.
            delay = (now_ms() - read_stamp(frame)) & 0xFFFF
            if delay < 30000:
                samples.append((time.monotonic(), float(delay)))

    await asyncio.sleep(3.0)  # warm-up: first keyframe, encoder settling
    started = time.monotonic()
    recording = True
    assert audio is not None
    audio_before = audio.frames_received  # every frame that arrived, read or not
    tasks = [asyncio.ensure_future(watch_video())]
    await asyncio.sleep(seconds)
    for task in tasks:
        task.cancel()
    elapsed = time.monotonic() - started
    audio_frames = audio.frames_received - audio_before
    recording = False
    for participant in joined:
        await participant.disconnect()
    latencies = [d for _, d in samples]
    audio_delays: list[float] = []
    if arrivals:
        first_at, first_pts = arrivals[0]
        relative = [(at - first_at) * 1000 - ((pts - first_pts) % 2**32) / 48
                    for at, pts in arrivals]
        audio_delays = [d - min(relative) for d in relative]
    windows: list[float | None] = []
    for start in np.arange(started, started + elapsed - 1, WINDOW):
        chunk = [d for t, d in samples if start <= t < start + WINDOW]
        windows.append(percentile(chunk, 95))
    return {
        "latency_ms": {"p50": percentile(latencies, 50), "p95": percentile(latencies, 95)},
        "p95_by_window": windows,
        "video_fps": round(len(samples) / elapsed, 1),
        "audio_fps": round(audio_frames / elapsed, 1),
        "audio_delay_above_min_ms": {"p50": percentile(audio_delays, 50),
                                     "p95": percentile(audio_delays, 95),
                                     "max": percentile(audio_delays, 100)},
        **({"subscribed_by_socket": subscribed} if audio_socket else {}),
    }


# ------------------------------------------------------------------ the server


def process_tree_cpu(pid: int) -> float:
    """CPU seconds of ``pid`` and its descendants (the media worker)."""
    ticks = os.sysconf("SC_CLK_TCK")
    children: dict[int, list[int]] = {}
    stats: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(entry.name))
            stats[int(entry.name)] = (int(fields[11]) + int(fields[12])) / ticks
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        total += stats.get(current, 0.0)
        todo += children.get(current, [])
    return total


def write_tokens(server: ServerProcess, path: Path) -> None:
    from jupyter_video.tokens import AccessToken, VideoGrant

    creds = server.credentials()
    tokens = {}
    for identity in ("publisher", "subscriber", "subscriber-audio"):
        access = AccessToken(creds["account_sid"], creds["api_key_sid"],
                             creds["api_key_secret"], identity=identity)
        access.add_grant(VideoGrant())
        tokens[identity] = access.to_jwt()
    path.write_text(json.dumps(tokens))


def run_pair(publisher_url: str, subscriber_url: str, token_file: Path, transport: str,
             seconds: float, publisher_ns: tuple[str | None, str],
             subscriber_ns: tuple[str | None, str], audio_socket: bool = False
             ) -> dict[str, Any]:
    """The publisher and the subscriber, each a process (in its namespace, on its host)."""
    room = f"bench-{transport}-{time.monotonic_ns()}"

    def command(role: str, url: str, where: tuple[str | None, str]) -> list[str]:
        line = [sys.executable, __file__, "--role", role, "--url", url, "--tokens",
                str(token_file), "--room", room, "--transport", transport,
                "--seconds", str(seconds), "--host", where[1]]
        return ["ip", "netns", "exec", where[0], *line] if where[0] else line

    publisher = subprocess.Popen(command("publisher", publisher_url, publisher_ns),
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                 cwd=REPO)
    try:
        assert publisher.stdout is not None
        if publisher.stdout.readline().strip() != "published":
            return {"error": (publisher.stderr.read() if publisher.stderr else "")[-800:]}
        extra = ["--audio-socket"] if audio_socket else []
        output = subprocess.run(command("subscriber", subscriber_url, subscriber_ns) + extra,
                                capture_output=True, text=True, check=False,
                                timeout=seconds + 120, cwd=REPO)
    finally:
        publisher.kill()
        publisher.wait(10)
    lines = [line for line in output.stdout.splitlines() if line.startswith("{")]
    if output.returncode != 0 or not lines:
        return {"error": output.stderr[-800:]}
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def serve_in_namespace(root: str) -> None:
    """(In the server's namespace) a server bound there; prints its port, runs until stdin ends."""
    server = ServerProcess(Path(root), video_config={"media_workers": 1,
                                                     "ice_host_addresses": [SERVER_IP]},
                           server_config={"ip": "0.0.0.0"}).start()
    print(json.dumps({"port": server.port, "pid": server.process.pid if server.process else 0}),
          flush=True)
    sys.stdin.read()
    server.stop()


# ------------------------------------------------------------------ the links


def sh(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(command), capture_output=True, text=True, check=False)


TUNSETIFF, IFF_TUN, IFF_NO_PI = 0x400454CA, 0x0001, 0x1000


class DelayLine:
    """Two TUN devices (``jvbs``, ``jvbc``) and threads that carry each IP packet
    from one to the other ``delay`` seconds after it was read: netem's fixed delay
    in user space, for TCP and UDP alike, both directions. Packets keep their order
    (the delay is the same for all); none is dropped or reordered."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.fds: dict[str, int] = {}
        self.stopping = False
        for name in ("jvbs", "jvbc"):
            fd = os.open("/dev/net/tun", os.O_RDWR)
            fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
            self.fds[name] = fd

    def start(self) -> None:
        for source, target in (("jvbs", "jvbc"), ("jvbc", "jvbs")):
            queue: list[tuple[float, int, bytes]] = []
            ready = threading.Condition()
            threading.Thread(target=self._read, args=(self.fds[source], queue, ready),
                             daemon=True).start()
            threading.Thread(target=self._write, args=(self.fds[target], queue, ready),
                             daemon=True).start()

    def _read(self, fd: int, queue: list[tuple[float, int, bytes]],
              ready: threading.Condition) -> None:
        count = 0
        while not self.stopping:
            try:
                if not select.select([fd], [], [], 0.5)[0]:
                    continue
                packet = os.read(fd, 65536)
            except (OSError, ValueError):
                return
            count += 1
            with ready:
                heapq.heappush(queue, (time.monotonic() + self.delay, count, packet))
                ready.notify()

    def _write(self, fd: int, queue: list[tuple[float, int, bytes]],
               ready: threading.Condition) -> None:
        while not self.stopping:
            with ready:
                while not queue and not self.stopping:
                    ready.wait(0.5)
                if self.stopping:
                    return
                due, _, packet = queue[0]
                wait = due - time.monotonic()
                if wait > 0:
                    ready.wait(wait)  # woken early by a new packet: due stays first
                    continue
                heapq.heappop(queue)
            with contextlib.suppress(OSError):  # the device is down, or the packet refused
                os.write(fd, packet)

    def close(self) -> None:
        self.stopping = True
        for fd in self.fds.values():
            with contextlib.suppress(OSError):
                os.close(fd)


@contextlib.contextmanager
def namespaces(qdisc: list[str], delay_line: float | None = None) -> Iterator[str | None]:
    """The two namespaces and their veth pair, ``qdisc`` on the server side's egress
    (and the client side's for netem); or, with ``delay_line`` (seconds), joined by a
    :class:`DelayLine` instead and no qdisc. Yields None, or why the link cannot be made."""
    cleanup()
    line = DelayLine(delay_line) if delay_line is not None else None
    if line is None:
        pair = [["ip", "link", "add", "jvbs", "type", "veth", "peer", "name", "jvbc"]]
        addresses = [
            ["ip", "-n", NS_SERVER, "addr", "add", f"{SERVER_IP}/24", "dev", "jvbs"],
            ["ip", "-n", NS_CLIENTS, "addr", "add", f"{CLIENT_IP}/24", "dev", "jvbc"]]
    else:  # point to point: what enters one TUN device leaves the other
        pair = []
        addresses = [
            ["ip", "-n", NS_SERVER, "addr", "add", SERVER_IP, "peer", CLIENT_IP, "dev", "jvbs"],
            ["ip", "-n", NS_CLIENTS, "addr", "add", CLIENT_IP, "peer", SERVER_IP, "dev", "jvbc"]]
    steps = [
        ["ip", "netns", "add", NS_SERVER], ["ip", "netns", "add", NS_CLIENTS],
        *pair,
        ["ip", "link", "set", "jvbs", "netns", NS_SERVER],
        ["ip", "link", "set", "jvbc", "netns", NS_CLIENTS],
        *addresses,
        ["ip", "-n", NS_SERVER, "link", "set", "jvbs", "up"],
        ["ip", "-n", NS_CLIENTS, "link", "set", "jvbc", "up"],
        ["ip", "-n", NS_SERVER, "link", "set", "lo", "up"],
        ["ip", "-n", NS_CLIENTS, "link", "set", "lo", "up"],
    ]
    try:
        for step in steps:
            done = sh(*step)
            if done.returncode != 0:
                yield f"{' '.join(step)}: {done.stderr.strip()}"
                return
        if line is not None:
            line.start()
        sides = [("jvbs", NS_SERVER)] + ([("jvbc", NS_CLIENTS)] if qdisc[0] == "netem" else [])
        for device, namespace in sides if line is None else []:
            # a delay on both sides; a cap on the downlink
            done = sh("ip", "netns", "exec", namespace, "tc", "qdisc", "add", "dev", device,
                      "root", *qdisc)
            if done.returncode != 0:
                yield f"tc qdisc add {' '.join(qdisc)}: {done.stderr.strip()}"
                return
        yield None
    finally:
        if line is not None:
            line.close()
        cleanup()


def netem_available() -> bool:
    """Whether the kernel has sch_netem: a netem qdisc on a throwaway namespace's lo."""
    probe = "jvbench-probe"
    sh("ip", "netns", "del", probe)
    try:
        if sh("ip", "netns", "add", probe).returncode != 0:
            return False
        return sh("ip", "netns", "exec", probe, "tc", "qdisc", "add", "dev", "lo", "root",
                  "netem", "delay", "1ms").returncode == 0
    finally:
        sh("ip", "netns", "del", probe)


def cleanup() -> None:
    for namespace in (NS_SERVER, NS_CLIENTS):
        sh("ip", "netns", "del", namespace)


def run_link(link: str, seconds: float, transports: list[str],
             audio_socket: bool = False) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="jvbench-") as directory:
        root = Path(directory)
        token_file = root / "tokens.json"
        if link == "loopback":
            server = ServerProcess(root / "server", video_config={
                "media_workers": 1, "ice_host_addresses": ["127.0.0.1"]}).start()
            try:
                write_tokens(server, token_file)
                assert server.process is not None
                here = (None, "127.0.0.1")
                return {t: with_cpu(server.process.pid, lambda t=t: run_pair(  # type: ignore[misc]
                    server.url, server.url, token_file, t, seconds, here, here), seconds)
                    for t in transports}
            finally:
                server.stop()
        qdisc = {"rtt_50ms": ["netem", "delay", "25ms"],
                 "cap_300kbit": ["tbf", "rate", "300kbit", "burst", "8kb", "latency", "400ms"],
                 }[link]
        delay_line = None
        emulation = f"tc {' '.join(qdisc)}" + (" (both sides)" if qdisc[0] == "netem" else
                                                " (server side egress)")
        if qdisc[0] == "netem" and not netem_available():
            delay_line = 0.025
            emulation = ("user-space delay line, 25 ms each way (no sch_netem): "
                         "TUN devices, every IP packet, TCP and UDP")
        with namespaces(qdisc, delay_line) as problem:
            if problem is not None:
                return {"skipped": problem}
            serving = subprocess.Popen(
                ["ip", "netns", "exec", NS_SERVER, sys.executable, __file__, "--serve",
                 str(root / "server")], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                text=True, cwd=REPO)
            try:
                assert serving.stdout is not None
                started = json.loads(serving.stdout.readline())
                server = ServerProcess(root / "server")
                server.port = started["port"]
                write_tokens(server, token_file)
                # The publisher beside the server, the subscriber behind the link.
                near = f"http://127.0.0.1:{started['port']}/jv/"
                far = f"http://{SERVER_IP}:{started['port']}/jv/"
                measured: dict[str, Any] = {"emulation": emulation,
                                            "tcp_connect_ms": connect_times(started["port"])}
                for t in transports:
                    measured[t] = with_cpu(started["pid"], lambda t=t: run_pair(  # type: ignore[misc]
                        near, far, token_file, t, seconds, (NS_SERVER, SERVER_IP),
                        (NS_CLIENTS, CLIENT_IP)), seconds)
                if audio_socket and link == "cap_300kbit" and "websocket" in transports:
                    # The same, but the audio on a second socket (its own participant)
                    measured["websocket_audio_on_second_socket"] = with_cpu(
                        started["pid"], lambda: run_pair(
                            near, far, token_file, "websocket", seconds,
                            (NS_SERVER, SERVER_IP), (NS_CLIENTS, CLIENT_IP),
                            audio_socket=True), seconds)
                return measured
            finally:
                if serving.stdin is not None:
                    serving.stdin.close()
                serving.wait(30)



def connect_times(port: int) -> dict[str, float | None]:
    """The link's round trip as the subscriber meets it: TCP connects (SYN, SYN-ACK)
    from the clients' namespace to the server, 10 of them, p50 and max in ms."""
    probe = ("import socket, time, json\nout = []\nfor _ in range(10):\n"
             "    t = time.monotonic()\n"
             f"    socket.create_connection(('{SERVER_IP}', {port}), 5).close()\n"
             "    out.append((time.monotonic() - t) * 1000)\nprint(json.dumps(out))")
    done = subprocess.run(["ip", "netns", "exec", NS_CLIENTS, sys.executable, "-c", probe],
                          capture_output=True, text=True, timeout=60, check=False)
    if done.returncode != 0:
        return {"p50": None, "max": None}
    times = json.loads(done.stdout)
    return {"p50": percentile(times, 50), "max": round(max(times), 1)}


def with_cpu(pid: int, run: Any, seconds: float) -> dict[str, Any]:
    before, started = process_tree_cpu(pid), time.monotonic()
    result: dict[str, Any] = run()
    used = process_tree_cpu(pid) - before
    # The server is busy with this run only; its CPU over the run, per stream forwarded.
    result["server_cpu_percent_per_stream"] = round(
        100 * used / (time.monotonic() - started) / 2, 2)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--links", default="loopback,rtt_50ms,cap_300kbit")
    parser.add_argument("--transports", default="websocket,webrtc")
    parser.add_argument("--role", choices=["publisher", "subscriber"])
    parser.add_argument("--url")
    parser.add_argument("--tokens")
    parser.add_argument("--room")
    parser.add_argument("--transport")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--serve")
    parser.add_argument("--audio-socket", action="store_true",
                        help="also, under the cap: the audio on a second socket")
    args = parser.parse_args()
    if args.serve:
        serve_in_namespace(args.serve)
        return
    if args.role == "publisher":
        asyncio.run(publish(args.url, args.tokens, args.room, args.transport, args.seconds,
                            args.host))
        return
    if args.role == "subscriber":
        print(json.dumps(asyncio.run(subscribe(args.url, args.tokens, args.room,
                                               args.transport, args.seconds, args.host,
                                               args.audio_socket))))
        return
    results = {"seconds": args.seconds, "frame": f"{WIDTH}x{HEIGHT}@{FPS}"}
    for link in args.links.split(","):
        results[link] = run_link(link, args.seconds, args.transports.split(","),
                                 args.audio_socket)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
