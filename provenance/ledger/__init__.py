"""The one door for writes (`append.Ledger`), its reject budget, proofs and
bundles out of the store, the whole-ledger audit, lineage and trace, and the
lot view pages are drawn from.
"""
