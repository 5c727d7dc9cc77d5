"""The co-design sweep's grid expansion and Pareto front (issue 18), on hand-made tables."""
import pytest

from flow.core.encoder import ECONT_ARCH, EncoderArch
from flow.runner.errors import ConfigError
from flow.sweep.grid import ECONT_POINT, Point, expand, pareto_front


def test_expand_orders_names_and_marks_the_econt_point():
    pts = expand({"filters": [4, 8, 16], "latent_bits": [3, 9]})
    assert [p.id for p in pts] == ["f4_w6_a8_l3", "f4_w6_a8_l9", "f8_w6_a8_l3", "f8_w6_a8_l9",
                                   "f16_w6_a8_l3", "f16_w6_a8_l9"]
    assert [p.is_econt for p in pts] == [False, False, False, True, False, False]
    assert ECONT_POINT == Point(ECONT_ARCH, 9) and ECONT_POINT.id == "f8_w6_a8_l9"
    assert pts[0].to_dict() == {"id": "f4_w6_a8_l3", "filters": 4, "weight_bits": 6, "act_bits": 8,
                                "latent_bits": 3, "econt": False}
    # the default grid of the issue: 3 x 4 = 12 points; duplicates dropped; an empty grid is the ECON-T
    assert len(expand({"filters": [4, 8, 16], "latent_bits": [3, 5, 7, 9]})) == 12
    assert len(expand({"filters": [8, 8], "weight_bits": [4, 6, 8], "act_bits": [6, 8]})) == 6
    assert expand({}) == [ECONT_POINT]
    assert expand({"weight_bits": [4]})[0].arch == EncoderArch(8, 4, 8)


@pytest.mark.parametrize("grid,match", [
    ({"filter": [4]}, r"expected axes among .* got also \['filter'\]"),
    ({"filters": []}, r"filters: expected a non-empty list of integers, got \[\]"),
    ({"filters": 4}, r"filters: expected a non-empty list of integers, got 4"),
    ({"filters": [0]}, r"sweep grid filters: expected an integer in \[1, 64\], got 0"),
    ({"act_bits": [13]}, r"sweep grid act_bits: expected an integer in \[2, 12\], got 13"),
    ({"latent_bits": [17]}, r"latent_bits: expected integers in \[2, 16\], got 17"),
])
def test_expand_rejects_a_bad_grid_naming_the_axis(grid, match):
    with pytest.raises(ConfigError, match=match):
        expand(grid)


def test_pareto_front_on_a_hand_made_table():
    rows = [
        {"id": "a", "emd": 1.0, "area": 10.0},    # front: smallest area
        {"id": "b", "emd": 0.5, "area": 20.0},    # front
        {"id": "c", "emd": 0.6, "area": 25.0},    # beaten by b in both
        {"id": "d", "emd": 0.5, "area": 30.0},    # beaten by b: equal EMD, larger area
        {"id": "e", "emd": 0.2, "area": 50.0},    # front: best EMD
        {"id": "f", "emd": 0.2, "area": 50.0},    # tie with e: both on the front
        {"id": "g", "emd": None, "area": 1.0},    # failed point: no part
        {"id": "h", "emd": float("nan"), "area": 1.0},
        {"id": "i", "area": 1.0},
    ]
    assert pareto_front(rows, ("emd", "area")) == ["a", "b", "e", "f"]
    # one objective: the minimum (and its ties)
    assert pareto_front(rows, ("emd",)) == ["e", "f"]
    # three objectives: a point good in the third one joins the front
    rows3 = [dict(r, res=1.0) for r in rows[:6]] + [{"id": "z", "emd": 0.6, "area": 25.0, "res": 0.5}]
    assert pareto_front(rows3, ("emd", "area", "res")) == ["a", "b", "e", "f", "z"]
    assert pareto_front([], ("emd",)) == []
    with pytest.raises(ConfigError, match="at least one objective"):
        pareto_front(rows, ())
