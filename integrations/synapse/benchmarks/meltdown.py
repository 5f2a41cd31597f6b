"""The meltdown scenario: a burst of messages sent through Synapse's client API into a
room with many remote servers, Synapse alone and Synapse with southbridge, side by side.

    .venv-synapse/bin/python integrations/synapse/benchmarks/meltdown.py --servers 200 --messages 20
    .venv-synapse/bin/python integrations/synapse/benchmarks/meltdown.py --servers 500 \\
        --scenarios burst,single,faulty --faulty-percent 20

Scenarios run one after another in the same room: `burst` sends the messages at once,
`single` one at a time (each once every remote has the last), `faulty` one message after
a share of the servers went down (half refusing connections, half never answering).
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


def reset_peak_rss(pid: int) -> None:
    """Starts VmHWM again from the current RSS (Linux's clear_refs 5), so that the next
    peak read is the scenario's own, not the room setup's."""
    with open(f"/proc/{pid}/clear_refs", "w") as file:
        file.write("5")


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as file:
        for line in file:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class Meter:
    """CPU seconds of Synapse and southbridge since the meter was made."""

    def __init__(self, synapse_pid: int, southbridge_pid: int | None) -> None:
        self.synapse_pid, self.southbridge_pid = synapse_pid, southbridge_pid
        self.synapse_cpu = cpu_seconds(synapse_pid)
        self.southbridge_cpu = cpu_seconds(southbridge_pid) if southbridge_pid else 0.0
        self.synapse_rss_before_mib = rss_mib(synapse_pid)
        self.setup_peak_rss_mib = {pid: peak_rss_mib(pid) for pid in (synapse_pid, southbridge_pid) if pid}
        for pid in self.setup_peak_rss_mib:
            reset_peak_rss(pid)
        self.started = time.monotonic()

    def figures(self) -> dict:
        southbridge = self.southbridge_pid
        return {
            "synapse_cpu_s": cpu_seconds(self.synapse_pid) - self.synapse_cpu,
            "southbridge_cpu_s": (cpu_seconds(southbridge) - self.southbridge_cpu) if southbridge else 0.0,
            "synapse_rss_before_mib": self.synapse_rss_before_mib,
            "synapse_peak_rss_mib": peak_rss_mib(self.synapse_pid),
            "southbridge_peak_rss_mib": peak_rss_mib(southbridge) if southbridge else 0.0,
            "synapse_earlier_peak_rss_mib": self.setup_peak_rss_mib[self.synapse_pid],
            "southbridge_earlier_peak_rss_mib": self.setup_peak_rss_mib[southbridge] if southbridge else 0.0,
        }


def run(servers: int, messages: int, with_southbridge: bool, setup_timeout: float,
        scenarios: list[str], faulty_percent: int) -> list[dict]:
    # southbridge retries a failed server on its shipped schedule (10 minutes, then longer),
    # not the tests' short one.
    deployment = Deployment(remotes=servers, with_module=with_southbridge, synapse_cpus=[0],
                            southbridge_cpus=[0] if with_southbridge else None,
                            southbridge_retry_ms=(600_000, 604_800_000))
    setup = "Synapse + southbridge" if with_southbridge else "Synapse alone"
    try:
        synapse = deployment.synapse
        _, token, _ = synapse.register("alice")
        started = time.monotonic()
        room_id = deployment.create_room_joined_by_remotes(token)
        # Synapse forwards each remote's join to the servers already in the room; let
        # that settle so that what follows is measured alone.
        last_join = synapse.request("GET", f"/_matrix/client/v3/rooms/{quoted(room_id)}/messages?dir=b&limit=1",
                                    token=token)["chunk"][0]["event_id"]
        remotes = deployment.remotes
        deployment.remotes = remotes[:-1]  # the last one to join is the only one not sent its join
        deployment.wait_until_every_remote_has([last_join], setup_timeout)
        deployment.remotes = remotes
        setup_s = time.monotonic() - started
        synapse_pid = synapse.child.pid
        southbridge_pid = deployment.southbridge.child.pid if with_southbridge else None
        results = []

        def send(n: int, kind: str) -> tuple[str, float]:
            begun = time.monotonic()
            event_id = synapse.send_message(token, room_id, f"{kind}-{n}", f"{kind} message {n}")
            return event_id, time.monotonic() - begun

        def row(scenario: str, latencies: list[float], delivered_s: float, meter: Meter, **extra) -> dict:
            return {"setup": setup, "scenario": scenario, "servers": servers,
                    "send_p50_s": statistics.median(latencies), "send_max_s": max(latencies),
                    **meter.figures(), "all_delivered_s": delivered_s, "room_setup_s": setup_s, **extra}

        for scenario in scenarios:
            if scenario == "burst":
                # `messages` concurrent sends through the client API.
                meter = Meter(synapse_pid, southbridge_pid)
                with concurrent.futures.ThreadPoolExecutor(max_workers=messages) as pool:
                    sent = list(pool.map(lambda n: send(n, "burst"), range(messages)))
                deployment.wait_until_every_remote_has([e for e, _ in sent], 1800)
                results.append(row("burst", [s for _, s in sent], time.monotonic() - meter.started, meter,
                                   messages=messages))
            elif scenario == "single":
                # `messages` sends one at a time, each into a quiet room: the next is sent
                # once every remote has the last.
                meter = Meter(synapse_pid, southbridge_pid)
                latencies, deliveries = [], []
                for n in range(messages):
                    begun = time.monotonic()
                    event_id, latency = send(n, "single")
                    deployment.wait_until_every_remote_has([event_id], 600)
                    latencies.append(latency)
                    deliveries.append(time.monotonic() - begun)
                results.append(row("single", latencies, max(deliveries), meter, messages=messages,
                                   delivered_p50_s=statistics.median(deliveries)))
            elif scenario == "faulty":
                # One message once a share of the servers is down: half of them refuse
                # connections, the other half accept and never answer.
                faulty = remotes[len(remotes) - len(remotes) * faulty_percent // 100:]
                for index, remote in enumerate(faulty):
                    if index % 2:
                        remote.hang()
                    else:
                        remote.stop()
                live = remotes[:len(remotes) - len(faulty)]
                deployment.remotes = live
                meter = Meter(synapse_pid, southbridge_pid)
                event_id, latency = send(0, "faulty")
                deployment.wait_until_every_remote_has([event_id], 1800)
                results.append(row(f"faulty-{faulty_percent}%", [latency], time.monotonic() - meter.started, meter,
                                   messages=1, live_servers=len(live)))
                deployment.remotes = remotes
        return results
    finally:
        deployment.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--servers", type=int, default=200)
    parser.add_argument("--messages", type=int, default=20)
    parser.add_argument("--setup-timeout", type=float, default=900)
    parser.add_argument("--only", choices=["alone", "southbridge"])
    parser.add_argument("--scenarios", default="burst",
                        help="comma-separated, run in this order in one room: burst, single, faulty")
    parser.add_argument("--faulty-percent", type=int, default=20)
    arguments = parser.parse_args()
    if os.cpu_count() and os.cpu_count() > 1:
        # The driver and the fake remotes stay off Synapse's CPU.
        os.sched_setaffinity(0, set(range(1, os.cpu_count())))
    for with_southbridge in (False, True):
        if arguments.only and arguments.only != ("southbridge" if with_southbridge else "alone"):
            continue
        scenarios = arguments.scenarios.split(",")
        unknown = set(scenarios) - {"burst", "single", "faulty"}
        if unknown:
            parser.error(f"unknown scenario {sorted(unknown)[0]!r}: use burst, single or faulty")
        for figures in run(arguments.servers, arguments.messages, with_southbridge, arguments.setup_timeout,
                           scenarios, arguments.faulty_percent):
            print(" ".join(f"{key}={value:.2f}" if isinstance(value, float) else f"{key}={value!r}"
                           for key, value in figures.items()), flush=True)


if __name__ == "__main__":
    main()
