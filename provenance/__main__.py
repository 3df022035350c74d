from . import lifeline
from .cli import main

lifeline.hold_from_env()  # started by one of our commands (the demo): die with it
main(prog_name="provenance")
