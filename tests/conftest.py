"""The suite's plugins; what they hold lives in tests/support/ (tests/README.md).
Test modules import from `support`, never from one another (tests/test_lanes.py)."""

import pytest

# Helpers' asserts report their values like a test's do.
pytest.register_assert_rewrite("support")

pytest_plugins = [
    "support.lanes",  # the fast and full lanes: `external`, `slow`, `shared`
    "support.tmp",  # tmp_path and tempfile on a tmpfs when there is one
    "support.fixtures",  # world, file_world, two_lot_cli, broker
    "support.portal",  # portal
    "support.ingest",  # start_ingest, publisher
    "support.postgres",  # postgres (a real server), postgres_url (a fresh schema on it)
    "support.browser",  # browser: Debian's Chromium for a test module
    "support.descriptors",  # cycles collected when a process holds many open files
    "support.checkout",  # fails a run that left files in the checkout
    "support.receivers",  # webhook_receiver, mail_receiver: the notifier's, on loopback
]
