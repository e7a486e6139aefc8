"""100 concurrent REST clients against one server for a minute: latency percentiles,
throughput and errors (the load figure of docs/reliability.md).

Each client is a thread with its own keep-alive connection, authenticated as
Twilio's helper library is (HTTP Basic with the API key), looping over what a
Twilio app does most: list rooms, create a room, fetch it, list its participants,
complete it. Nothing is asserted; one JSON line is printed.

    python benchmarks/rest_load.py --clients 100 --seconds 60 [--profile out.txt]

``--profile`` samples the server process with py-spy for the run and adds where
its CPU time went to the line.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import requests
from bench_server import BenchServer, percentile
from processes import profile_summary


def client_loop(base: str, auth: tuple[str, str], until: float,
                latencies: list[float], errors: list[str]) -> None:
    with requests.Session() as http:
        http.auth = auth
        while time.monotonic() < until:
            try:
                name = uuid.uuid4().hex[:12]
                steps = [
                    ("GET", "Rooms", {"PageSize": "20"}),
                    ("POST", "Rooms", {"UniqueName": name}),
                    ("GET", f"Rooms/{name}", None),
                    ("GET", f"Rooms/{name}/Participants", None),
                    ("POST", f"Rooms/{name}", {"Status": "completed"}),
                ]
                for method, path, params in steps:
                    started = time.perf_counter()
                    response = http.request(
                        method, base + path, timeout=30,
                        params=params if method == "GET" else None,
                        data=params if method == "POST" else None,
                    )
                    latencies.append(time.perf_counter() - started)
                    if response.status_code >= 400:
                        errors.append(f"{method} {path} {response.status_code}")
            except requests.RequestException as error:
                errors.append(repr(error))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--profile", metavar="PATH",
                        help="sample the server with py-spy into PATH (collapsed stacks)")
    args = parser.parse_args()
    spy = None
    with BenchServer(media_workers=1) as server:
        creds = server.credentials()
        base = server.url + "video/v1/"
        auth = (creds["api_key_sid"], creds["api_key_secret"])
        latencies: list[float] = []
        errors: list[str] = []
        until = time.monotonic() + args.seconds
        threads = [
            threading.Thread(target=client_loop, args=(base, auth, until, latencies, errors))
            for _ in range(args.clients)
        ]
        started = time.monotonic()
        if args.profile:
            assert server.process is not None
            spy = subprocess.Popen([
                str(Path(sys.executable).with_name("py-spy")), "record", "--pid",
                str(server.process.pid), "--duration", str(max(1, round(args.seconds))),
                "--rate", "250", "--format", "raw", "--output", args.profile, "--nonblocking",
            ], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        wall = time.monotonic() - started
        if spy is not None:
            spy.wait(timeout=60)
    ms = [1000 * value for value in latencies]
    print(json.dumps({
        "benchmark": "rest_load",
        "clients": args.clients,
        "seconds": round(wall, 1),
        "requests": len(latencies),
        "requests_per_s": round(len(latencies) / wall, 1),
        "errors": len(errors),
        "first_errors": errors[:3],
        "p50_ms": round(percentile(ms, 50), 1),
        "p95_ms": round(percentile(ms, 95), 1),
        "p99_ms": round(percentile(ms, 99), 1),
        "max_ms": round(max(ms), 1) if ms else None,
        **({"profile": profile_summary(args.profile, top=12)} if args.profile else {}),
    }))


if __name__ == "__main__":
    main()
