"""``ultranas`` command line: search, worker, calibrate, space, info, and Ultralytics-style predict/val/train/export.

Every user mistake is one line on stderr and exit code 2; Ctrl-C is exit 130 with how to resume. Choices and help
of ``--strategy``, ``--objectives``, ``--estimator``, ``--proxy``, ``--latency-target`` and ``calibrate
--estimators`` are read from the registries. Only the command being run gets its flags built (those read the
registries, which import torch), so ``ultranas --help``, ``space`` and ``info`` start fast.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings

import yaml

from .cli_data import cmd_data, data_args
from .cli_space import cmd_space, space_args
from .cli_style import EXAMPLES, HelpFormatter, Parser, VersionAction, expand_key_values
from .errors import UserError


def _csv(cast=str):
    return lambda s: [cast(x) for x in s.split(",") if x.strip()]


def _names(registry) -> str:
    return ", ".join(registry)


def _search_args(p: argparse.ArgumentParser) -> None:
    from .config import SearchConfig
    from .estimation import ESTIMATORS, SCORES, TRAINERS
    from .estimation._zero_cost import ZERO_COST_PROXIES
    from .objectives import OBJECTIVES
    from .objectives._targets import TARGETS
    from .strategies import STRATEGIES

    d = SearchConfig()
    g = p.add_argument_group("data and space")
    g.add_argument("--data", default=d.data, help="data YAML; 'coco8.yaml' is bundled (default)")
    g.add_argument("--space", default=d.space, help="space name (yolo, mobile) or YAML path")
    g = p.add_argument_group("strategy and budget")
    g.add_argument("--strategy", default=d.strategy, help=f"search strategy: {_names(STRATEGIES)}")
    g.add_argument("--trials", type=int, default=d.trials, help="designs to train (baselines included; designs "
                   "screened out by a limit or a latency band do not count)")
    g.add_argument("--time-limit", type=float, default=None, help="minutes for the whole job, planned: alone (no schedule "
                   "setting such as --epochs or --final-epochs), ultranas times the references and chooses the proxy "
                   "size, epochs, re-rank and final stage to fit; with them, minutes of search only (no trial starts "
                   "after them; the re-rank and final stage run after; so too with --resume)")
    g.add_argument("--objectives", type=_csv(), default=d.objectives, help=f"comma list of {_names(OBJECTIVES)}")
    g.add_argument("--focus", default=d.focus, help="bands (default): spend the trials under each reference's "
                   "latency; front: the whole Pareto front of --objectives")
    g.add_argument("--band-floor", type=float, default=d.band_floor, help="a band holds designs whose latency is in "
                   "(floor, 1] x its reference's (default 0: anything no slower)")
    g = p.add_argument_group("estimation: each candidate's cheap score while searching")
    g.add_argument("--estimator", default=d.estimator, help=f"performance estimator: {_names(ESTIMATORS)}")
    g.add_argument("--calibration", default=None, help="calibration.json from 'ultranas calibrate': use its estimator "
                   "(it sets the proxy size, never --imgsz)")
    g.add_argument("--trainer", default=d.trainer, help=f"short-train trainer: {_names(TRAINERS)}")
    g.add_argument("--score", default=d.score, help=f"short-train ranks by: {_names(SCORES)} (all but map need "
                   "--trainer fast)")
    g.add_argument("--proxy", default=d.proxy, help=f"zero-cost proxy (with --estimator zero-cost): "
                   f"{_names(ZERO_COST_PROXIES)}")
    g.add_argument("--epochs", type=int, default=d.epochs, help="epochs of each candidate's short schedule")
    g.add_argument("--imgsz", type=int, default=d.imgsz, help="deploy size: latency, limits, final retrain, found_*.pt")
    g.add_argument("--proxy-imgsz", type=int, default=d.proxy_imgsz, help="training size of candidates while searching")
    g.add_argument("--input-scales", type=_csv(float), default=None, help="input sizes designs may have, as "
                   "multiples of --imgsz listing 1, e.g. 1 (the deploy size only) or 0.75,1,1.25 (default: the "
                   "space's own)")
    g.add_argument("--batch", type=int, default=d.batch, help="batch size of candidates and final trainings")
    g.add_argument("--fraction", type=float, default=d.fraction, help="fraction of training images per candidate")
    g.add_argument("--single-cls", action="store_true", help="class-agnostic targets while searching")
    g = p.add_argument_group("selection and verdict splits")
    g.add_argument("--select-on", default=d.select_on, help="the split that scores designs while searching: auto "
                   "(val when the data has test:, else a part carved from train), val, or train (carved)")
    g.add_argument("--judge-on", default=d.judge_on, help="the split that judges the final stage: auto (test when the "
                   "data has it, else val), val or test")
    g.add_argument("--select-share", type=float, default=d.select_share, help="share of train carved as the "
                   "selection split (at least 50 images)")
    g = p.add_argument_group("seeds, re-ranking, successive halving")
    g.add_argument("--seeds", type=_csv(int), default=d.seeds, help="seeds averaged per candidate, e.g. 0,1")
    g.add_argument("--rerank", type=int, default=d.rerank, help="re-train the K best designs of each band at a "
                   "higher fidelity before the final stage picks one (0: off)")
    g.add_argument("--rerank-epochs", type=int, default=d.rerank_epochs, help="epochs of a re-rank training")
    g.add_argument("--rerank-imgsz", type=int, default=None, help="default: twice --proxy-imgsz")
    g.add_argument("--halving", action="store_true", help="successive halving over --rungs")
    g.add_argument("--rungs", type=_csv(float), default=d.rungs, help="fidelities, ending at 1.0")
    g.add_argument("--eta", type=int, default=d.eta, help="halving: the top 1/eta of a rung go on")
    g.add_argument("--no-warm-start", dest="warm_start", action="store_false", help="skip the baseline points")
    g = p.add_argument_group("latency, limits and references")
    g.add_argument("--max-latency", type=float, default=None, help="hard limit, ms (each design at its own input size)")
    g.add_argument("--max-params", type=float, default=None, help="hard limit, parameters")
    g.add_argument("--max-gflops", type=float, default=None, help="hard limit, GFLOPs (each design at its own input size)")
    g.add_argument("--latency-le", default=None, help="hard limit: latency <= that of this point, e.g. yolo11n")
    g.add_argument("--latency-target", default=d.latency_target, help=f"where latency is measured: {_names(TARGETS)}")
    g.add_argument("--latency-lut", default=None, help="a saved LatencyLUT JSON (same --latency-target and --imgsz): "
                   "designs' latencies are predicted from its per-layer table instead of measured")
    g.add_argument("--references", type=_csv(), default=d.references, help="baselines the search aims under and the final "
                   "stage compares with; found_<scale>.pt for each (default yolo11n,yolo11s: those the space has)")
    g.add_argument("--pretrained", type=_csv(), default=None, help="your pretrained checkpoints of hand-designed "
                   "points, e.g. yolo11n.pt,yolo26n.pt: every design inherits their weights where its layers "
                   "correspond and is fine-tuned from them, the references from their own")
    g = p.add_argument_group("final stage and workers")
    g.add_argument("--final-epochs", type=int, default=d.final_epochs, help="epochs of each final retrain")
    g.add_argument("--final-init", default=d.final_init, choices=("scratch", "supernet"), help="final retrain "
                   "from scratch (default) or from the supernet's inherited weights, found designs and references "
                   "alike (needs --estimator supernet)")
    g.add_argument("--final-seeds", type=_csv(int), default=d.final_seeds, help="seeds of the final retrain, e.g. "
                   "0,1,2 (each design is trained once per seed)")
    g.add_argument("--workers", type=int, default=d.workers, help="local worker processes evaluating trials in "
                   "parallel (0, default: one per physical CPU core, at most 4, or one per GPU in --device)")
    g.add_argument("--final-workers", type=int, default=d.final_workers, help="final-stage trainings run in parallel")
    g.add_argument("--final-cache", default=None, help="JSON-lines file of final results reused across runs")
    g.add_argument("--no-final", dest="final", action="store_false", help="skip the final retrain")
    g.add_argument("--final", dest="final", action="store_true", help="run the final retrain (the default; with "
                   "--resume, the way to run it for a run made with --no-final)")
    g = p.add_argument_group("run")
    g.add_argument("--device", default=d.device, help="cpu, 0, 0,1 or cuda:0")
    g.add_argument("--seed", type=int, default=d.seed, help="the strategy's random seed")
    g.add_argument("--project", default=d.project, help="folder of runs")
    g.add_argument("--name", default=d.name, help="run folder name, numbered exp2, exp3 ... when taken")
    g.add_argument("--storage", default=None, help="optuna storage URL (default: SQLite study.db in the run)")
    g.add_argument("--coco128", default=None, help="folder of a local coco128 (for --data coco128.yaml)")
    g.add_argument("--verbose", action="store_true", help="show Ultralytics' per-epoch output")


def _given(argv: list[str]) -> set[str]:
    """Names of the search settings given explicitly on the command line (not defaults)."""
    p = Parser(prog="ultranas search")
    _search_args(p)
    p.add_argument("--resume")
    for action in p._actions:
        action.default = argparse.SUPPRESS  # only what was typed lands in the namespace
    return set(vars(p.parse_known_args(argv)[0])) - {"resume", "help"}


def cmd_search(a) -> None:
    from .engine import search

    kwargs = {k: v for k, v in vars(a).items() if k not in ("func", "resume", "command", "debug", "argv")}
    # only what was typed: a resume changes only those, and a new search may plan the rest (--time-limit alone)
    given = _given(a.argv[a.argv.index("search") + 1:])
    run = search(resume=a.resume, **{k: v for k, v in kwargs.items() if k in given})
    print(f"ultranas: results in {run}")


def _calibrate_args(p: argparse.ArgumentParser) -> None:
    from .estimation import ESTIMATORS, SCORES, TRAINERS
    from .estimation._zero_cost import ZERO_COST_PROXIES
    from .estimation.calibrate import CalibrateConfig

    d = CalibrateConfig()
    others = [e for e in ESTIMATORS if e not in ("short-train", "zero-cost")]
    p.add_argument("--data", default=d.data, help="data YAML")
    p.add_argument("--space", default=d.space, help="space name or YAML path")
    p.add_argument("--n", type=int, default=d.n, help="designs (the space's points first, then random samples)")
    p.add_argument("--estimators", default=None, help=f"comma list of the estimators to calibrate (default "
                   f"{d.estimators}): short-train[:{'|'.join(SCORES)}], zero-cost:<{'|'.join(ZERO_COST_PROXIES)}>"
                   + "".join(f", {e}" for e in others))
    p.add_argument("--proxy", default=None, help="the former name of --estimators (still accepted)")
    p.add_argument("--proxy-epochs", type=int, default=d.proxy_epochs, help="the short-train estimator's epochs")
    p.add_argument("--proxy-imgsz", type=int, default=d.proxy_imgsz, help="the short-train estimator's image size "
                   "(default --imgsz)")
    p.add_argument("--trainer", default=d.trainer, choices=TRAINERS, help="trainer of the reference and the "
                   "short-train estimator")
    p.add_argument("--reference-cache", default=d.reference_cache,
                   help="JSON-lines file of reference results: reused when present, appended when new")
    p.add_argument("--reference-epochs", type=int, default=d.reference_epochs, help="epochs of the reference training")
    p.add_argument("--seeds", default=d.seeds, help="reference seeds (>= 2 to measure seed noise)")
    p.add_argument("--imgsz", type=int, default=d.imgsz, help="the reference's image size")
    p.add_argument("--batch", type=int, default=d.batch, help="batch size")
    p.add_argument("--band", type=float, default=d.band, help="cost band: GFLOPs within +-band of --band-point")
    p.add_argument("--band-point", default=d.band_point, help="the point whose GFLOPs centre the cost band")
    p.add_argument("--band-samples", type=int, default=d.band_samples, help="random designs drawn inside the cost "
                   "band")
    p.add_argument("--device", default=d.device, help="cpu, 0 or cuda:0")
    p.add_argument("--seed", type=int, default=d.seed, help="seed of the random designs")
    p.add_argument("--project", default=d.project, help="folder of runs")
    p.add_argument("--name", default=d.name, help="run folder name")
    p.add_argument("--verbose", action="store_true", help="show Ultralytics' per-epoch output")


def cmd_calibrate(a) -> None:
    from .estimation.calibrate import calibrate

    calibrate(**{k: v for k, v in vars(a).items() if k not in ("func", "command", "debug", "argv")})


def cmd_worker(a) -> None:
    from .distributed import worker

    run = worker(storage=a.storage, name=a.name, device=a.device, progress=not a.quiet)
    print(f"ultranas: worker done; trial files in {run}")


def cmd_info(a) -> None:
    from .ultra import count_params, load_checkpoint

    ckpt = load_checkpoint(a.model)
    model = ckpt.get("ema") or ckpt.get("model")
    info = ckpt.get("ultranas")
    print(f"{a.model}: {type(model).__name__}, {count_params(model):,} parameters, "
          f"{len(model.names)} classes, trained {(ckpt.get('train_args') or {}).get('epochs', '?')} epochs")
    try:
        line = _design_line(info, model) if info else None
    except Exception:  # noqa: BLE001 (the genotype is a checkpoint's data: an odd one names nothing, info goes on)
        line = None
    if line:
        print(line)
    if info and info.get("verdict"):
        print(f"verdict: {info['verdict'][0]}")
    if info and info.get("no_accuracy_signal"):
        print("note: the search saw no accuracy signal (every design scored the same): this design was chosen on "
              "latency alone")
    print(yaml.safe_dump({"ultranas": info}, sort_keys=False, allow_unicode=True) if info
          else "no ultranas entry (a plain Ultralytics checkpoint)")


def _design_line(info: dict, model) -> str | None:
    """Which design a checkpoint holds: a named point of its (bundled) space, or how it differs from the nearest.
    Nothing when the bundled space of that name does not render the checkpoint's model from its genotype (another
    version of the space, a user's copy under the same name)."""
    from .space import SearchSpace, list_spaces
    from .space._schema import load_space_file
    from .space._space import SPACES_DIR

    name, g = info.get("space"), info.get("genotype")
    if not isinstance(g, dict) or not isinstance(name, str) or name not in list_spaces():
        return None
    space = SearchSpace(load_space_file(SPACES_DIR / f"{name}.yaml"))  # the bundled file, never ./<name>
    if not space.check(g)[0] or info.get("space_version") != space.version:
        return None
    nc, mine, theirs = len(model.names), space.render(g, len(model.names)), getattr(model, "yaml", None)
    if not isinstance(theirs, dict) or mine["backbone"] != theirs.get("backbone") or \
            mine["head"][:-1] != list(theirs.get("head") or [])[:-1]:  # the head's class count may be retrained
        return None
    own = space.design_hash(g, nc)
    scaled = next((n for n, p in space.hand_scaled_points().items() if space.design_hash(p, nc) == own), None)
    if scaled:
        return f"design: {scaled} (a hand-designed point of the {name} space at another input size)"
    point, diffs = space.nearest_point(g, nc)
    if point is None:
        return None
    if not diffs:
        return f"design: {point} (a hand-designed point of the {name} space)"
    changes = ", ".join(f"{d} {a} -> {b}" for d, a, b in diffs[:8]) + (", ..." if len(diffs) > 8 else "")
    return f"design: searched; {len(diffs)} decision(s) differ from {point}, the nearest hand-designed point: {changes}"


