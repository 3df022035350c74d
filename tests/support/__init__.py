"""What the tests share, so that no test module imports another (tests/README.md).

paths           the checkout, and conformance vectors (shared or vendored)
world           a small supply chain: a ledger with parties, a device and lot LOT42
fixtures        world, file_world, two_lot_cli and broker fixtures (a pytest plugin)
lanes           the `external` and `shared` markers set and enforced (a pytest plugin)
broker          the real broker (Mosquitto, else amqtt) and retained-notice helpers
portal          the web app over a World, signed-in browsers, API tokens (a plugin)
ingest          the in-process ingest service and its publisher (a plugin), payloads
ingest_process  `provenance ingest` as a process, its ledger on disk, a paced stream
gateway         a gateway folder, a subscriber, a Gateway in a thread
lineage         lots by short code, commissioning and transforms
children        reading a child's output; no process left behind
export_ledgers  big ledgers for the export harnesses (and bench/exports.py)
reference_event_hash  the EPCIS event hash reference implementation, offline
"""
