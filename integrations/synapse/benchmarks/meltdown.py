"""The meltdown scenario: a burst of messages sent through Synapse's client API into a
room with many remote servers, Synapse alone and Synapse with southbridge, side by side.

    .venv-synapse/bin/python integrations/synapse/benchmarks/meltdown.py --servers 200 --messages 20

Synapse (and southbridge) are pinned to CPU 0 with taskset; this driver and the fake
remote homeservers run on the other CPUs. Prints one line of figures per setup.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from tests.support.deployment import Deployment, quoted  # noqa: E402
from tests.support.waiting import wait_for  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as file:
        fields = file.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def peak_rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as file:
        for line in file:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as file:
        for line in file:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def run(servers: int, messages: int, with_southbridge: bool, setup_timeout: float) -> dict:
    deployment = Deployment(remotes=servers, with_module=with_southbridge, synapse_cpus=[0],
                            southbridge_cpus=[0] if with_southbridge else None)
    try:
        synapse = deployment.synapse
        _, token, _ = synapse.register("alice")
        started = time.monotonic()
        room_id = deployment.create_room_joined_by_remotes(token)
        # Synapse forwards each remote's join to the servers already in the room; let
        # that settle so the burst is measured alone.
        last_join = synapse.request("GET", f"/_matrix/client/v3/rooms/{quoted(room_id)}/messages?dir=b&limit=1",
                                    token=token)["chunk"][0]["event_id"]
        remotes = deployment.remotes
        deployment.remotes = remotes[:-1]  # the last one to join is the only one not sent its join
        deployment.wait_until_every_remote_has([last_join], setup_timeout)
        deployment.remotes = remotes
        setup_s = time.monotonic() - started
        synapse_pid = synapse.child.pid
        southbridge_pid = deployment.southbridge.child.pid if with_southbridge else None
        rss_before = rss_mib(synapse_pid)
        synapse_cpu = cpu_seconds(synapse_pid)
        southbridge_cpu = cpu_seconds(southbridge_pid) if southbridge_pid else 0.0
        latencies: list[float] = []

        def send(n: int) -> str:
            begun = time.monotonic()
            event_id = synapse.send_message(token, room_id, f"burst-{n}", f"burst message {n}")
            latencies.append(time.monotonic() - begun)
            return event_id

        burst_started = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(max_workers=messages) as pool:
            event_ids = list(pool.map(send, range(messages)))
        deployment.wait_until_every_remote_has(event_ids, 1800)
        delivered_s = time.monotonic() - burst_started
        return {
            "setup": "Synapse + southbridge" if with_southbridge else "Synapse alone",
            "servers": servers,
            "messages": messages,
            "send_p50_s": statistics.median(latencies),
            "send_max_s": max(latencies),
            "synapse_cpu_s": cpu_seconds(synapse_pid) - synapse_cpu,
            "southbridge_cpu_s": (cpu_seconds(southbridge_pid) - southbridge_cpu) if southbridge_pid else 0.0,
            "all_delivered_s": delivered_s,
            "synapse_rss_before_mib": rss_before,
            "synapse_peak_rss_mib": peak_rss_mib(synapse_pid),
            "southbridge_peak_rss_mib": peak_rss_mib(southbridge_pid) if southbridge_pid else 0.0,
            "room_setup_s": setup_s,
        }
    finally:
        deployment.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--servers", type=int, default=200)
    parser.add_argument("--messages", type=int, default=20)
    parser.add_argument("--setup-timeout", type=float, default=900)
    parser.add_argument("--only", choices=["alone", "southbridge"])
    arguments = parser.parse_args()
    if os.cpu_count() and os.cpu_count() > 1:
        # The driver and the fake remotes stay off Synapse's CPU.
        os.sched_setaffinity(0, set(range(1, os.cpu_count())))
    for with_southbridge in (False, True):
        if arguments.only and arguments.only != ("southbridge" if with_southbridge else "alone"):
            continue
        figures = run(arguments.servers, arguments.messages, with_southbridge, arguments.setup_timeout)
        print(" ".join(f"{key}={value:.2f}" if isinstance(value, float) else f"{key}={value!r}"
                       for key, value in figures.items()), flush=True)


if __name__ == "__main__":
    main()