def _worker_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--storage", required=True, help="the study's optuna storage URL (postgresql://..., journal:...)")
    p.add_argument("--name", required=True, help="the study name given to 'ultranas search --name'")
    p.add_argument("--device", default=None, help="this worker's device, e.g. 0 (default: the study's)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _search_command_args(p: argparse.ArgumentParser) -> None:
    _search_args(p)
    p.add_argument("--resume", default=None, help="continue the run in this directory")


def _mode_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("args", nargs=argparse.REMAINDER)


def cmd_mode(a) -> None:
    from .cli_modes import run_mode

    run_mode(a.command, a.args)


MODES = ("predict", "val", "train", "export")
COMMANDS = {  # name: (one-line help, adds its flags, runs it)
    "search": ("search a space on a dataset; writes runs/nas/<name>", _search_command_args, cmd_search),
    "worker": ("join a shared study (started by 'ultranas search --storage URL --name N')", _worker_args, cmd_worker),
    "data": ("dataset tools: profile (object sizes at the deploy size), coco-subset", data_args, cmd_data),
    "space": ("inspect a search space", space_args, cmd_space),
    "info": ("describe a found_*.pt", lambda p: p.add_argument("model"), cmd_info),
    "calibrate": ("measure how well a cheap estimator ranks designs", _calibrate_args, cmd_calibrate),
    **{m: (f"{m} like 'yolo {m}': key=value arguments", _mode_args, cmd_mode) for m in MODES},
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser: every command's flags, or, given ``command``, only that one's (the others list their help only).
    ``command=""`` builds none: enough for ``ultranas --help``."""
    parser = Parser(prog="ultranas", description="Neural architecture search for Ultralytics YOLO")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.add_argument("--version", action=VersionAction, help="print the versions of ultranas and its libraries")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (text, add_flags, run) in COMMANDS.items():
        usage = f"ultranas {name} [--flag value | key=value ...]" if name in EXAMPLES else None
        p = sub.add_parser(name, help=text, description=text, epilog=EXAMPLES.get(name), usage=usage,
                           formatter_class=HelpFormatter)
        if command is None or command == name:
            add_flags(p)
        p.set_defaults(func=run)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    os.environ.setdefault("YOLO_VERBOSE", "false")  # the command shows our progress; Ultralytics' log on request
    debug = "--debug" in argv
    if not debug:
        warnings.filterwarnings("ignore")  # library deprecation chatter is not for users; --debug shows it
    try:
        command = next((a for a in argv if not a.startswith("-")), "")
        parser = build_parser(command if command in COMMANDS else "")
        if command not in MODES:  # the modes read key=value themselves, as Ultralytics does
            argv = expand_key_values(argv, parser)
        args = parser.parse_args(argv)
        args.argv = list(argv)
        args.func(args)
        return 0
    except UserError as e:
        print(f"ultranas: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt as e:
        run = getattr(e, "run_dir", None)
        print("ultranas: interrupted; finished trials are saved." + (f" Continue with: ultranas search --resume {run}"
              if run else ""), file=sys.stderr)
        return 130
    except BrokenPipeError:  # `ultranas space show yolo | head`: the reader left early, which is no error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as e:  # unexpected: still one line unless --debug
        if debug:
            raise
        if why := _path_refused(e):
            print(f"ultranas: error: {why}", file=sys.stderr)
            return 2
        msg = str(e).strip().splitlines()[0][:300] if str(e).strip() else ""
        print(f"ultranas: error: {type(e).__name__}: {msg} (rerun with --debug for the traceback)", file=sys.stderr)
        return 1


def _path_refused(e: Exception) -> str | None:
    """A path the user gave that the system refuses to follow (a name too long, a loop of links), found wherever it
    is first touched: a user error, not a crash."""
    import errno

    if isinstance(e, OSError) and e.errno in (errno.ENAMETOOLONG, errno.ELOOP):
        return f"{e.strerror}: {str(e.filename)[:120]}"
    if isinstance(e, RuntimeError) and str(e).startswith("Symlink loop"):  # pathlib's resolve() in Python 3.11
        return str(e)[:200]
    return None


def entrypoint() -> None:
    sys.exit(main())
