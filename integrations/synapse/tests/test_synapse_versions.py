"""The module refuses to load on a Synapse it was not tested with: a real Synapse start,
with the installed version reported as an untested one."""

from __future__ import annotations

import os
import shutil
import tempfile
import unittest
from importlib import metadata

from southbridge_synapse import TESTED_SYNAPSE_VERSIONS

from .support.pki import TestCertificateAuthority
from .support.processes import INGEST_TOKEN, Synapse, write_signing_key
from .support.waiting import free_port, wait_for

UNTESTED_VERSION = "1.999.0"


class UntestedSynapseVersionTests(unittest.TestCase):
    def setUp(self) -> None:
        self.directory = tempfile.mkdtemp(prefix="southbridge-synapse-version-")
        self.addCleanup(shutil.rmtree, self.directory, True)
        # A distribution record found before the real one: importlib.metadata, and so the
        # module, then reads Synapse's version as UNTESTED_VERSION.
        record = os.path.join(self.directory, "shim", f"matrix_synapse-{UNTESTED_VERSION}.dist-info")
        os.makedirs(record)
        installed = metadata.distribution("matrix-synapse")
        lines = installed.read_text("METADATA").splitlines()
        with open(os.path.join(record, "METADATA"), "w") as file:
            file.write("\n".join(f"Version: {UNTESTED_VERSION}" if line.startswith("Version:") else line
                                 for line in lines))
        self.environment = {"PYTHONPATH": os.path.join(self.directory, "shim")}
        self.ca_path = os.path.join(self.directory, "ca.pem")
        TestCertificateAuthority().write_certificate(self.ca_path)
        self.key_path = os.path.join(self.directory, "signing.key")
        write_signing_key(self.key_path)
        self.token_path = os.path.join(self.directory, "ingest.token")
        with open(self.token_path, "w") as file:
            file.write(INGEST_TOKEN)

    def synapse(self, **extra: object) -> Synapse:
        config = {"ingest": f"http://127.0.0.1:{free_port()}", "token_file": self.token_path, **extra}
        synapse = Synapse(self.directory, self.ca_path, self.key_path, config)
        self.addCleanup(synapse.kill)
        return synapse

    def test_synapse_refuses_to_start_with_the_module_on_an_untested_version(self) -> None:
        synapse = self.synapse()
        synapse.start(environment=self.environment, expect_ready=False)
        wait_for(lambda: not synapse.child.running(), 120, "Synapse exits")
        self.assertNotEqual(synapse.child.process.returncode, 0)
        output = synapse.child.log()
        self.assertIn(f"was tested with Synapse {', '.join(TESTED_SYNAPSE_VERSIONS)} "
                      f"and this is Synapse {UNTESTED_VERSION}", output)
        self.assertIn("allow_untested_synapse_version", output)

    def test_the_override_loads_it_with_a_warning(self) -> None:
        synapse = self.synapse(allow_untested_synapse_version=True)
        synapse.start(environment=self.environment)
        self.assertIn(f"running on Synapse {UNTESTED_VERSION}, which it was not tested with", synapse.log())


if __name__ == "__main__":
    unittest.main()
