"""Plumbing shared by services, the gateway and devices: children that die with
their parent (lifeline), MQTT broker URLs, a local MQTT broker for demo, tests and
benchmarks, and key files on disk.
"""
