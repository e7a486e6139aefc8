"""A downlink capped by rate: a network namespace joined to this one by a veth
pair whose end here has a token bucket (``tc qdisc ... tbf``) on it.

``CappedLink()`` makes the namespace ``jvq-<pid>`` with ``10.231.19.2`` there
and ``10.231.19.1`` here (tests/websocket/no_udp.py holds 10.231.9.0/24 and
tests/classroom/lossy_link.py 10.233.0.0/16: suites running side by side must
not share addresses). What leaves this side for the namespace goes through the
veth's egress queue, so :meth:`cap` limits the SFU -> subscriber direction only;
the subscriber's RTCP (Receiver Reports, REMB) comes back unshaped. The kernel
here has sch_tbf but not sch_netem, so the cap is a rate and a queue, not delay
or loss emulation: loss comes only from the queue overflowing.
"""

from __future__ import annotations

import os
import shutil
import subprocess

HERE, THERE = "10.231.19.1", "10.231.19.2"


def sh(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(command), capture_output=True, text=True, check=False)


def tbf_available() -> bool:
    """Whether this machine lets the test make a namespace and a tbf qdisc (root,
    iproute2, sch_tbf)."""
    if shutil.which("ip") is None or shutil.which("tc") is None:
        return False
    probe = f"jvq-probe-{os.getpid()}"
    try:
        if sh("ip", "netns", "add", probe).returncode != 0:
            return False
        return sh("ip", "netns", "exec", probe, "tc", "qdisc", "add", "dev", "lo", "root",
                  "tbf", "rate", "1mbit", "burst", "16kb", "latency", "50ms").returncode == 0
    finally:
        sh("ip", "netns", "del", probe)


class CappedLink:
    """The namespace ``name``; :meth:`command` runs a program in it."""

    def __init__(self) -> None:
        self.name = f"jvq-{os.getpid()}"
        self.outside = f"jvqh{os.getpid() % 100000}"
        inside = f"jvqn{os.getpid() % 100000}"
        sh("ip", "link", "del", self.outside)
        sh("ip", "netns", "del", self.name)
        try:
            for step in (
                ("ip", "netns", "add", self.name),
                ("ip", "-n", self.name, "link", "set", "lo", "up"),
                ("ip", "link", "add", self.outside, "type", "veth", "peer", "name", inside),
                ("ip", "link", "set", inside, "netns", self.name),
                ("ip", "addr", "add", f"{HERE}/24", "dev", self.outside),
                ("ip", "-n", self.name, "addr", "add", f"{THERE}/24", "dev", inside),
                ("ip", "link", "set", self.outside, "up"),
                ("ip", "-n", self.name, "link", "set", inside, "up"),
            ):
                done = sh(*step)
                if done.returncode != 0:
                    raise RuntimeError(f"{' '.join(step)}: {done.stderr.strip()}")
        except BaseException:
            self.close()
            raise

    def cap(self, rate: str, latency: str) -> None:
        """Limit this side's sending to ``rate`` (e.g. ``350kbit``), queueing up to
        ``latency`` of it (e.g. ``1500ms``) before dropping."""
        done = sh("tc", "qdisc", "replace", "dev", self.outside, "root", "tbf", "rate", rate,
                  "burst", "16kb", "latency", latency)
        if done.returncode != 0:
            raise RuntimeError(f"tc qdisc replace dev {self.outside} tbf: {done.stderr.strip()}")

    def dropped(self) -> int:
        """Packets the cap's queue dropped (tc -s)."""
        out = sh("tc", "-s", "qdisc", "show", "dev", self.outside).stdout
        words = out.replace(",", " ").replace("(", " ").split()
        return int(words[words.index("dropped") + 1]) if "dropped" in words else 0

    def command(self, *command: str) -> list[str]:
        return ["ip", "netns", "exec", self.name, *command]

    def close(self) -> None:
        sh("ip", "link", "del", self.outside)
        sh("ip", "netns", "del", self.name)
