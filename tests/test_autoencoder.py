"""The autoencoder stage end to end on a tiny run: data -> emd -> autoencoder."""
import json

import numpy as np
import pytest

from flow.core import encoder as E
from flow.core.encoder_file import read_encoder
from flow.runner.config import load_config
from flow.runner.errors import ConfigError
from flow.runner.stages import run_stage

TINY = [
    "data.n_events=40", "data.n_files=1",
    "emd.n_pairs=300", "emd.n_test_pairs=100", "emd.epochs=1",
    "emd.grid={filters: [4], kernel: [3], n_conv: [1], dense: [8], epochs: 1}",
    "emd.ray={enabled: false}",
    "autoencoder.epochs=1", "autoencoder.max_train_wafers=400", "autoencoder.eval_wafers=200",
    "autoencoder.sinkhorn_iters=5", "autoencoder.kr_check_pairs=8", "autoencoder.kr_steps=20",
    "autoencoder.seeds=2", "autoencoder.conditional_losses=[emd_cnn]", "autoencoder.bootstrap=20",
    "autoencoder.refine_rounds=1", "autoencoder.refine_pairs=100", "autoencoder.refine_cnn_epochs=1",
]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    wd = tmp_path_factory.mktemp("ae")
    cfg = load_config("configs/smoke.yaml", TINY + [f"workdir={wd}"])
    quiet = lambda *a: None  # noqa: E731
    run_stage(cfg, "data", echo=quiet)
    run_stage(cfg, "emd", echo=quiet)
    man = run_stage(cfg, "autoencoder", echo=quiet)
    return cfg, man


def test_outputs_and_metrics(run):
    cfg, man = run
    out = cfg.stage_dir("autoencoder")
    for rel in ("encoder.h5", "decoder.h5", "weights.bin", "encoder.json", "weights.mem", "weights.npz",
                "golden_check.json", "eval.json", "comparison.csv", "training.csv", "cnn_check.json",
                "plots/emd_vs_occupancy.png", "plots/emd_vs_eta.png", "plots/emd_distribution.png",
                "plots/cnn_on_reconstructions_emd_cnn.png", "plots/captions.json"):
        assert rel in man["outputs"], rel
    models = [*cfg.autoencoder.losses, "emd_cnn+cond"]
    for name in models:
        for i in range(2):
            assert f"models/{name}/seed{i}/encoder.h5" in man["outputs"]
            assert f"history/{name}_seed{i}.csv" in man["outputs"]
    # encoder.json: what later stages read about the exported encoder
    enc = read_encoder(out / "encoder.json")
    assert enc.latent_bits == cfg.autoencoder.latent_bits
    assert enc.weights_sha256 == man["outputs"]["weights.bin"]["sha256"]
    m = man["metrics"]
    assert m["n_seeds"] == 2 and m["models"] == models
    assert set(m["median_emd"]) == set(models)
    for v in m["median_emd"].values():
        assert 0 < v["min"] <= v["median"] <= v["max"] < 13.8
    assert m["golden_mismatches"] == {**{name: 0 for name in models}, "emd_cnn_2elinks": 0}
    assert m["golden_n_total"] == 200 * 2 * len(models) + 200      # + the 2-eLink encoder
    # one epoch under a cap of one: every model hit the cap, so none is converged
    assert m["epoch_cap"] == 1
    assert m["epochs_run"] == {name: [2, 2] if name == "emd_cnn" else [1, 1] for name in models}
    assert m["converged"] == {name: False for name in models}
    r, lo, hi = (m[f"emd_cnn_over_telescope_{k}"] for k in ("median", "min", "max"))
    assert lo <= r <= hi
    assert r == m["median_emd"]["emd_cnn"]["median"] / m["median_emd"]["telescope_mse"]["median"]
    assert set(m["cnn_on_ae_pairs_rel_std"]) == set(models)
    ev = json.loads((out / "eval.json").read_text())
    for name in models:
        agg = ev["models"][name]["aggregate"]
        assert len(agg["vs_occupancy"]) == len(cfg.autoencoder.occupancy_bins) - 1
        assert agg["n_seeds"] == 2 and len(ev["models"][name]["seeds"]) == 2
        assert [t["stopped_early"] for t in ev["models"][name]["training"]] == [False, False]
    rows = (out / "training.csv").read_text().splitlines()
    assert len(rows) == 1 + 2 * len(models) and "stopped_early" in rows[0]
    kr = m["kr_dual_check"]
    assert kr["n"] > 0 and kr["max_ratio"] <= 1.0 + 1e-3   # a lower bound of exact EMD


