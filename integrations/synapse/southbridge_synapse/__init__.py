"""southbridge_synapse: Synapse hands its outbound federation to southbridge.

Enable it in homeserver.yaml:

    modules:
      - module: southbridge_synapse.SouthbridgeModule
        config:
          ingest: "http://127.0.0.1:8009"        # or "unix:/run/southbridge/ingest.sock"
          token_file: "/etc/southbridge/ingest.token"
"""

from __future__ import annotations

import logging
from typing import Any

from .config import ConfigError, SouthbridgeConfig, parse_config
from .versions import TESTED_SYNAPSE_VERSIONS, check_synapse_version, installed_synapse_version

__all__ = ["SouthbridgeModule", "ConfigError", "TESTED_SYNAPSE_VERSIONS"]
__version__ = "0.1.0"

logger = logging.getLogger(__name__)


class SouthbridgeModule:
    """The Synapse module. Synapse builds it once per process at start."""

    @staticmethod
    def parse_config(config: Any) -> SouthbridgeConfig:
        # Synapse calls this while it reads homeserver.yaml, so an untested Synapse stops
        # before it starts anything, with the reason among its configuration errors.
        parsed = parse_config(config)
        check_synapse_version(installed_synapse_version(), parsed.allow_untested_synapse_version)
        return parsed

    def __init__(self, config: SouthbridgeConfig, api: Any) -> None:
        # Imported here: they import Synapse's internals, which a plain `import
        # southbridge_synapse` (for its version, or its config checks) must not need.
        from synapse.federation.sender import FederationSender

        from .federation import SouthbridgeFederation
        from .handoff import HandOffQueue
        from .ingest_client import IngestClient

        version = installed_synapse_version()
        if version not in TESTED_SYNAPSE_VERSIONS:
            logger.warning(
                "southbridge_synapse: running on Synapse %s, which it was not tested with "
                "(tested: %s), because allow_untested_synapse_version is set",
                version,
                ", ".join(TESTED_SYNAPSE_VERSIONS),
            )
        hs = api._hs
        if not hs.should_send_federation():
            logger.info("southbridge_synapse: this Synapse process sends no federation; nothing to hand over")
            return
        sender = hs.get_federation_sender()
        if not isinstance(sender, FederationSender):
            raise RuntimeError(
                f"southbridge_synapse: expected Synapse's FederationSender, found {type(sender).__name__}"
            )
        client = IngestClient(hs.get_reactor(), config.ingest, config.token, config.request_timeout_ms / 1000)
        handoff = HandOffQueue(client, config, api.run_as_background_process, api.sleep)
        SouthbridgeFederation(hs, api, handoff, client, config.inbound_wake_interval_ms / 1000).install(sender)
        logger.info(
            "southbridge_synapse: Synapse %s hands its outbound federation to southbridge at %s",
            version,
            config.ingest,
        )
