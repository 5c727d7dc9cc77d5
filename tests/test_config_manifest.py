"""Config validation, manifests, staleness and the stage runner."""
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from fakes import fake_stage
from pydantic import ValidationError

from flow.runner import config as C
from flow.runner.errors import ConfigError, FlowError, StageInputError
from flow.runner.manifest import MANIFEST, verify
from flow.runner.stages import run_stage

ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------ config
@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("*.yaml")))
def test_shipped_configs_are_valid(path):
    cfg = C.load_config(path)
    assert cfg.name == path.stem


@pytest.mark.parametrize("data, key, words", [
    ({"data": {"n_evnets": 3}}, "data.n_evnets", "unknown key"),
    ({"data": {"n_events": "many"}}, "data.n_events", "valid integer"),
    ({"data": {"n_events": 2.5}}, "data.n_events", "2.5"),
    ({"data": {"n_events": 0}}, "data.n_events", "greater than or equal to 1"),
    ({"data": {"source": "hdf5"}}, "data.source", "'synthetic' or 'root'"),
    ({"data": {"drop": 2}}, "data.drop", "1 or 3"),
    ({"seed": True}, "seed", "valid integer"),
    ({"name": "a b"}, "name", "pattern"),
    ({"dta": {}}, "dta", "unknown key"),
    ({"data": 5}, "data", "valid dictionary"),
])
def test_bad_config_names_key_expected_and_got(data, key, words):
    with pytest.raises(ConfigError) as err:
        C.parse_config(data, "test.yaml")
    msg = str(err.value)
    assert "test.yaml" in msg and f"  {key}:" in msg and words in msg


def test_config_top_level_must_be_mapping_and_file_must_exist(tmp_path):
    with pytest.raises(ConfigError, match="expected a mapping.*list"):
        C.parse_config([1, 2])
    with pytest.raises(ConfigError, match="does not exist"):
        C.load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        C.load_config(bad)


