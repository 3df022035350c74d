from provenance.cli.main import main
from provenance.infra import lifeline

lifeline.hold_from_env()  # started by one of our commands (the demo): die with it
main(prog_name="provenance")
