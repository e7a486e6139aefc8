"""Ramp-up: how fast a 1280x720 camera in Chromium reaches full size and frame
rate at a subscriber through the SFU, with and without twilio-video's VP8
simulcast.

A ``jupyter server`` with the extension (``bench_server.BenchServer``) hosts
the room; ``benchmarks/ramp_up.mjs`` opens two twilio-video.js 2.36 pages in
Debian's headless Chromium (tests/browser's node_modules), the publisher on a
1280x720 30 fps fake camera, and samples both pages' ``getStats()`` twice a
second. What the sender's bandwidth estimate allows shows as the frame size and
rate the subscriber decodes.

Per run (``simulcast`` false, then true), from the publisher's connect:

- ``full_size_s``: the first sample at which the subscriber decodes 1280x720;
- ``full_s``: the first sample from which it decodes 1280x720 at >= 25 fps for
  3 s (None: never);
- ``last``: the final sample's subscriber size, fps and kbit/s, and each of the
  publisher's layers (rid, size, fps, kbit/s, ``qualityLimitationReason``:
  ``bandwidth`` is the estimate, ``cpu`` this machine's cores);
- ``timeline``: (t, width, fps, kbit/s) at the subscriber each second, and
  each publisher layer as ``width@fps:kbit/s(rtx kbit/s resent)``.

``--media-worker-tree DIR`` runs the server from another checkout (the frame
path: ``git archive main | tar -x -C DIR``), its media plane in-process.

Prints one JSON line.

    python benchmarks/ramp_up.py --seconds 30
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench_server import BenchServer, token

from tests.server_process import ServerProcess

HERE = Path(__file__).resolve().parent
FULL_FPS = 25.0
HOLD_S = 3.0


class TreeServer(ServerProcess):
    """The server of another checkout ``tree``, its media plane in-process (a media
    worker started with ``-m`` would import this checkout's package)."""

    def __init__(self, tree: str, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.tree = str(Path(tree).resolve())
        self.video_config["media_workers"] = 0

    def command(self) -> list[str]:
        start = "import sys; sys.path.insert(0, {!r}); from jupyter_server.serverapp import main"
        return [sys.executable, "-c", start.format(self.tree) + "; main()"]


def ramp(
    ws: str, room: str, tokens: tuple[str, str], simulcast: bool, seconds: float
) -> dict[str, Any]:
    command = [
        "node", str(HERE / "ramp_up.mjs"), "--ws", ws, "--room", room,
        "--publisher", tokens[0], "--subscriber", tokens[1], "--seconds", str(seconds),
    ] + (["--simulcast"] if simulcast else [])  # fmt: skip
    run = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    events = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    failures = [e for e in events if e.get("event") in ("error", "pageerror")]
    if run.returncode != 0 or failures:
        raise RuntimeError(
            f"ramp_up.mjs failed ({run.returncode}): {failures or run.stderr[-2000:]}"
        )
    samples = [e for e in events if e["event"] == "sample"]
    camera = next((e["camera"] for e in events if e["event"] == "connected"), None)
    return {"camera": camera} | summarize(samples, simulcast)


def summarize(samples: list[dict[str, Any]], simulcast: bool) -> dict[str, Any]:
    def received(sample: dict[str, Any]) -> dict[str, Any]:
        # The subscriber's one video stream (none before it is subscribed).
        return sample["in"][0] if sample["in"] else {"width": 0, "height": 0, "fps": 0, "kbps": 0}

    full_size = next((s["t"] for s in samples if received(s)["width"] >= 1280), None)
    full = None
    for index, sample in enumerate(samples):
        # Full from here on for HOLD_S (this machine's load makes one-sample dips).
        ahead = [s for s in samples[index:] if s["t"] <= sample["t"] + HOLD_S]
        if ahead[-1]["t"] - sample["t"] >= HOLD_S - 0.6 and all(
            received(s)["width"] >= 1280 and received(s)["fps"] >= FULL_FPS for s in ahead
        ):
            full = sample["t"]
            break
    timeline, second = [], 0
    for sample in samples:
        if sample["t"] >= second:
            stream = received(sample)
            layers = [
                f"{o['width']}@{o['fps']}:{o['kbps']}(rtx {o.get('resentKbps', 0)})"
                for o in sample["out"]
            ]
            timeline.append(
                [round(sample["t"], 1), stream["width"], stream["fps"], stream["kbps"], layers]
            )
            second += 1
    last = samples[-1] if samples else {"in": [], "out": []}
    return {
        "simulcast": simulcast,
        "full_size_s": full_size,
        "full_s": full,
        "last": {"in": last["in"], "out": last["out"]},
        "timeline": timeline,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="seconds per run")
    parser.add_argument("--no-simulcast", action="store_true", help="only the run without")
    parser.add_argument(
        "--media-worker-tree",
        help="run the server and its media plane (in-process) from this checkout",
    )
    args = parser.parse_args()
    runs = []
    bench = BenchServer()
    if args.media_worker_tree:
        bench.process = TreeServer(args.media_worker_tree, bench.root, bench.process.video_config)
    with bench as server:
        ws = f"ws://127.0.0.1:{server.port}{server.base_url}video/signaling"
        for number, simulcast in enumerate([False] if args.no_simulcast else [False, True]):
            tokens = (token(server, f"camera-{number}"), token(server, f"viewer-{number}"))
            runs.append(ramp(ws, f"ramp-{number}", tokens, simulcast, args.seconds))
    result = {
        "benchmark": "ramp_up",
        "server": args.media_worker_tree or "this checkout",
        "cpus": os.cpu_count(),
        "runs": runs,
    }
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
