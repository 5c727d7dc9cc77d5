"""Command-line interface: ``python -m flow <stage> --config FILE`` (or ``econt-flow``).

Subcommands: one per stage (see ``flow status``), ``train`` (= ``emd`` then
``autoencoder``), ``config`` (show the documented keys or the resolved
config), ``status`` (which artifacts of a run are present, fresh or stale),
``deps`` (the code files each stage runs, see :mod:`flow.runner.codehash`),
``bench``, ``figures`` and ``compare`` (a run's figures, and the exact comparison
of two runs: :mod:`flow.runner.compare`).  A user error (bad config, missing or stale input, bad data,
a bit-exactness mismatch) prints one clear message and
exits with code 2; a bug keeps its traceback.
"""
from __future__ import annotations

import argparse
import json
import sys

from flow.runner.config import describe, load_config
from flow.runner.errors import FlowError, StageInputError
from flow.runner.host import pin_numerics
from flow.runner.stages import ALIASES, STAGES, resolve, run_stage, run_stage_if_stale

DEFAULT_CONFIG = "configs/default.yaml"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m flow", description=__doc__.split("\n\n")[0])
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", "-c", default=DEFAULT_CONFIG,
                        help=f"YAML config of the run (default: {DEFAULT_CONFIG})")
    common.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE", help="override a config key, e.g. data.n_events=100")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    stage_opts = argparse.ArgumentParser(add_help=False)
    stage_opts.add_argument("--if-stale", action="store_true",
                            help="run only when the artifact is missing or stale (`status`: its "
                                 "config section, code, inputs or tool versions changed); otherwise "
                                 "keep it and refresh its manifest's mtime (what `make` uses)")
    for name, st in STAGES.items():
        sub.add_parser(name, parents=[common, stage_opts], help=st.summary)
    for name, stages in ALIASES.items():
        sub.add_parser(name, parents=[common, stage_opts], help=" then ".join(stages))
    c = sub.add_parser("config", parents=[common], help="show config keys or the resolved config")
    c.add_argument("--show", action="store_true", help="list every key with type, default, doc")
    c.add_argument("--get", metavar="KEY", help="print one resolved value (dotted key)")
    sub.add_parser("status", parents=[common], help="state of every stage's artifact")
    b = sub.add_parser("bench", parents=[common], help="run the benchmarks, write a results file")
    b.add_argument("--output", default=None, help="results JSON (default: bench/<run>.json)")
    b.add_argument("--fresh", action="store_true", help="rerun every stage, even fresh ones")
    f = sub.add_parser("figures", parents=[common],
                       help="write the run's figures (metrics, output hashes) to a file")
    f.add_argument("--output", "-o", required=True,
                   help="figures JSON to write (e.g. docs/figures/default.json)")
    k = sub.add_parser("compare", help="compare two runs' figures exactly (run directories or figures files)")
    k.add_argument("a", help="reference: a run directory (build/default) or a figures file")
    k.add_argument("b", help="the run to check against it, the same kinds")
    k.add_argument("--ignore", action="append", default=[], metavar="REGEX",
                   help="leave out figures whose dotted path matches (repeatable)")
    k.add_argument("--stage", dest="stages", action="append", default=[], metavar="STAGE",
                   help="compare only these stages (repeatable; default: all)")
    k.add_argument("--outputs", action="store_true", help="count differing output-file hashes as differences")
    k.add_argument("--out", default=None,
                   help="write the comparison (n_total, n_mismatch, mismatches) as JSON")
    k.add_argument("--limit", type=int, default=30, help="differences printed (default 30)")
    d = sub.add_parser("deps", help="the flow code files each stage runs (its code_sha256 covers them)")
    d.add_argument("stages", nargs="*", metavar="STAGE", help="stages (default: all)")
    d.add_argument("--hash", action="store_true", help="print each stage's code_sha256 instead")
    d.add_argument("--make", action="store_true", help="print make variables CODE_<stage>")
    return p


def _status(cfg) -> int:
    from rich.console import Console
    from rich.table import Table

    from flow.runner.manifest import load_manifest, verify

    t = Table(title=f"run '{cfg.name}' in {cfg.run_dir}", title_justify="left")
    for col in ("stage", "state", "built (UTC)", "wall s", "detail"):
        t.add_column(col)
    for name in STAGES:
        man = load_manifest(cfg.stage_dir(name))
        if man is None:
            t.add_row(name, "missing", "", "", "")
            continue
        try:
            verify(cfg, name)
            state, detail = "fresh", ""
        except StageInputError as err:
            state, detail = "STALE", str(err).split(";")[0]
        t.add_row(name, state, man.get("finished_utc", ""), f"{man.get('wall_s', 0):.1f}", detail)
    Console().print(t)
    return 0


def main(argv: list[str] | None = None) -> int:
    pin_numerics()  # CPU-independent TensorFlow numerics: must precede any TensorFlow import
    args = _parser().parse_args(argv)
    if args.command == "deps":  # needs no config
        from flow.runner.codehash import main as deps

        return deps([*args.stages, *(["--hash"] if args.hash else []), *(["--make"] if args.make else [])])
    try:
        if args.command == "compare":  # needs no config
            from flow.runner.compare import main_compare

            return main_compare(args.a, args.b, ignore=args.ignore, stages=args.stages, outputs=args.outputs,
                                out=args.out, limit=args.limit)
        if args.command == "config" and args.show:
            print("\n".join(describe()))
            return 0
        cfg = load_config(args.config, args.overrides)
        if args.command == "config":
            if args.get:
                value = cfg.model_dump(mode="json")
                for part in args.get.split("."):
                    if not isinstance(value, dict) or part not in value:
                        raise FlowError(f"config has no key {args.get!r}")
                    value = value[part]
                print(value if not isinstance(value, (dict, list)) else json.dumps(value))
            else:
                print(json.dumps(cfg.model_dump(mode="json"), indent=2))
            return 0
        if args.command == "status":
            return _status(cfg)
        if args.command == "figures":
            from flow.runner.compare import write_figures

            data = write_figures(cfg.run_dir, args.output)
            print(f"{len(data['figures'])} figures and {len(data['outputs'])} output hashes of "
                  f"{len(data['stages'])} stages of {cfg.run_dir} -> {args.output}")
            return 0
        if args.command == "bench":
            from flow.runner.bench import run_bench

            return run_bench(cfg, args.config, args.output, fresh=args.fresh)
        for name in resolve(args.command):
            if args.if_stale:
                run_stage_if_stale(cfg, name)
            else:
                run_stage(cfg, name)
        return 0
    except FlowError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
