"""The test suite's broker: `provenance.localbroker` (Mosquitto, else amqtt),
with password-protected brokers skipped where only amqtt is available."""

from __future__ import annotations

import pytest

from provenance.localbroker import (
    Broker as _Broker,
)
from provenance.localbroker import (
    BrokerUnavailable,
    broker_kind,
    describe,
    free_port,
    mosquitto_binary,
)


class Broker(_Broker):
    def start(self) -> Broker:
        try:
            super().start()
        except BrokerUnavailable as exc:
            pytest.skip(str(exc))
        return self


__all__ = ["Broker", "broker_kind", "describe", "free_port", "mosquitto_binary"]
