"""Where the shipped cocotb testbench lives: the one directory (``flow/resources/handoff``)
holding the testbench (``test_econt_handoff.py``), the SEU campaign testbench
(``test_econt_seu.py``), their runner (``run.py``), the vector-file reader
(``econt_vectors.py``), the pinned requirements and the archive's README templates.

The ``cosim`` stage runs these files and the ``handoff`` stage ships them, so that engineers
receive exactly what proved the RTL (docs/architecture.md, "one testbench").  They import
nothing of the flow; this module only names them (and carries their entry in
:data:`flow.runner.codehash.RESOURCES`, so that editing the testbench marks both stages
stale).
"""
from __future__ import annotations

from pathlib import Path

#: the directory of the shipped testbench, its runner and the archive templates
DIR = Path(__file__).resolve().parents[1] / "resources" / "handoff"
#: the runner (``run.py --root <testbench dir> --flavour ...``)
RUN_PY = DIR / "run.py"
#: the SEU campaign's cocotb test module (in :data:`DIR`)
SEU_MODULE = "test_econt_seu"
