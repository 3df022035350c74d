"""The demo's step for recall effectiveness (docs/lineage.md, "Recall
acknowledgements"): the processor that made the salad acknowledges its recall,
signed, with what it took back and destroyed; the regulator's report then says
who acknowledged, what was recovered and what is still out."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from provenance.cli.demo_story import Demo


def acknowledge(demo: Demo, directory: Path, base: str, carrier: str, at: Any, append: Any) -> None:
    """Step 12: a holder's acknowledgement and the recall report."""
    from provenance.cli.demo_story import PROCESSOR, SALAD_URI  # it calls this: loaded by now

    demo.say(
        "11d. The processor acknowledges the recall, signed, with what it took back and "
        "destroyed; the report shows who acknowledged and what is still out"
    )
    demo.run(  # the recall in force on the salad (--recall EVENT_ID names one)
        "recall", "ack", SALAD_URI, "--as", PROCESSOR,
        "--returned", "400 EA", "--destroyed", "1000 EA", "--notes", "shop returns pending",
    )  # fmt: skip
    demo.run("recall", "report", SALAD_URI)
