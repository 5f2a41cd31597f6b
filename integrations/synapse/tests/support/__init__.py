"""Real peers on loopback for the tests that drive a real Synapse: Synapse itself, the
southbridge binary, fake remote homeservers and a throwaway certificate authority."""
