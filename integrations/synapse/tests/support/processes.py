"""The real Synapse (from the virtualenv's pinned PyPI release) and the real southbridge
binary as child processes on loopback, each with its own files in a test directory."""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import signedjson.key

from .waiting import free_port, wait_for

REPOSITORY = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..", ".."))
# scripts/test names the binary it built; otherwise the release build, as the README builds it.
SOUTHBRIDGE_BINARY = os.environ.get("SOUTHBRIDGE_BINARY", os.path.join(REPOSITORY, ".build", "release", "southbridge"))
# The module as this checkout has it, ahead of whichever copy the virtualenv installed.
MODULE_SOURCE = os.path.join(REPOSITORY, "integrations", "synapse")
SYNAPSE_NAME = "synapse.test"
INGEST_TOKEN = "synapse-test-token-0123456789"


class ChildProcess:
    def __init__(self, arguments: list[str], log_path: str, environment: dict[str, str] | None = None,
                 cpus: list[int] | None = None) -> None:
        self.log_path = log_path
        log = open(log_path, "ab")
        env = dict(os.environ)
        env.update(environment or {})
        if cpus is not None:
            arguments = ["taskset", "-c", ",".join(map(str, cpus))] + arguments
        self.process = subprocess.Popen(arguments, stdout=log, stderr=subprocess.STDOUT, env=env,
                                        start_new_session=True)
        log.close()
        self.paused = False

    @property
    def pid(self) -> int:
        return self.process.pid

    def running(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        if self.running():
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def pause(self) -> None:
        """SIGSTOP: the process keeps its sockets (connections to it are accepted by the
        kernel) but answers nothing until `resume`."""
        self.process.send_signal(signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        if self.running():
            self.process.send_signal(signal.SIGCONT)
        self.paused = False

    def terminate(self, timeout: float = 30) -> int:
        if self.running():
            # A stopped process handles SIGTERM only once it runs again.
            if self.paused:
                self.resume()
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)
        return self.process.returncode

    def log(self) -> str:
        with open(self.log_path, encoding="utf-8", errors="replace") as file:
            return file.read()


def write_signing_key(path: str) -> Any:
    key = signedjson.key.generate_signing_key("a_test")
    with open(path, "w") as file:
        signedjson.key.write_signing_keys(file, [key])
    return key


class Southbridge:
    """The southbridge binary with a config naming the test CA and allowing loopback.
    Its ingest API listens on a loopback port, or on a unix socket with `unix_socket`."""

    def __init__(self, directory: str, signing_key_path: str, ca_path: str, retry_initial_ms: int = 200,
                 retry_max_ms: int = 1000, unix_socket: bool = False) -> None:
        self.directory = directory
        self.port = free_port()
        self.socket_path = os.path.join(directory, "ingest.sock") if unix_socket else None
        listen = f"unix:{self.socket_path}" if self.socket_path else f"127.0.0.1:{self.port}"
        self.config_path = os.path.join(directory, "southbridge.toml")
        token_path = os.path.join(directory, "ingest.token")
        with open(token_path, "w") as file:
            file.write(INGEST_TOKEN + "\n")
        self.token_path = token_path
        with open(self.config_path, "w") as file:
            file.write(f"""[server]
name = "{SYNAPSE_NAME}"
signing_key_path = "{signing_key_path}"
[storage]
path = "{directory}/outbox.sqlite3"
[ingest]
listen = "{listen}"
token_file = "{token_path}"
[tls]
ca_file = "{ca_path}"
[network]
ip_range_allowlist = ["127.0.0.0/8"]
[sender]
retry_initial_ms = {retry_initial_ms}
retry_max_ms = {retry_max_ms}
""")
        self.child: ChildProcess | None = None
        self.starts = 0

    @property
    def ingest_url(self) -> str:
        """The module's `ingest` setting for this southbridge."""
        return f"unix:{self.socket_path}" if self.socket_path else f"http://127.0.0.1:{self.port}"

    def start(self, cpus: list[int] | None = None) -> None:
        self.starts += 1
        # As the shipped systemd unit runs it (it sets no environment).
        self.child = ChildProcess([SOUTHBRIDGE_BINARY, "run", "--config", self.config_path],
                                  os.path.join(self.directory, f"southbridge-{self.starts}.log"),
                                  environment={}, cpus=cpus)
        wait_for(lambda: self._exited() or self._health(), 30, "southbridge answers /health")
        if not self.child.running():
            raise AssertionError(f"southbridge exited: {self.child.log()[-2000:]}")

    def _exited(self) -> bool:
        return self.child is not None and not self.child.running()

    def _health(self) -> bool:
        return self._request("GET", "/health", authorized=False)[0] == 200

    def kill(self) -> None:
        if self.child:
            self.child.kill()

    def stop(self) -> None:
        if self.child:
            self.child.terminate()

    def pause(self) -> None:
        """SIGSTOP: southbridge's sockets stay open but nothing is answered until `resume`."""
        if self.child:
            self.child.pause()

    def resume(self) -> None:
        if self.child:
            self.child.resume()

    def get(self, path: str) -> Any:
        status, body = self._request("GET", path)
        if status != 200:
            raise AssertionError(f"southbridge answered GET {path} with {status}: {body[:300]!r}")
        return json.loads(body) if not path.startswith("/metrics") else body.decode()

    def _request(self, method: str, path: str, authorized: bool = True) -> tuple[int, bytes]:
        if self.socket_path:
            connection: http.client.HTTPConnection = _UnixHTTPConnection(self.socket_path, timeout=10)
        else:
            connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            headers = {"Authorization": f"Bearer {INGEST_TOKEN}"} if authorized else {}
            connection.request(method, path, headers=headers)
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, socket_path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._socket_path = socket_path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._socket_path)


