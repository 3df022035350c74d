"""The MQTT ingest service: connection, inbox, decode, prepare (signature
checks on other cores), the commit worker process, checkpoints published,
metrics.
"""
