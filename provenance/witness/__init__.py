"""The witness: a C2SP tlog-witness service that a regulator, a consumer association
or an industry body runs on its own machine, with its own key, to cosign the logs it
follows (docs/protocol.md, "Witnesses and policy").

- :mod:`provenance.witness.state`: its own small SQLite file (the last cosigned
  checkpoint per log, the log keys it trusts), with an atomic compare-and-swap;
- :mod:`provenance.witness.service`: ``add-checkpoint`` and the monitoring read,
  as status codes and bodies, without HTTP;
- :mod:`provenance.witness.http`: the same over WSGI (served with waitress by
  ``provenance witness serve``).

It imports only :mod:`provenance.core` and :mod:`provenance.infra`: a witness needs
nothing of the operator's ledger, store or web app.
"""
