"""The fleet simulator: journeys of lots through the real gateway and device code,
with only the sensors and dock scanners simulated (docs/simulator.md)."""