class Synapse:
    """Synapse with SQLite on loopback, one plain-HTTP listener for client and federation."""

    def __init__(self, directory: str, ca_path: str, signing_key_path: str,
                 module_config: dict[str, Any] | None, extra_config: dict[str, Any] | None = None) -> None:
        """`extra_config`: homeserver.yaml settings that replace the tests' defaults."""
        self.directory = directory
        self.port = free_port()
        self.metrics_port = free_port()
        self.shared_secret = "registration-secret"
        self.config_path = os.path.join(directory, "homeserver.yaml")
        self.signing_key_path = signing_key_path
        log_config = os.path.join(directory, "log.yaml")
        self.log_path = os.path.join(directory, "homeserver.log")
        with open(log_config, "w") as file:
            json.dump({
                "version": 1,
                "formatters": {"precise": {"format": "%(asctime)s %(name)s %(levelname)s %(message)s"}},
                "handlers": {"file": {"class": "logging.FileHandler", "formatter": "precise",
                                      "filename": self.log_path}},
                "root": {"level": "INFO", "handlers": ["file"]},
                "disable_existing_loggers": False,
            }, file)
        config: dict[str, Any] = {
            "server_name": SYNAPSE_NAME,
            "pid_file": os.path.join(directory, "homeserver.pid"),
            "listeners": [
                {"port": self.port, "bind_addresses": ["127.0.0.1"], "type": "http", "tls": False,
                 "x_forwarded": False, "resources": [{"names": ["client", "federation"], "compress": False}]},
                {"port": self.metrics_port, "bind_addresses": ["127.0.0.1"], "type": "metrics"},
            ],
            "database": {"name": "sqlite3", "args": {"database": os.path.join(directory, "homeserver.db")}},
            "log_config": log_config,
            "media_store_path": os.path.join(directory, "media"),
            "signing_key_path": signing_key_path,
            "registration_shared_secret": self.shared_secret,
            "report_stats": False,
            "macaroon_secret_key": "macaroon-secret",
            "form_secret": "form-secret",
            "trusted_key_servers": [],
            "suppress_key_server_warning": True,
            "federation_custom_ca_list": [ca_path],
            "ip_range_whitelist": ["127.0.0.0/8"],
            # The remotes are on loopback, which Synapse refuses to federate with by default.
            "federation_ip_range_blacklist": [],
            "enable_metrics": True,
            "presence": {"enabled": True},
            "default_room_version": "10",
            "rc_message": {"per_second": 10000, "burst_count": 10000},
            "rc_joins": {"local": {"per_second": 10000, "burst_count": 10000},
                         "remote": {"per_second": 10000, "burst_count": 10000}},
            "rc_login": {"address": {"per_second": 10000, "burst_count": 10000},
                         "account": {"per_second": 10000, "burst_count": 10000}},
            "rc_registration": {"per_second": 10000, "burst_count": 10000},
            "rc_federation": {"window_size": 1000, "sleep_limit": 10000, "sleep_delay": 1,
                              "reject_limit": 10000, "concurrent": 10000},
            "rc_key_requests": {"per_second": 10000, "burst_count": 10000},
            "rc_joins_per_room": {"per_second": 10000, "burst_count": 10000},
            "rc_presence": {"per_user": {"per_second": 10000, "burst_count": 10000}},
        }
        config.update(extra_config or {})
        if module_config is not None:
            config["modules"] = [{"module": "southbridge_synapse.SouthbridgeModule", "config": module_config}]
        with open(self.config_path, "w") as file:
            json.dump(config, file, indent=1)  # YAML is a superset of JSON
        self.child: ChildProcess | None = None
        self.starts = 0

    @property
    def federation_address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    def start(self, environment: dict[str, str] | None = None, cpus: list[int] | None = None,
              expect_ready: bool = True) -> None:
        self.starts += 1
        environment = dict(environment or {})
        environment["PYTHONPATH"] = os.pathsep.join(
            path for path in (environment.get("PYTHONPATH"), MODULE_SOURCE) if path)
        self.child = ChildProcess([sys.executable, "-m", "synapse.app.homeserver", "-c", self.config_path],
                                  os.path.join(self.directory, f"synapse-{self.starts}.out"),
                                  environment=environment, cpus=cpus)
        if expect_ready:
            wait_for(lambda: not self.child.running() or self._ready(), 120, "Synapse answers its client API")
            if not self.child.running():
                raise AssertionError(f"Synapse exited: {self.child.log()[-3000:]}")

    def _ready(self) -> bool:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/_matrix/client/versions", timeout=5) as response:
            return response.status == 200

    def stop(self) -> None:
        if self.child:
            self.child.terminate()

    def kill(self) -> None:
        if self.child:
            self.child.kill()

    def log(self) -> str:
        if not os.path.exists(self.log_path):
            return ""
        with open(self.log_path, encoding="utf-8", errors="replace") as file:
            return file.read()

    # Client API

    def request(self, method: str, path: str, body: Any = None, token: str | None = None,
                timeout: float = 60) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=data, headers=headers,
                                         method=method)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as error:
            raise AssertionError(f"{method} {path} answered {error.code}: {error.read()[:300]!r}") from None

    def register(self, localpart: str) -> tuple[str, str, str]:
        """Registers a user through the shared-secret admin API; returns (user ID, access
        token, device ID)."""
        nonce = self.request("GET", "/_synapse/admin/v1/register")["nonce"]
        mac = hmac.new(self.shared_secret.encode(), digestmod=hashlib.sha1)
        mac.update(b"\x00".join([nonce.encode(), localpart.encode(), b"password", b"notadmin"]))
        answer = self.request("POST", "/_synapse/admin/v1/register", {
            "nonce": nonce, "username": localpart, "password": "password", "admin": False, "mac": mac.hexdigest()})
        return answer["user_id"], answer["access_token"], answer["device_id"]

    def send_message(self, token: str, room_id: str, txn_id: str, body: str) -> str:
        path = (f"/_matrix/client/v3/rooms/{urllib.parse.quote(room_id, safe='')}"
                f"/send/m.room.message/{txn_id}")
        return self.request("PUT", path, {"msgtype": "m.text", "body": body}, token)["event_id"]

    def metric(self, sample: str) -> float:
        """The value of one sample (`name{labels}`) on Synapse's metrics listener; 0 if absent."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/_synapse/metrics", timeout=10) as answer:
            for line in answer.read().decode().splitlines():
                if line.startswith(sample + " "):
                    return float(line.rsplit(" ", 1)[1])
        return 0.0

    def _query_database(self, sql: str, parameters: tuple = ()) -> Any:
        with sqlite3.connect(os.path.join(self.directory, "homeserver.db"), timeout=30) as database:
            return database.execute(sql, parameters).fetchone()

    def federation_stream_position(self) -> int:
        """Synapse's `federation_stream_position` for events, read from its database."""
        return self._query_database("SELECT stream_id FROM federation_stream_position WHERE type = 'events'")[0]

    def latest_stream_ordering(self) -> int:
        return self._query_database("SELECT MAX(stream_ordering) FROM events")[0]

    def stream_ordering(self, event_id: str) -> int:
        return self._query_database("SELECT stream_ordering FROM events WHERE event_id = ?", (event_id,))[0]

    def outbound_connections(self, ports: set[int]) -> list[str]:
        """Synapse's TCP connections, open now, to any of `ports` on loopback."""
        if not self.child or not self.child.running():
            return []
        return _connections_to(self.child.pid, ports)


def _connections_to(pid: int, ports: set[int]) -> list[str]:
    inodes = set()
    fd_directory = f"/proc/{pid}/fd"
    for fd in os.listdir(fd_directory):
        try:
            target = os.readlink(os.path.join(fd_directory, fd))
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:["):-1])
    found = []
    for table in ("tcp", "tcp6"):
        with open(f"/proc/{pid}/net/{table}") as file:
            next(file)
            for line in file:
                fields = line.split()
                remote_port = int(fields[2].split(":")[1], 16)
                if fields[9] in inodes and remote_port in ports:
                    found.append(f"{fields[1]} -> {fields[2]} state {fields[3]}")
    return found
