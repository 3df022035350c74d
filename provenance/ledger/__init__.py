"""The one door for writes (`append.Ledger`) with the registry of event kinds
it applies (`kinds`: each kind's rules and effects, one table), its reject
reasons and budget, the one way to sign with a held key and append
(`signer.Signer`), proofs and bundles out of the store, the whole-ledger audit,
lineage and trace, and the lot view pages are drawn from.
"""
