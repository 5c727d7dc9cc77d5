"""Generator of the ``prog_tmr`` RTL flavour (registry entry in ``flow/hdl/flavours.py``).

The ``prog`` flavour (same programmable encoder ``econt_encoder_prog``, same
ports, address map and timing) with triple modular redundancy: the weight image
(12864 bits for the ECON-T), the CALVALUE and drop registers and every pipeline
register are the same modules as in ``prog`` (``econt_image_regs``, ``econt_shell``,
``econt_reg``) with ``TMR = 1``: three copies (``econt_tmr_copy``, kept in the
hierarchy so that synthesis cannot merge them) with a bitwise majority voter and
refresh (each copy reloads the voted value every clock).  ``seu_count`` counts the
clocks in which copies disagreed (corrected upsets).  A test build
(``ECONT_SEU_INJECT``) can flip one bit of one copy through top-level signals
``seu_inj_*``: ``docs/rtl_cosim.md``.
"""
from __future__ import annotations

from flow.hdl.flavours import FlavourSources, GeneratorInputs
from flow.hdl.prog import generate as prog_generate
from flow.hdl.top import address_map


def generate(g: GeneratorInputs) -> FlavourSources:
    src = prog_generate(g, tmr=True)
    src.info["tmr_bits"] = 3 * (address_map(g.arch).image_bits + tmr_shell_bits(g))
    return src


def tmr_shell_bits(g: GeneratorInputs) -> int:
    """Register bits the TMR shell triplicates: CALVALUE, drop and the pipeline."""
    from flow.core.encoder import N_LATENT
    from flow.core.frontend import CAL_BITS, SUM_BITS
    from flow.core.geometry import N_TC
    from flow.hdl.datapath import AEIN_BITS
    from flow.hdl.top import DROP_BITS

    s1 = (1 + N_TC * AEIN_BITS + SUM_BITS) if g.fe_reg else 0
    return N_TC * CAL_BITS + DROP_BITS + s1 + 1 + N_LATENT * g.latent_bits + SUM_BITS
