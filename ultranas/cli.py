"""``ultranas`` command line: search, worker, calibrate, space, info, and Ultralytics-style predict/val/train/export.

Every user mistake is one line on stderr and exit code 2; Ctrl-C is exit 130 with how to resume. The search flags
(help, type, group) are built from the settings table, ``ultranas.settings.SETTINGS``, with ``SearchConfig``'s
defaults. Choices and help of ``--strategy``, ``--objectives``, ``--estimator``, ``--proxy``, ``--latency-target``
and ``calibrate --estimators`` are read from the registries. Only the command being run gets its flags built (those
read the registries, which import torch), so ``ultranas --help``, ``space`` and ``info`` start fast.
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


def registry_names() -> dict[str, str]:
    """What a setting's help may name, e.g. ``{STRATEGIES}``: each registry's entries, comma separated."""
    from .estimation import ESTIMATORS, SCORES, TRAINERS
    from .estimation._zero_cost import ZERO_COST_PROXIES
    from .objectives import OBJECTIVES
    from .objectives._targets import TARGETS
    from .strategies import STRATEGIES

    registries = {"STRATEGIES": STRATEGIES, "OBJECTIVES": OBJECTIVES, "ESTIMATORS": ESTIMATORS, "TRAINERS": TRAINERS,
                  "SCORES": SCORES, "ZERO_COST_PROXIES": ZERO_COST_PROXIES, "TARGETS": TARGETS}
    return {k: ", ".join(registry) for k, registry in registries.items()}


def _search_args(p: argparse.ArgumentParser) -> None:
    """The search settings' flags, built from :data:`ultranas.settings.SETTINGS` (help, type, choices, group), each
    with ``SearchConfig``'s default; help texts name the registries' entries."""
    from .config import SearchConfig
    from .settings import SETTINGS, default

    names = registry_names()
    groups: dict[str, argparse._ArgumentGroup] = {}
    for s in SETTINGS:
        if s.group is None:  # not a flag (budget: a plan sets it)
            continue
        if s.group not in groups:
            groups[s.group] = p.add_argument_group(s.group)
        g = groups[s.group]
        kw = {k: v for k, v in (("type", s.type), ("action", s.action), ("choices", s.choices)) if v is not None}
        g.add_argument(s.flag, dest=s.key, default=default(SearchConfig, s.key), help=s.help.format_map(names), **kw)
        for flag, action, text in s.also:
            g.add_argument(flag, dest=s.key, action=action, help=text)


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
    from .settings import BY_KEY

    p.add_argument(BY_KEY["storage"].flag, required=True,
                   help="the study's optuna storage URL (postgresql://..., journal:...)")
    p.add_argument(BY_KEY["name"].flag, required=True, help="the study name given to 'ultranas search --name'")
    p.add_argument(BY_KEY["device"].flag, default=None, help="this worker's device, e.g. 0 (default: the study's)")
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
