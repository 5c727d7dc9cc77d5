"""The RTL generators for encoder architectures other than the ECON-T's (co-design sweep,
issue 18): the address map, the da4ml constant encoder and the programmable encoder are
parameterised by :class:`flow.core.encoder.EncoderArch`, and the generated blocks are
bit-exact against the golden model through the shipped testbench."""
import numpy as np
import pytest

from flow.core import encoder as E
from flow.core.tb_vectors import ADDRESS_MAP, check_address_map, tb_address_map
from flow.hdl.datapath import comb_latent_codes, prog_encoder_source, trace_const
from flow.hdl.top import address_map
from flow.runner import config as C
from flow.runner.errors import StageInputError

QUIET = {"echo": lambda *a, **k: None}
ARCHS = [E.EncoderArch(4, 5, 6), E.EncoderArch(16, 8, 8), E.EncoderArch(2, 3, 12), E.EncoderArch(64, 12, 12),
         E.EncoderArch(1, 2, 2)]


@pytest.mark.parametrize("arch", [E.ECONT_ARCH, *ARCHS], ids=str)
def test_generator_and_testbench_address_maps_agree(arch):
    """Two independent write-downs of the documented rule (the RTL generator's and the
    testbench side's) agree, and the map leaves no overlap."""
    m, t = address_map(arch), tb_address_map(arch)
    keys = ("addr_bits", "weight_base", "weight_words", "cal_base", "cal_words", "drop_addr", "image_bits")
    assert {k: getattr(m, k) for k in keys} == {k: t[k] for k in keys}
    assert m.weight_words * 32 >= arch.image_bits > (m.weight_words - 1) * 32
    assert m.weight_base + m.weight_words <= m.cal_base and m.cal_base + m.cal_words <= m.drop_addr
    assert m.drop_addr < 1 << m.addr_bits
    assert arch.image_bits + 4096 <= 1 << m.inj_bits


def test_the_econt_map_is_the_asics():
    m = address_map()
    assert (m.weight_words, m.cal_base, m.drop_addr, m.addr_bits, m.inj_bits) == (402, 0x200, 0x220, 10, 16)
    assert ADDRESS_MAP["weight_words"] == 402 and ADDRESS_MAP["image_bits"] == 12864
    big = tb_address_map(E.EncoderArch(16, 8, 8))
    assert (big["weight_words"], big["cal_base"], big["drop_addr"], big["addr_bits"]) == \
        (1068, 0x800, 0x820, 12)
    with pytest.raises(StageInputError, match=r"weight_words.*\(1068, 402\)"):
        check_address_map({"weight_words": 402}, E.EncoderArch(16, 8, 8))


@pytest.mark.parametrize("arch,latent_bits", [
    (E.EncoderArch(4, 5, 6), 3), (E.EncoderArch(2, 3, 12), 14),
    pytest.param(E.EncoderArch(16, 8, 8), 7, marks=pytest.mark.slow),      # about 70 s of da4ml
], ids=str)
def test_da4ml_trace_is_bit_exact_for_other_archs(arch, latent_bits):
    w = E.EncoderWeights.random(5, arch)
    sol = trace_const(w, latent_bits)
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, size=(3000, 48))
    a[:1000] *= rng.random((1000, 48)) < 0.2
    a = np.concatenate([a, np.zeros((1, 48), int), np.full((1, 48), 255)])
    got, want = comb_latent_codes(sol, a, latent_bits), E.golden_encode(a, w, latent_bits)
    bad = np.argwhere(got != want)
    assert len(bad) == 0, f"n_total {want.size}, n_mismatch {len(bad)}, first {bad[:5].tolist()}"
    assert 0 < (want > 0).mean() and (want == 2 ** latent_bits - 1).mean() < 0.95


def test_prog_encoder_ports_follow_the_arch():
    arch = E.EncoderArch(4, 5, 6)
    v = prog_encoder_source(3, arch)
    assert f"input  wire [{arch.n_params * 5 - 1}:0] weights" in v and "output wire [47:0] latent" in v
    assert "econt_mul_us #(.WX(6), .WW(5))" in v and "econt_mul_us #(.WX(8), .WW(5))" in v
    assert v.count("econt_mul_us #(") == 680 // 8 * 4 + 64 * 16
    # the ECON-T's multipliers keep the module defaults (no parameter override)
    assert "econt_mul_us #(" not in prog_encoder_source(9)


@pytest.fixture(scope="module")
def arch_rtl(tmp_path_factory):
    """const and prog RTL of a small non-ECON-T encoder whose weight image ends in a partial
    configuration word (1080 values x 5 bits = 5400 bits = 168.75 words), 3-bit latents."""
    from flow.hdl import build as rtl

    arch = E.EncoderArch(4, 5, 6)
    assert arch.image_bits % 32
    w = E.EncoderWeights.random(12, arch)
    d = tmp_path_factory.mktemp("rtl_arch")
    s = C.RtlConfig(flavours=["const", "prog"], yosys_check=False)
    meta = rtl.build_rtl(d / "rtl", w, s, latent_bits=3, calvalues=[2048] * 48, drop=3, **QUIET)
    return d, w, meta


def test_rtl_of_another_arch_lints_and_documents_its_map(arch_rtl):
    _d, w, meta = arch_rtl
    port = meta["interface"]["cfg_port"]
    assert meta["arch"] == w.arch.to_dict()
    assert (port["weight_words"], port["image_bits"]) == (169, 5400)
    assert "last word partial" in port["weight_layout"]
    check_address_map(port, w.arch)
    assert all("clean" in meta["flavours"][fl]["lint"] for fl in ("const", "prog"))


@pytest.mark.slow
@pytest.mark.parametrize("flavour", ["const", "prog"])
def test_rtl_of_another_arch_is_bit_exact_in_cosim(arch_rtl, flavour):
    """Every testbench test (vectors, corners, bubbles, reset, defaults, read-back of the partial
    last weight word, reprogramming with random weights of the same arch) on 1500 wafers."""
    from flow.hdl import verify

    d, w, meta = arch_rtl
    settings = C.CosimConfig(min_wafers=1500, bubbles=300, reload=300, first_mismatches=5,
                             verilator_opt="-O0")
    cal = [2048] * 48
    res = verify.simulate(flavour, d / "rtl", d / f"out_{flavour}", d / f"build_{flavour}",
                         d / f"logs_{flavour}", weights=w, latent_bits=3, calvalues=cal, drop=3,
                         default_calvalues=cal, default_drop=3, vectors=None, settings=settings, seed=3,
                         latency_cycles=int(meta["interface"]["latency_cycles"]), **QUIET)
    assert res["n_total"] >= 1500 and res["n_mismatch"] == 0, \
        f"n_total {res['n_total']}, n_mismatch {res['n_mismatch']}, first {res.get('first_mismatches')}"
    assert all(t["passed"] for t in res["tests"].values()), res["tests"]
    assert res["checks"]["readback"]["ok"] and res["checks"]["readback"]["n_mismatch"] == 0
    if flavour == "prog":
        assert res["phases"]["reconfigured"]["random_weights"] is True
        assert res["phases"]["reconfigured"]["config_writes"] == 169 + 18 + 1
