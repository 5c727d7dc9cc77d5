"""Generator of the ``prog_tmr`` RTL flavour (registry entry in ``flow/hdl/flavours.py``).

The ``prog`` flavour (same programmable encoder ``econt_encoder_prog``, same
ports, address map and timing) with triple modular redundancy: the weight image
(12864 bits for the ECON-T) (``econt_image_regs_tmr``), the CALVALUE and drop registers and
every pipeline register (``econt_shell_tmr``) are held in three copies
(``econt_tmr_copy``, kept in the hierarchy so that synthesis cannot merge
them) with a bitwise majority voter and refresh (each copy reloads the voted
value every clock).  ``seu_count`` counts the clocks in which copies
disagreed (corrected upsets).  A test build (``ECONT_SEU_INJECT``) can flip
one bit of one copy through top-level signals ``seu_inj_*``: ``docs/rtl_cosim.md``.
"""
from __future__ import annotations

from flow.hdl.datapath import hand_written_dir, prog_encoder_source
from flow.hdl.flavours import FlavourSources, GeneratorInputs
from flow.hdl.prog import ENCODER_INSTANCE
from flow.hdl.prog import HAND_WRITTEN as PROG_HAND_WRITTEN
from flow.hdl.top import AddressMap, _hex, address_map, top_source

#: hand-written modules of this flavour (``flow/resources/rtl``), in compile order
HAND_WRITTEN = (*PROG_HAND_WRITTEN, "econt_tmr_copy.v", "econt_tmr_reg.v", "econt_image_regs_tmr.v",
                "econt_shell_tmr.v")
#: global bit index (injection hook) of the weight image's bit 0; the shell's registers follow it
WEIGHT_INJ_OFFSET = 0


def weight_registers_tmr(image: int, amap: AddressMap | None = None) -> str:
    """The triplicated weight image registers (``weights`` bus, reset to ``image``; read-back
    on ``weights_rdata``, copies disagreeing on ``weights_err``); ``amap``: default the
    ECON-T's."""
    m = amap or address_map()
    return f"""
    // weight image registers, triplicated with voters and refresh: word a of the image at
    // address {m.weight_base} + a; cfg_rst loads the trained image
    wire [{m.image_bits - 1}:0] weights;
    econt_image_regs_tmr #(
        .N_BITS({m.image_bits}), .ADDR_BITS({m.addr_bits}), .DATA_BITS({m.data_bits}), .BASE({m.weight_base}),
        .DEFAULT({_hex(image, m.image_bits)}),
        .OFFSET({WEIGHT_INJ_OFFSET}), .INJ_BITS({m.inj_bits})
    ) u_weights (
        .clk(clk),
`ifdef ECONT_SEU_INJECT
        .inj_en(seu_inj_en), .inj_copy(seu_inj_copy), .inj_bit(seu_inj_bit),
`endif
        .cfg_rst(cfg_rst), .cfg_we(cfg_we), .cfg_addr(cfg_addr),
        .cfg_wdata(cfg_wdata), .q(weights), .rdata(weights_rdata), .err(weights_err)
    );
"""


def generate(g: GeneratorInputs) -> FlavourSources:
    hw = hand_written_dir()
    files = {name: (hw / name).read_text() for name in HAND_WRITTEN}
    files["econt_encoder_prog.v"] = prog_encoder_source(g.latent_bits, g.arch)
    m = address_map(g.arch)
    return FlavourSources(files=files, top=top_source(g, ENCODER_INSTANCE,
                                                      weight_registers_tmr(g.weight_image, m), tmr=True),
                          info={"tmr_bits": 3 * (m.image_bits + tmr_shell_bits(g))})


def tmr_shell_bits(g: GeneratorInputs) -> int:
    """Register bits the TMR shell triplicates: CALVALUE, drop and the pipeline."""
    from flow.core.encoder import N_LATENT
    from flow.core.frontend import CAL_BITS, SUM_BITS
    from flow.core.geometry import N_TC
    from flow.hdl.datapath import AEIN_BITS
    from flow.hdl.top import DROP_BITS

    s1 = (1 + N_TC * AEIN_BITS + SUM_BITS) if g.fe_reg else 0
    return N_TC * CAL_BITS + DROP_BITS + s1 + 1 + N_LATENT * g.latent_bits + SUM_BITS
