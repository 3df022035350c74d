"""Provenance: signed, chained, checkable supply-chain records."""

__version__ = "0.1.0"
