"""The 48-cell wafer tables and the two encodings."""
import itertools
import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from flow.core import geometry as g
from flow.runner.errors import ShapeError

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "reference" / "geometry.json"


def test_vendored_tables_match_shared_reference():
    if not SHARED.exists():
        pytest.skip("shared/reference is not beside this checkout")  # vendored copy is the source
    assert json.loads(SHARED.read_text()) == g._G


def test_encoding_a_matches_grid_and_remap():
    # every TC appears once in the grid, at the position remap_8x8 says
    flat = g.GRID_8X8.ravel()
    assert sorted(flat[flat >= 0].tolist()) == list(range(48))
    for t in range(48):
        assert flat[g.REMAP_8X8[t]] == t
    assert len(g.DEAD_8X8) == 16
    # dead positions: rows 4-7, columns 4-7
    assert set(g.DEAD_8X8.tolist()) == {r * 8 + c for r in range(4, 8) for c in range(4, 8)}


def test_encoding_a_round_trip_each_cell_and_dead_positions_zero():
    for t in range(48):
        x = np.zeros(48)
        x[t] = 1.0
        img = g.to_8x8(x)
        r, c = divmod(int(g.REMAP_8X8[t]), 8)
        assert img[r, c] == 1.0 and img.sum() == 1.0
        assert g.GRID_8X8[r, c] == t
        np.testing.assert_array_equal(g.from_8x8(img), x)
    x = np.arange(1, 49, dtype=np.int64)
    img = g.to_8x8(x)
    assert np.all(img.ravel()[g.DEAD_8X8] == 0)
    # batch shapes and a trailing channel axis
    xb = np.random.default_rng(0).integers(0, 256, size=(5, 3, 48))
    assert g.to_8x8(xb).shape == (5, 3, 8, 8)
    np.testing.assert_array_equal(g.from_8x8(g.to_8x8(xb)[..., None]), xb)


def test_from_8x8_rejects_charge_on_dead_position():
    img = np.zeros((8, 8))
    img[7, 7] = 1
    with pytest.raises(ValueError, match="dead"):
        g.from_8x8(img)
    assert g.from_8x8(img, strict=False).sum() == 0


def test_encoding_b_round_trip_and_layout():
    for t in range(48):
        x = np.zeros(48)
        x[t] = 1
        img = g.to_4x4x3(x)
        assert img.shape == (4, 4, 3)
        ch, pix = divmod(t, 16)
        assert img[pix // 4, pix % 4, ch] == 1 and img.sum() == 1
    xb = np.random.default_rng(1).random((7, 48))
    np.testing.assert_array_equal(g.from_4x4x3(g.to_4x4x3(xb)), xb)


@pytest.mark.parametrize("fn", [g.to_8x8, g.to_4x4x3, g.supercell_sums, g.group_sums])
def test_wrong_shape_names_expected_and_got(fn):
    with pytest.raises(ShapeError, match=r"expected trailing shape \(48,\).*\(3, 47\)"):
        fn(np.zeros((3, 47)))


def test_ground_distance_values():
    m = g.ground_distance()
    assert m.shape == (48, 48)
    np.testing.assert_array_equal(m, m.T)
    assert np.all(np.diag(m) == 0)
    off = m[~np.eye(48, dtype=bool)]
    assert off.min() == pytest.approx(1.80, abs=0.005)
    assert off.max() == pytest.approx(13.76, abs=0.005)
    # neighbours in ROC 0 and 1 are 2.0 apart
    assert m[0, 1] == pytest.approx(2.0, abs=1e-5)
    assert m[16, 20] == pytest.approx(2.0, abs=1e-4)
    assert m[0, 4] == pytest.approx(2.0, abs=1e-4)
    # within every ROC, nearest neighbours are 2.0 apart; the 1.80 pairs straddle a ROC border
    # (the source quoted in docs/reference.md section 1 attributes 1.80 to ROC 2; the coordinates
    # say it is the cross-border spacing)
    for r in range(3):
        blk = m[16 * r:16 * r + 16, 16 * r:16 * r + 16][~np.eye(16, dtype=bool)]
        assert blk.min() == pytest.approx(2.0, abs=1e-4)
    close = np.argwhere(np.isclose(m, off.min(), atol=1e-3))
    assert len(close) > 0 and all(g.TC_ROC[a] != g.TC_ROC[b] for a, b in close)
    # triangle inequality (it is a metric)
    assert np.all(m[:, :, None] <= m[:, None, :] + m.T[None, :, :] + 1e-12)
    with pytest.raises(ValueError):
        m[0, 1] = 3.0


def test_supercells_and_groups():
    assert g.SUPERCELLS_2X2.shape == (36, 4)
    assert sum(g.SUPERCELL_WEIGHTS_EXACT) == Fraction(201, 16)  # = 12.5625
    assert g.SUPERCELL_WEIGHTS.sum() == pytest.approx(12.5625, rel=1e-15)
    assert all(len(set(sc)) == 4 for sc in g.SUPERCELLS_2X2.tolist())
    assert g.GROUPS_4X4.tolist() == [list(range(16 * k, 16 * k + 16)) for k in range(3)]
    x = np.arange(48.0)
    np.testing.assert_array_equal(g.supercell_sums(x), x[g.SUPERCELLS_2X2].sum(-1))
    np.testing.assert_array_equal(g.group_sums(x), [x[:16].sum(), x[16:32].sum(), x[32:].sum()])
    # super-cells are made of neighbouring cells: every pair within 2x the max neighbour distance
    m = g.ground_distance()
    for sc in g.SUPERCELLS_2X2:
        assert max(m[a, b] for a, b in itertools.combinations(sc, 2)) < 4.5


def test_uv_mapping_round_trip():
    for t, (u, v) in enumerate(g.TC_UV.tolist()):
        assert g.uv_to_tc(u, v) == t
    assert g.uv_to_tc(np.array([-1, 8, 0]), np.array([0, 0, 7])).tolist() == [-1, -1, -1]
    uu, vv = np.meshgrid(np.arange(8), np.arange(8), indexing="ij")
    tcs = g.uv_to_tc(uu, vv)
    assert sorted(tcs[tcs >= 0].tolist()) == list(range(48))


def test_aeblock_index_is_row_major_over_live_positions():
    assert sorted(g.TC_TO_AEBLOCK.tolist()) == list(range(48))
    assert g.TC_TO_AEBLOCK[28] == 0      # grid row 0, column 0
    assert g.TC_TO_AEBLOCK[12] == 7      # row 0, column 7
    assert g.TC_TO_AEBLOCK[47] == 32     # row 4, column 0
    assert g.TC_TO_AEBLOCK[32] == 47     # row 7, column 3