def test_overrides(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("name: t\n")
    cfg = C.load_config(p, ["data.n_events=17", "seed=3"])
    assert cfg.data.n_events == 17 and cfg.seed == 3
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        C.load_config(p, ["data.n_events"])
    with pytest.raises(ConfigError, match="data.n_events"):
        C.load_config(p, ["data.n_events=x"])


def test_config_is_frozen_and_documented():
    cfg = C.parse_config({})
    with pytest.raises(ValidationError, match="frozen"):
        cfg.seed = 3
    lines = C.describe()
    assert any(line.startswith("data.n_events (int) = ") and "#" in line for line in lines)
    # every leaf key carries documentation
    for line in lines:
        if not line.rstrip().endswith(":") and " # " in line:
            assert line.split(" # ", 1)[1].strip(), line


def test_section_hash_tracks_only_that_section_and_seed():
    a = C.parse_config({"name": "x"})
    b = C.parse_config({"name": "y", "workdir": "elsewhere"})
    assert a.section_hash("data") == b.section_hash("data")
    c = C.parse_config({"data": {"n_events": 5}})
    assert a.section_hash("data") != c.section_hash("data")
    assert a.section_hash("emd") == c.section_hash("emd")
    assert a.section_hash("emd") != C.parse_config({"seed": 1}).section_hash("emd")


# -------------------------------------------------------- runner/manifests


def _write_a(ctx):
    (ctx.out / "a.txt").write_text(f"seed={ctx.seed} n={ctx.settings.n_events}\n")
    ctx.metrics["n"] = ctx.settings.n_events
    ctx.add_summary("n", ctx.settings.n_events)


def _read_a(ctx):
    text = ctx.upstream["data"].path("a.txt").read_text()
    (ctx.out / "sub").mkdir()
    (ctx.out / "sub" / "b.txt").write_text(text.upper())


def test_run_stage_writes_manifest_and_downstream_detects_staleness(tmp_path, monkeypatch):
    fake_stage(monkeypatch, "data", _write_a)
    fake_stage(monkeypatch, "emd", _read_a)
    cfg = C.parse_config({"name": "t", "workdir": str(tmp_path), "data": {"n_events": 4}})

    with pytest.raises(StageInputError, match=r"stage 'data' is missing.*make data"):
        run_stage(cfg, "emd", echo=lambda *a: None)

    man = run_stage(cfg, "data", echo=lambda *a: None)
    assert set(man["outputs"]) == {"a.txt"} and man["metrics"] == {"n": 4}
    assert man["config"]["data"]["n_events"] == 4 and man["wall_s"] >= 0
    assert man["tools"]["numpy"] and man["tools"]["python"]
    assert json.loads((tmp_path / "t" / "data" / MANIFEST).read_text()) == man
    assert not list((tmp_path / "t").glob(".data*"))  # no temp dirs left behind

    man_b = run_stage(cfg, "emd", echo=lambda *a: None)
    assert set(man_b["outputs"]) == {"sub/b.txt"}
    assert "data" in man_b["upstream"]
    verify(cfg, "emd")

    # a config change makes data stale for downstream use
    cfg2 = C.parse_config({"name": "t", "workdir": str(tmp_path), "data": {"n_events": 5}})
    with pytest.raises(StageInputError, match=r"stage 'data' is stale.*'data' config.*make data"):
        verify(cfg2, "emd")

    # rebuilding data makes emd stale (it was built from the old data)
    run_stage(cfg, "data", echo=lambda *a: None)
    with pytest.raises(StageInputError, match=r"stage 'emd' is stale: stage 'data' was rebuilt"):
        verify(cfg, "emd")

    # tampering with an output is detected
    run_stage(cfg, "emd", echo=lambda *a: None)
    (tmp_path / "t" / "data" / "a.txt").write_text("tampered\n")
    with pytest.raises(StageInputError, match=r"a.txt was modified after the stage ran"):
        verify(cfg, "emd")
    (tmp_path / "t" / "data" / "a.txt").unlink()
    with pytest.raises(StageInputError, match=r"a.txt is missing"):
        verify(cfg, "data")


def test_if_stale_keeps_fresh_artifacts_and_rebuilds_stale_ones(tmp_path, monkeypatch):
    """`python -m flow <stage> --if-stale` (make's entry): a fresh artifact is kept (its
    manifest's content untouched, its mtime set to now so make counts it as up to date); a
    missing one, another section of the config, an upstream rebuilt since, a modified output
    or other tool versions rebuild; an edit of another section does not."""
    import os

    from flow.runner.stages import fresh_reason, run_stage_if_stale

    runs = []
    fake_stage(monkeypatch, "data", lambda ctx: (runs.append("data"), _write_a(ctx)))
    fake_stage(monkeypatch, "emd", lambda ctx: (runs.append("emd"), _read_a(ctx)))
    quiet = {"echo": lambda *a: None}

    def cfg(n=4, epochs=20):
        return C.parse_config({"name": "t", "workdir": str(tmp_path), "data": {"n_events": n},
                               "autoencoder": {"epochs": epochs}})

    assert "missing" in fresh_reason(cfg(), "data")
    run_stage_if_stale(cfg(), "data", **quiet)
    run_stage_if_stale(cfg(), "emd", **quiet)
    assert runs == ["data", "emd"]
    path = tmp_path / "t" / "data" / MANIFEST
    before = path.read_bytes()
    os.utime(path, (1, 1))
    said = []
    man = run_stage_if_stale(cfg(epochs=300), "data", echo=said.append)   # another section edited
    assert runs == ["data", "emd"] and "up to date" in said[0]
    assert path.read_bytes() == before and path.stat().st_mtime > 1e9 and man["metrics"] == {"n": 4}
    run_stage_if_stale(cfg(epochs=300), "emd", **quiet)
    assert runs == ["data", "emd"]

    assert "'data' config" in fresh_reason(cfg(n=5), "data")               # its own section
    run_stage_if_stale(cfg(n=5), "data", **quiet)
    assert runs == ["data", "emd", "data"]
    assert "stage 'data' was rebuilt" in fresh_reason(cfg(n=5), "emd")     # its upstream
    run_stage_if_stale(cfg(n=5), "emd", **quiet)
    assert runs[-1] == "emd" and fresh_reason(cfg(n=5), "emd") is None

    (tmp_path / "t" / "emd" / "sub" / "b.txt").write_text("tampered\n")   # a modified output
    assert "modified after the stage ran" in fresh_reason(cfg(n=5), "emd")
    run_stage_if_stale(cfg(n=5), "emd", **quiet)
    assert runs[-1] == "emd" and len(runs) == 5

    m = json.loads(path.read_text())                                        # other tool versions
    m["tools"]["numpy"] = "0.0.1"
    path.write_text(json.dumps(m))
    assert "other tool versions (numpy 0.0.1 ->" in fresh_reason(cfg(n=5), "data")
    run_stage_if_stale(cfg(n=5), "data", **quiet)
    assert runs[-1] == "data" and fresh_reason(cfg(n=5), "data") is None


def test_cli_if_stale_is_offered_for_stages_and_aliases_and_used_by_make():
    from flow.cli import _parser

    p = _parser()
    assert p.parse_args(["data", "--if-stale"]).if_stale
    assert p.parse_args(["train", "--if-stale"]).if_stale
    assert not p.parse_args(["cosim"]).if_stale
    mk = (Path(__file__).resolve().parents[1] / "Makefile").read_text()
    rules = re.findall(r"\t\$\(FLOW\) (\w+) --config \$\(CONFIG\)(.*)", mk)
    stages = [s for s, _ in rules if s not in ("status", "bench")]
    assert len(stages) == 11 and all(rest.strip() == "--if-stale" for s, rest in rules if s in stages)


def test_failing_stage_leaves_previous_artifact_intact(tmp_path, monkeypatch):
    fake_stage(monkeypatch, "data", _write_a)
    cfg = C.parse_config({"name": "t", "workdir": str(tmp_path)})
    run_stage(cfg, "data", echo=lambda *a: None)
    before = (tmp_path / "t" / "data" / MANIFEST).read_bytes()

    def boom(ctx):
        (ctx.out / "a.txt").write_text("half written")
        raise RuntimeError("interrupted")

    fake_stage(monkeypatch, "data", boom)
    with pytest.raises(RuntimeError):
        run_stage(cfg, "data", echo=lambda *a: None)
    assert (tmp_path / "t" / "data" / MANIFEST).read_bytes() == before
    verify(cfg, "data")
    assert not (tmp_path / "t" / ".data.tmp").exists()


def test_the_runner_keeps_a_failed_run_in_one_place(tmp_path, monkeypatch):
    """Any stage's failure: its directory (logs, reports) is kept as <run>/<stage>.failed/ and
    the error names the kept files, not the temporary directory that is gone."""
    cfg = C.parse_config({"name": "t", "workdir": str(tmp_path)})
    failed = tmp_path / "t" / "data.failed"

    def tool_fails(ctx):
        (ctx.out / "logs").mkdir()
        (ctx.out / "logs" / "tool.log").write_text("the tool said no\n")
        raise FlowError(f"the tool failed; log: {ctx.out / 'logs' / 'tool.log'}")

    fake_stage(monkeypatch, "data", tool_fails)
    with pytest.raises(FlowError) as err:
        run_stage(cfg, "data", echo=lambda *a: None)
    assert str(failed / "logs" / "tool.log") in str(err.value) and ".data.tmp" not in str(err.value)
    assert (failed / "logs" / "tool.log").read_text() == "the tool said no\n"
    assert not cfg.stage_dir("data").exists() and not (tmp_path / "t" / ".data.tmp").exists()

    # a bug keeps its type and traceback; a note says where the files are
    def bug(ctx):
        (ctx.out / "partial.json").write_text("{")
        raise KeyError("oops")

    fake_stage(monkeypatch, "data", bug)
    with pytest.raises(KeyError) as err:
        run_stage(cfg, "data", echo=lambda *a: None)
    assert any(str(failed) in n for n in err.value.__notes__)
    assert sorted(p.name for p in failed.iterdir()) == ["partial.json"]   # the previous failure is gone

    # a failure that wrote nothing keeps nothing; a flow error without a path gets the location
    def empty(ctx):
        (ctx.out / "logs").mkdir()
        raise FlowError("bad input")

    fake_stage(monkeypatch, "data", empty)
    with pytest.raises(FlowError, match=r"^bad input$"):
        run_stage(cfg, "data", echo=lambda *a: None)
    assert not failed.exists()

    def no_path(ctx):
        (ctx.out / "x.log").write_text("x")
        raise FlowError("bad input")

    fake_stage(monkeypatch, "data", no_path)
    kept_note = rf"^bad input \(the failed run's files are kept in {re.escape(str(failed))}\)$"
    with pytest.raises(FlowError, match=kept_note):
        run_stage(cfg, "data", echo=lambda *a: None)

    # a successful run removes the last failure's directory
    fake_stage(monkeypatch, "data", _write_a)
    run_stage(cfg, "data", echo=lambda *a: None)
    assert not failed.exists()


def test_upstream_path_of_unknown_output_is_clear(tmp_path, monkeypatch):
    fake_stage(monkeypatch, "data", _write_a)
    cfg = C.parse_config({"name": "t", "workdir": str(tmp_path)})
    run_stage(cfg, "data", echo=lambda *a: None)
    with pytest.raises(StageInputError, match=r"did not produce 'x.npz'.*a.txt"):
        verify(cfg, "data").path("x.npz")


def test_cli_errors_exit_2_with_message(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: t\ndata: {n_evnts: 1}\n")
    r = subprocess.run([sys.executable, "-m", "flow", "status", "--config", str(bad)],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2
    assert "data.n_evnts: unknown key" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run([sys.executable, "-m", "flow", "config", "--config", "configs/smoke.yaml",
                        "--get", "data.n_events"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0 and r.stdout.strip().isdigit()


def test_presentation_keys_do_not_change_the_section_hash():
    a = C.parse_config({"emd": {"progress": True}})
    b = C.parse_config({"emd": {"progress": False}})
    assert a.section_hash("emd") == b.section_hash("emd")
    assert "progress" not in a.section("emd")["emd"]


def _autoencoder_keys_that_differ(base, other) -> set[str]:
    """Assert that ``other`` has every section of ``base`` but ``name`` and ``autoencoder``
    unchanged (same data, EMD CNN, hardware), and return the ``autoencoder`` keys it changes."""
    for name in type(base).model_fields:
        if name not in ("name", "autoencoder"):
            assert getattr(other, name) == getattr(base, name), (other.name, name)
    ba = base.autoencoder.model_dump()
    return {k for k, v in other.autoencoder.model_dump().items() if v != ba[k]}


def test_default_and_fair_configs_follow_the_fair_rule():
    """configs/default.yaml trains the fair comparison of issue 14 (>= 3 seeds, a cap the
    models do not reach, every loss on the same training wafers, one task per model);
    configs/fair.yaml is the run of 2026-11-30: the same data, EMD CNN and hardware, the
    same rule plus the conditional decoder, without the eLink budgets."""
    from flow.runner.config import load_config

    d, f = load_config("configs/default.yaml"), load_config("configs/fair.yaml")
    diff = _autoencoder_keys_that_differ(d, f)
    assert diff == {"conditional_losses", "elinks"}, diff
    assert d.emd.grid.filters == [16, 32]
    for ae in (d.autoencoder, f.autoencoder):
        assert ae.seeds >= 3 and ae.epochs >= 300 and ae.ray.enabled and ae.threads == 1
        assert not ae.max_train_wafers_by_loss and set(ae.losses) == set(d.autoencoder.losses)


def test_elinks_configs_are_the_fair_rule_for_one_loss_and_one_width():
    """configs/elinks_scratch.yaml and elinks_ft.yaml (issue 16: fine-tuning to a narrower
    latent width vs training it from scratch) are configs/fair.yaml with the EMD-CNN loss only:
    the same data, EMD CNN and training rule; scratch trains 3 seeds at 3 bits, ft the 9-bit
    model (3 seeds, as fair) and fine-tunes the exported one to every other eLink budget."""
    from flow.runner.config import load_config

    f = load_config("configs/fair.yaml")
    s, t = load_config("configs/elinks_scratch.yaml"), load_config("configs/elinks_ft.yaml")
    for c in (s, t):
        diff = _autoencoder_keys_that_differ(f, c)
        assert diff <= {"losses", "conditional_losses", "latent_bits", "elinks", "elinks_init"}, diff
        assert c.autoencoder.losses == ["emd_cnn"] and not c.autoencoder.conditional_losses
        assert c.autoencoder.seeds == 3
    assert s.autoencoder.latent_bits == 3 and s.autoencoder.elinks == [2]
    assert t.autoencoder.latent_bits == 9 and t.autoencoder.elinks == [2, 3, 4, 5]
    assert t.autoencoder.elinks_init == "finetune"


def test_refine_config_is_the_fair_rule_for_one_model_plus_refinement_rounds():
    """configs/refine.yaml (issue 14, the closed loop measured on a converged model) is
    configs/fair.yaml with the EMD-CNN loss, one seed and three refinement rounds: the seed-0
    model before the rounds is the fair run's."""
    from flow.runner.config import load_config

    f, r = load_config("configs/fair.yaml"), load_config("configs/refine.yaml")
    diff = _autoencoder_keys_that_differ(f, r)
    assert diff == {"losses", "conditional_losses", "seeds", "refine_rounds"}, diff
    assert r.autoencoder.losses == ["emd_cnn"] and r.autoencoder.seeds == 1
    assert r.autoencoder.refine_rounds == 3 and f.autoencoder.refine_rounds == 0


def test_refine_control_differs_from_refine_only_in_the_cnn_update():
    """configs/refine_control.yaml is configs/refine.yaml whose CNN fine-tuning cannot learn
    (10 reconstruction pairs, learning rate 1e-12): the autoencoder's continued training
    without a new CNN, the control the refinement is compared with."""
    from flow.runner.config import load_config

    r, c = load_config("configs/refine.yaml"), load_config("configs/refine_control.yaml")
    diff = _autoencoder_keys_that_differ(r, c)
    assert diff <= {"refine_rounds", "refine_pairs", "refine_cnn_lr"}, diff
    assert c.autoencoder.refine_cnn_lr <= 1e-10 and c.autoencoder.refine_pairs == 10
    assert 1 <= c.autoencoder.refine_rounds <= r.autoencoder.refine_rounds


def test_fair100k_differs_from_fair_only_in_the_training_wafers():
    """configs/fair100k.yaml (issue 14: do fewer training wafers keep the converged medians
    within the seed spread?) is configs/fair.yaml on 100,000 wafers, without the conditional
    decoder (not part of the loss comparison)."""
    from flow.runner.config import load_config

    f, h = load_config("configs/fair.yaml"), load_config("configs/fair100k.yaml")
    diff = _autoencoder_keys_that_differ(f, h)
    assert diff == {"max_train_wafers", "conditional_losses"}, diff
    assert h.autoencoder.max_train_wafers == f.autoencoder.max_train_wafers // 2
    assert h.autoencoder.losses == f.autoencoder.losses and h.autoencoder.seeds == f.autoencoder.seeds
