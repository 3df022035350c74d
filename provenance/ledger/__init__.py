"""The one door for writes (`append.Ledger`) and its reject budget, the one way
to sign with a held key and append (`signer.Signer`), proofs and bundles out of
the store, the whole-ledger audit, lineage and trace, and the lot view pages are
drawn from.
"""
