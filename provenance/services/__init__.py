"""Long-running services beside the ingest: the rules service (holds, flags)
and the recall notifier.
"""
