"""What health checks and Prometheus scrapes cost the standalone server.

Starts ``jupyter video`` (one media worker) and measures:

- ``start_to_healthy_s``: from launching the process to the first 200 of
  ``/video/healthz`` (what a load balancer or systemd waits for).
- per ``--rooms`` count (rooms in progress, created over REST, each with no
  participants): ``healthz_ms`` and ``metrics_ms``, median and p95 of
  ``--requests`` sequential requests, and ``metrics_bytes``. A scrape reads every
  room in progress from the store and asks the media worker for its counters, so
  its cost grows with the rooms; a health check only asks the worker.

Prints one JSON line.

    python benchmarks/observability.py --rooms 0,100,1000 --requests 50
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.deploy.standalone import StandaloneProcess


def timed(url: str, count: int, **kwargs: object) -> tuple[list[float], int]:
    """Milliseconds of ``count`` GETs of ``url``, and the last body's size."""
    session = requests.Session()
    times, size = [], 0
    for _ in range(count):
        start = time.perf_counter()
        response = session.get(url, timeout=30, **kwargs)  # type: ignore[arg-type]
        times.append((time.perf_counter() - start) * 1000)
        response.raise_for_status()
        size = len(response.content)
    return times, size


def summary(times: list[float]) -> dict[str, float]:
    return {
        "median": round(float(np.median(times)), 2),
        "p95": round(float(np.percentile(times, 95)), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rooms", default="0,100,1000")
    parser.add_argument("--requests", type=int, default=50)
    args = parser.parse_args()
    counts = [int(n) for n in args.rooms.split(",")]
    result: dict[str, object] = {"benchmark": "observability", "requests": args.requests}
    with tempfile.TemporaryDirectory() as root:
        server = StandaloneProcess(
            Path(root), video_config={"media_workers": 1, "max_participants": 50}
        )
        start = time.monotonic()
        server.start()
        try:
            while requests.get(server.url + "video/healthz", timeout=5).status_code != 200:
                time.sleep(0.05)
            result["start_to_healthy_s"] = round(time.monotonic() - start, 2)
            creds = server.credentials()
            auth = (creds["api_key_sid"], creds["api_key_secret"])
            created = 0
            per_count = []
            for count in counts:
                with requests.Session() as session:
                    while created < count:
                        session.post(server.url + "video/v1/Rooms", auth=auth, timeout=30,
                                     data={"UniqueName": f"bench-{created}"}).raise_for_status()
                        created += 1
                health, _ = timed(server.url + "video/healthz", args.requests)
                metrics, size = timed(server.url + "video/metrics", args.requests, auth=auth)
                per_count.append({"rooms": count, "healthz_ms": summary(health),
                                  "metrics_ms": summary(metrics), "metrics_bytes": size})
            result["by_rooms"] = per_count
        finally:
            server.stop()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
