"""The module's configuration: the `config:` mapping under its entry in `modules:`.

Every key is optional except `ingest` and `token_file`; unknown keys are errors, and
every error names the key and what was wrong with its value.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from typing import Any, Mapping


class ConfigError(Exception):
    """A configuration value that cannot be used; the message names the key."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"southbridge_synapse config {key}: {problem}")
        self.key = key


@dataclass(frozen=True)
class IngestAddress:
    """Where southbridge's ingest API listens: a loopback TCP address or a unix socket."""

    host: str | None = None
    port: int | None = None
    unix_path: str | None = None

    def __str__(self) -> str:
        if self.unix_path is not None:
            return f"unix:{self.unix_path}"
        host = f"[{self.host}]" if self.host and ":" in self.host else self.host
        return f"http://{host}:{self.port}"


@dataclass(frozen=True)
class SouthbridgeConfig:
    ingest: IngestAddress
    token: str
    token_file: str
    allow_untested_synapse_version: bool = False
    # One ingest request carries at most this many units (PDUs plus EDUs; southbridge
    # takes up to 1,000 of each) and about this many bytes of JSON.
    max_batch_units: int = 500
    max_batch_bytes: int = 4 * 1024 * 1024
    # Work taken from Synapse and not yet acknowledged by southbridge; past it, the module
    # stops reading Synapse's event stream until southbridge catches up.
    max_buffer_bytes: int = 32 * 1024 * 1024
    retry_initial_ms: int = 500
    retry_max_ms: int = 30_000
    request_timeout_ms: int = 60_000
    # A remote server that sends Synapse an authenticated federation request is woken in
    # southbridge (its backoff cleared, tried at once) at most once per this interval.
    inbound_wake_interval_ms: int = 60_000


_KEYS = {
    "ingest",
    "token_file",
    "allow_untested_synapse_version",
    "max_batch_units",
    "max_batch_bytes",
    "max_buffer_bytes",
    "retry_initial_ms",
    "retry_max_ms",
    "request_timeout_ms",
    "inbound_wake_interval_ms",
}

_LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1"}


def parse_ingest_address(value: Any) -> IngestAddress:
    if not isinstance(value, str) or not value:
        raise ConfigError(
            "ingest",
            f"must be a string like \"http://127.0.0.1:8009\" or \"unix:/run/southbridge/ingest.sock\", got {value!r}",
        )
    if value.startswith("unix:"):
        path = value[len("unix:") :]
        if not path.startswith("/"):
            raise ConfigError("ingest", f"a unix socket path must be absolute, got {path!r}")
        return IngestAddress(unix_path=path)
    parsed = urllib.parse.urlsplit(value)
    if parsed.scheme != "http":
        raise ConfigError(
            "ingest",
            f"must start with http:// or unix: (southbridge listens on loopback, without TLS), got {value!r}",
        )
    if parsed.path not in ("", "/") or parsed.query or parsed.fragment or parsed.username:
        raise ConfigError("ingest", f"must be only a scheme, host and port, got {value!r}")
    try:
        port = parsed.port
    except ValueError:
        raise ConfigError("ingest", f"the port must be a number from 1 to 65535, got {value!r}") from None
    if port is None or port == 0:
        raise ConfigError("ingest", f"needs a port, as in http://127.0.0.1:8009, got {value!r}")
    host = parsed.hostname or ""
    if host not in _LOOPBACK_NAMES and not host.startswith("127."):
        raise ConfigError(
            "ingest",
            f"must be a loopback address (the token travels in clear), got host {host!r}",
        )
    return IngestAddress(host=host, port=port)


def _integer(config: Mapping[str, Any], key: str, default: int, low: int, high: int) -> int:
    value = config.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(key, f"must be a whole number from {low} to {high}, got {value!r}")
    return value


def read_token(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as file:
            token = file.read().strip()
    except OSError as error:
        raise ConfigError("token_file", f"cannot read {path}: {error.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError("token_file", f"{path} is not UTF-8 text") from None
    if not token:
        raise ConfigError("token_file", f"{path} is empty")
    if any(c.isspace() for c in token):
        raise ConfigError("token_file", f"{path} holds whitespace inside the token")
    return token


def parse_config(config: Any) -> SouthbridgeConfig:
    if not isinstance(config, Mapping):
        raise ConfigError("config", f"must be a mapping with at least ingest and token_file, got {config!r}")
    unknown = sorted(set(config) - _KEYS)
    if unknown:
        raise ConfigError(unknown[0], f"unknown key (known keys: {', '.join(sorted(_KEYS))})")
    if "ingest" not in config:
        raise ConfigError("ingest", "required, for example \"http://127.0.0.1:8009\"")
    if "token_file" not in config:
        raise ConfigError("token_file", "required: the file holding southbridge's ingest.token_file token")
    token_file = config["token_file"]
    if not isinstance(token_file, str) or not token_file:
        raise ConfigError("token_file", f"must be a path, got {token_file!r}")
    allow = config.get("allow_untested_synapse_version", False)
    if not isinstance(allow, bool):
        raise ConfigError("allow_untested_synapse_version", f"must be true or false, got {allow!r}")
    parsed = SouthbridgeConfig(
        ingest=parse_ingest_address(config["ingest"]),
        token=read_token(token_file),
        token_file=token_file,
        allow_untested_synapse_version=allow,
        max_batch_units=_integer(config, "max_batch_units", 500, 1, 1000),
        max_batch_bytes=_integer(config, "max_batch_bytes", 4 * 1024 * 1024, 65_536, 32 * 1024 * 1024),
        max_buffer_bytes=_integer(config, "max_buffer_bytes", 32 * 1024 * 1024, 1024 * 1024, 1024 * 1024 * 1024),
        retry_initial_ms=_integer(config, "retry_initial_ms", 500, 10, 60_000),
        retry_max_ms=_integer(config, "retry_max_ms", 30_000, 100, 3_600_000),
        request_timeout_ms=_integer(config, "request_timeout_ms", 60_000, 1_000, 600_000),
        inbound_wake_interval_ms=_integer(config, "inbound_wake_interval_ms", 60_000, 1_000, 86_400_000),
    )
    if parsed.retry_max_ms < parsed.retry_initial_ms:
        raise ConfigError(
            "retry_max_ms",
            f"must be at least retry_initial_ms ({parsed.retry_initial_ms}), got {parsed.retry_max_ms}",
        )
    return parsed
