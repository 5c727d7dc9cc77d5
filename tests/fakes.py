"""Test helpers shared by the runner/stage tests (importable as ``fakes``: tests/ is on sys.path)."""
import importlib.machinery
import sys
import types


def fake_stage(mp, name, body) -> None:
    """Install ``body`` as ``flow.<name>.stage.run`` for the duration of ``mp`` (a pytest MonkeyPatch),
    so the real runner executes a fabricated stage."""
    mod = types.ModuleType(f"flow.{name}.stage")
    mod.__spec__ = importlib.machinery.ModuleSpec(f"flow.{name}.stage", None)
    mod.run = body
    mp.setitem(sys.modules, f"flow.{name}.stage", mod)


def run_chain(cfg, stages, **kw) -> dict:
    """Run ``stages`` of ``cfg`` in order with the real runner; the last one's manifest."""
    from flow.runner.stages import run_stage

    man: dict = {}
    for st in stages:
        man = run_stage(cfg, st, **kw)
    return man
