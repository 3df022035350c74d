"""The `provenance` command: one module per command group, shared options,
and the demo (the main job).
"""
