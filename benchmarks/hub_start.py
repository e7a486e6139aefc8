"""How long a JupyterHub with the video service takes to come up: ``jupyterhub``
started to the service answering through the proxy, then each user's server
started to ready, and one relayed ``/video/token``. The hub is the hub tests'
(README config block, tests/hub/hub_process.py). Prints one JSON line.

    python benchmarks/hub_start.py --runs 3
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.hub.hub_process import USERS, Hub


def one_run() -> dict[str, float]:
    root = Path(tempfile.mkdtemp(prefix="jv-bench-hub-"))
    hub = Hub(root)
    try:
        hub.start()
        started = time.perf_counter()
        for user in USERS:
            hub.start_server(user)
        servers = time.perf_counter() - started
        token = hub.user_token("teacher", ["access:servers!server=teacher/"])
        started = time.perf_counter()
        response = requests.get(f"{hub.url}user/teacher/video/token?room=bench", timeout=30,
                                headers={"Authorization": f"token {token}"})
        response.raise_for_status()
        relayed = time.perf_counter() - started
        return {"hub_with_service_s": hub.started_in, "user_servers_s": servers,
                "relayed_token_ms": relayed * 1000}
    finally:
        hub.stop()
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    runs = [one_run() for _ in range(parser.parse_args().runs)]
    print(json.dumps({
        "benchmark": "hub_start",
        "runs": len(runs),
        "users": len(USERS),
        **{f"{key}_median": round(statistics.median(run[key] for run in runs), 3)
           for key in runs[0]},
        **{f"{key}_max": round(max(run[key] for run in runs), 3) for key in runs[0]},
    }))


if __name__ == "__main__":
    main()