def test_every_elink_budget_gets_its_encoder(run):
    """smoke: autoencoder.elinks = [2, 5]: 5 eLinks is the compared 9-bit model, 2 eLinks a
    3-bit encoder fine-tuned from it under the same rule, golden-checked and exported."""
    cfg, man = run
    out = cfg.stage_dir("autoencoder")
    m = man["metrics"]
    assert cfg.autoencoder.elinks == [2, 5]
    i = m["export_seed"]
    for rel in ("elinks.json", "elinks/2/weights.bin", "elinks/2/encoder.json",
                f"models/emd_cnn_2elinks/seed{i}/encoder.h5"):
        assert rel in man["outputs"], rel
    assert not any(o.startswith("elinks/5/") for o in man["outputs"])   # that one is weights.bin
    e2, e5 = m["elinks"]["2"], m["elinks"]["5"]
    assert (e2["latent_bits"], e2["trained"], e2["init"], e2["seed_index"]) == (3, True, "finetune", i)
    assert e2["golden"] == {"n_total": 200, "n_mismatch": 0}
    assert e2["epochs_run"] == 1 and e2["converged"] is False            # the tiny cap of one epoch
    assert 0 < e2["median_emd"] < 13.8
    assert (e5["latent_bits"], e5["trained"]) == (9, False)
    ev = json.loads((out / "eval.json").read_text())
    assert e5["median_emd"] == ev["models"]["emd_cnn"]["seeds"][i]["median"]
    assert json.loads((out / "elinks.json").read_text()) == m["elinks"]
    enc = read_encoder(out / "elinks/2/encoder.json", out / "elinks/2/weights.bin")
    assert enc.latent_bits == 3
    from qkeras.utils import load_qmodel

    k = load_qmodel(str(out / f"models/emd_cnn_2elinks/seed{i}/encoder.h5"), compile=False)
    assert int(k.get_layer("latent").quantizer.bits) == 3
    assert (out / "elinks/2/weights.bin").read_bytes() == E.EncoderWeights.from_keras(k).to_image()


def test_closed_loop_runs_one_round(run):
    cfg, man = run
    m = man["metrics"]
    assert m["refine_rounds"] == 1
    # the emd_cnn model only (plain decoder), every seed: round 0 and round 1
    assert list(m["refine_median_emd"]) == ["emd_cnn"]
    assert [len(r) for r in m["refine_median_emd"]["emd_cnn"]] == [2, 2]
    ev = json.loads((cfg.stage_dir("autoencoder") / "eval.json").read_text())
    rounds = ev["models"]["emd_cnn"]["refine"][0]
    assert [r["round"] for r in rounds] == [0, 1]
    assert rounds[1]["ae_pairs"] == 100 and rounds[1]["cnn_epochs"] == 1 and rounds[1]["random_pairs"] > 0
    # the refined model is the one evaluated: its median is round 1's
    seed0 = ev["models"]["emd_cnn"]["seeds"][0]["median"]
    assert seed0 == rounds[1]["median_emd"]
    # two training phases of one epoch each under the cap of one
    assert m["epochs_run"]["emd_cnn"] == [2, 2]


def test_exported_weights_are_the_encoders(run):
    from qkeras.utils import load_qmodel

    cfg, _ = run
    out = cfg.stage_dir("autoencoder")
    enc = load_qmodel(str(out / "encoder.h5"), compile=False)
    w = E.EncoderWeights.from_keras(enc)
    img = (out / "weights.bin").read_bytes()
    assert len(img) * 8 == 12864
    np.testing.assert_array_equal(E.EncoderWeights.from_image(img).to_vector(), w.to_vector())
    np.testing.assert_array_equal(
        E.EncoderWeights.from_mem((out / "weights.mem").read_text()).to_vector(), w.to_vector())
    with np.load(out / "weights.npz") as z:
        np.testing.assert_array_equal(z["dense_w"], w.dense_w)
    # the reloaded encoder is bit-exact with the golden model on test wafers
    with np.load(cfg.stage_dir("data") / "test.npz") as z:
        aein = z["aein"][:500]
    np.testing.assert_array_equal(E.keras_latent_codes(enc, aein), E.golden_encode(aein, w))


def test_rerun_resumes_from_checkpoints(run, capsys):
    cfg, man = run
    man2 = run_stage(cfg, "autoencoder", echo=lambda *a: None)
    assert "finished earlier" in capsys.readouterr().out
    assert man2["outputs"]["weights.bin"] == man["outputs"]["weights.bin"]


def test_export_loss_must_be_trained(run, tmp_path):
    cfg, _ = run
    bad = cfg.model_copy(update={"autoencoder": cfg.autoencoder.model_copy(
        update={"losses": ["telescope_mse"], "export_loss": "emd_cnn"})})
    with pytest.raises(ConfigError, match="export_loss"):
        run_stage(bad, "autoencoder", echo=lambda *a: None)


def test_bench_times_every_loss(run, tmp_path):
    """``make bench``'s autoencoder hook: a step time and an epoch estimate per loss."""
    from flow.autoencoder.stage import bench

    cfg, _ = run
    got = bench(cfg, tmp_path, steps=2)
    for loss in cfg.autoencoder.losses:
        assert got[f"{loss}_s_per_step"] > 0
        n_batches = -(-int(got["n_train"]) // cfg.autoencoder.batch_size)
        assert got[f"{loss}_s_per_epoch"] == pytest.approx(got[f"{loss}_s_per_step"] * n_batches)
        assert got[f"{loss}_cpu_s_per_step"] > 0
    assert got["steps_per_execution"] == cfg.autoencoder.steps_per_execution
    assert got["jit_compile"] == float(cfg.autoencoder.jit_compile)
