"""The Synapse versions this module was tested with.

The module replaces methods of Synapse's federation sender and of its federation request
authenticator, which are internals that change between releases without notice, so it
refuses to load on any other version unless `allow_untested_synapse_version` is set.
"""

from importlib import metadata

TESTED_SYNAPSE_VERSIONS = ("1.163.2",)


def installed_synapse_version() -> str:
    """The version of the installed `matrix-synapse` distribution, as pip knows it."""
    return metadata.version("matrix-synapse")


class UntestedSynapseVersion(Exception):
    def __init__(self, version: str) -> None:
        super().__init__(
            "southbridge_synapse was tested with Synapse "
            f"{', '.join(TESTED_SYNAPSE_VERSIONS)} and this is Synapse {version}: it replaces "
            "internals of Synapse's federation sender and request authenticator, which change "
            "between releases, so it refuses to load. Install a southbridge-synapse release "
            "tested with this Synapse, or set `allow_untested_synapse_version: true` in the "
            "module's config to load it anyway."
        )
        self.version = version


def check_synapse_version(version: str, allow_untested: bool) -> bool:
    """Raises `UntestedSynapseVersion` for an untested version unless allowed; returns
    whether the version is one of the tested ones."""
    if version in TESTED_SYNAPSE_VERSIONS:
        return True
    if not allow_untested:
        raise UntestedSynapseVersion(version)
    return False
