"""The pure core: envelopes, canonical JSON, identities, event kinds and their
schemas, Merkle math, checkpoints, chains and proof bundles. No I/O, no clock,
no globals: values in, values or `provenance.core.errors` exceptions out.
"""
