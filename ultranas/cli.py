"""``ultranas`` command line: search, worker, calibrate, space, info, and Ultralytics-style predict/val/train/export.

Every user mistake is one line on stderr and exit code 2; Ctrl-C is exit 130 with how to resume.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import warnings

import yaml

from .errors import UserError


def _csv(cast=str):
    return lambda s: [cast(x) for x in s.split(",") if x.strip()]


def _search_args(p: argparse.ArgumentParser) -> None:
    from .config import SearchConfig
    from .strategies import STRATEGIES

    d = SearchConfig()
    p.add_argument("--data", default=d.data, help="data YAML; 'coco8.yaml' is bundled (default)")
    p.add_argument("--space", default=d.space, help="space name (yolo, mobile) or YAML path")
    p.add_argument("--strategy", default=d.strategy, help=", ".join(STRATEGIES))
    p.add_argument("--trials", type=int, default=d.trials, help="designs to train (baselines included; designs "
                   "screened out by a limit or a latency band do not count)")
    p.add_argument("--time-limit", type=float, default=None, help="minutes of search: no trial starts after them "
                   "(the final stage runs after)")
    p.add_argument("--objectives", type=_csv(), default=d.objectives, help="comma list of map,latency,params,gflops")
    p.add_argument("--focus", default=d.focus, help="bands (default): spend the trials under each reference's "
                   "latency; front: the whole Pareto front of --objectives")
    p.add_argument("--estimator", default=d.estimator, help="short-train or zero-cost")
    p.add_argument("--calibration", default=None, help="calibration.json from 'ultranas calibrate': use its estimator "
                   "(it sets the proxy size, never --imgsz)")
    p.add_argument("--trainer", default=d.trainer, help="short-train trainer: ultralytics (default) or fast")
    p.add_argument("--score", default=d.score, help="short-train ranks by: map (default), loss_drop, val_loss or "
                   "train_loss (these three need --trainer fast)")
    p.add_argument("--proxy", default=d.proxy, help="zero-cost proxy (with --estimator zero-cost)")
    p.add_argument("--epochs", type=int, default=d.epochs, help="epochs of each candidate's short schedule")
    p.add_argument("--imgsz", type=int, default=d.imgsz, help="deploy size: latency, limits, final retrain, found_*.pt")
    p.add_argument("--proxy-imgsz", type=int, default=d.proxy_imgsz, help="training size of candidates while searching")
    p.add_argument("--batch", type=int, default=d.batch)
    p.add_argument("--fraction", type=float, default=d.fraction, help="fraction of training images per candidate")
    p.add_argument("--single-cls", action="store_true", help="class-agnostic targets while searching")
    p.add_argument("--seeds", type=_csv(int), default=d.seeds, help="seeds averaged per candidate, e.g. 0,1")
    p.add_argument("--rerank", type=int, default=d.rerank, help="re-train the K best designs of each band at a "
                   "higher fidelity before the final stage picks one (0: off)")
    p.add_argument("--rerank-epochs", type=int, default=d.rerank_epochs)
    p.add_argument("--rerank-imgsz", type=int, default=None, help="default: twice --proxy-imgsz")
    p.add_argument("--halving", action="store_true", help="successive halving over --rungs")
    p.add_argument("--rungs", type=_csv(float), default=d.rungs, help="fidelities, ending at 1.0")
    p.add_argument("--eta", type=int, default=d.eta)
    p.add_argument("--no-warm-start", dest="warm_start", action="store_false", help="skip the baseline points")
    p.add_argument("--max-latency", type=float, default=None, help="hard limit, ms at --imgsz")
    p.add_argument("--max-params", type=float, default=None)
    p.add_argument("--max-gflops", type=float, default=None)
    p.add_argument("--latency-le", default=None, help="hard limit: latency <= that of this point, e.g. yolo11n")
    p.add_argument("--latency-target", default=d.latency_target, help="onnxruntime-cpu, torch-cpu, torch-cuda-fp16, ...")
    p.add_argument("--references", type=_csv(), default=d.references, help="baselines the final stage compares with; "
                   "found_<scale>.pt for each")
    p.add_argument("--final-epochs", type=int, default=d.final_epochs)
    p.add_argument("--final-seeds", type=_csv(int), default=d.final_seeds, help="seeds of the final retrain, e.g. "
                   "0,1,2 (each design is trained once per seed)")
    p.add_argument("--final-workers", type=int, default=d.final_workers, help="final-stage trainings run in parallel")
    p.add_argument("--final-cache", default=None, help="JSON-lines file of final results reused across runs")
    p.add_argument("--no-final", dest="final", action="store_false", help="skip the final retrain")
    p.add_argument("--final", dest="final", action="store_true", help="run the final retrain (the default; with "
                   "--resume, the way to run it for a run made with --no-final)")
    p.add_argument("--device", default=d.device)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--project", default=d.project)
    p.add_argument("--name", default=d.name)
    p.add_argument("--storage", default=None, help="optuna storage URL (default: SQLite study.db in the run)")
    p.add_argument("--coco128", default=None, help="folder of a local coco128 (for --data coco128.yaml)")
    p.add_argument("--verbose", action="store_true", help="show Ultralytics' per-epoch output")


def _given(argv: list[str]) -> set[str]:
    """Names of the search settings given explicitly on the command line (not defaults)."""
    p = _Parser(prog="ultranas search")
    _search_args(p)
    p.add_argument("--resume")
    for action in p._actions:
        action.default = argparse.SUPPRESS  # only what was typed lands in the namespace
    return set(vars(p.parse_known_args(argv)[0])) - {"resume", "help"}


def cmd_search(a) -> None:
    from .engine import search

    kwargs = {k: v for k, v in vars(a).items() if k not in ("func", "resume", "command", "debug", "argv")}
    if a.resume:
        given = _given(a.argv[a.argv.index("search") + 1:])
        run = search(resume=a.resume, **{k: v for k, v in kwargs.items() if k in given})
    else:
        run = search(**kwargs)
    print(f"ultranas: results in {run}")


def cmd_calibrate(a) -> None:
    from .estimation.calibrate import calibrate

    calibrate(**{k: v for k, v in vars(a).items() if k not in ("func", "command", "debug")})


def cmd_worker(a) -> None:
    from .distributed import worker

    run = worker(storage=a.storage, name=a.name, device=a.device, progress=not a.quiet)
    print(f"ultranas: worker done; trial files in {run}")


def cmd_data(a) -> None:
    from .coco import coco_subset

    path = coco_subset(a.coco_root, split=a.split, n=a.n, seed=a.seed, out=a.out, val_split=a.val_split,
                       val_n=a.val_n)
    print(f"ultranas: wrote {path}")


def cmd_space(a) -> None:
    import random

    from .space import load_space

    space = load_space(a.space)
    if a.action == "show":
        print(f"space {space.name} v{space.version} ({space.path})")
        for d, c in space.decisions.items():
            print(f"  {d:<16} {list(c)}")
        print(f"  points: {', '.join(space.points) or 'none'}")
        print(f"  distinct genotypes: {space.size():,} (designs with invalid width/block pairs excluded at sampling)")
    elif a.action == "sample":
        rng = random.Random(a.seed)
        for _ in range(a.n):
            g = space.sample(rng)
            print(json.dumps({"hash": space.design_hash(g), "genotype": g}))
    elif a.action == "render":
        g = space.point(a.point) if a.point else _genotype_arg(a.genotype)
        text = space.to_yaml(g, a.nc)
        if a.output:
            from .fsutil import atomic_write_text

            atomic_write_text(a.output, text)
            print(f"ultranas: wrote {a.output}")
        else:
            print(text)


def _genotype_arg(text: str | None) -> dict:
    if not text:
        raise UserError("space render needs --point NAME or --genotype JSON")
    try:
        g = json.loads(text)
    except json.JSONDecodeError as e:
        raise UserError(f"--genotype is not valid JSON: {e}") from None
    if not isinstance(g, dict):
        raise UserError("--genotype must be a JSON object of decision -> choice")
    return g


def cmd_info(a) -> None:
    from .ultra import count_params, load_checkpoint

    ckpt = load_checkpoint(a.model)
    model = ckpt.get("ema") or ckpt.get("model")
    info = ckpt.get("ultranas")
    print(f"{a.model}: {type(model).__name__}, {count_params(model):,} parameters, "
          f"{len(model.names)} classes, trained {(ckpt.get('train_args') or {}).get('epochs', '?')} epochs")
    print(yaml.safe_dump({"ultranas": info}, sort_keys=False) if info else "no ultranas entry (a plain Ultralytics checkpoint)")


MODES = ("predict", "val", "train", "export")


def _kv(items: list[str]) -> dict:
    """Ultralytics-style ``key=value`` (or ``--key value``) arguments; values parsed as YAML scalars, never eval'd."""
    out, i = {}, 0
    while i < len(items):
        item = items[i]
        if item.startswith("--"):
            key = item[2:].replace("-", "_")
            if "=" in key:
                key, value = key.split("=", 1)
            elif i + 1 < len(items) and not items[i + 1].startswith("--"):
                value, i = items[i + 1], i + 1
            else:
                value = "true"
        elif "=" in item:
            key, value = item.split("=", 1)
        else:
            raise UserError(f"argument '{item}' is not key=value (e.g. model=found_n.pt source=img.jpg)")
        if not key.isidentifier():
            raise UserError(f"argument '{item}' has no valid name before '=' (e.g. imgsz=320)")
        try:
            parsed = yaml.safe_load(value) if value else value
        except yaml.YAMLError:
            parsed = value
        out[key] = parsed if isinstance(parsed, (str, int, float, bool, list)) or parsed is None else value
        i += 1
    return out


def cmd_mode(a) -> None:
    from .model import NAS

    kw = _kv(a.args)
    coco_eval = kw.pop("coco_eval", False)
    if not isinstance(coco_eval, bool):
        raise UserError(f"coco_eval must be true or false, got {str(coco_eval)[:40]!r}")
    model = kw.pop("model", None)
    if not model or not isinstance(model, (str, int, float)):
        raise UserError(f"ultranas {a.command} needs model=PATH (a found_*.pt or a model .yaml)")
    if "data" in kw:  # Ultralytics gets the checked copy: absolute folders, never a 'download:' to run
        from .data import safe_data_yaml

        kw["data"] = str(safe_data_yaml(str(kw["data"])))
    nas = NAS(str(model))
    if a.command == "predict":
        kw.setdefault("save", True)
        results = nas.predict(**kw)
        print(f"ultranas: {len(results)} image(s); saved to {results[0].save_dir if results else '-'}")
    elif a.command == "val":
        if coco_eval:
            from .coco import coco_eval as run_coco_eval

            if "data" not in kw:
                raise UserError("coco_eval=true needs data=DATA_YAML")
            data = kw.pop("data")
            opts = {k: kw.pop(k) for k in ("gt_json", "save_dir") if kw.get(k) is not None}
            try:
                max_dets, imgsz = int(kw.pop("max_dets", 100)), int(kw.pop("imgsz", 640))
            except (TypeError, ValueError):
                raise UserError("max_dets and imgsz must be whole numbers") from None
            r = run_coco_eval(nas, data, imgsz=imgsz, device=str(kw.pop("device", "cpu")), max_dets=max_dets,
                              **opts, **kw)  # the rest (split, batch, conf, ...) goes to Ultralytics' validator
            print(f"ultranas: mAP50-95 Ultralytics {r['ultralytics_map']:.4f} | pycocotools {r['cocoeval_map']:.4f}   "
                  f"mAP50 Ultralytics {r['ultralytics_map50']:.4f} | pycocotools {r['cocoeval_map50']:.4f}   "
                  f"({r['images']} images, {r['detections']} validator detections, COCOeval maxDets {max_dets}"
                  + (f"; predictions.json in {r['save_dir']})" if r["save_dir"] else ")"))
        else:
            m = nas.val(**kw)
            print(f"ultranas: mAP50-95 {m.box.map:.4f}  mAP50 {m.box.map50:.4f}")
    elif a.command == "train":
        nas.train(**kw)
    else:
        print(f"ultranas: exported {nas.export(**kw)}")


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad flag as one line (a UserError) instead of usage + error."""

    def error(self, message):
        raise UserError(f"{message} (see 'ultranas {self.prog.split()[-1]} --help')" if " " in self.prog
                        else f"{message} (see 'ultranas --help')")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="ultranas", description="Neural architecture search for Ultralytics YOLO")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("search", help="search a space on a dataset; writes runs/nas/<name>")
    _search_args(p)
    p.add_argument("--resume", default=None, help="continue the run in this directory")
    p.set_defaults(func=cmd_search)
    p = sub.add_parser("worker", help="join a shared study (started by 'ultranas search --storage URL --name N')")
    p.add_argument("--storage", required=True, help="the study's optuna storage URL (postgresql://..., journal:...)")
    p.add_argument("--name", required=True, help="the study name given to 'ultranas search --name'")
    p.add_argument("--device", default=None, help="this worker's device, e.g. 0 (default: the study's)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_worker)
    p = sub.add_parser("data", help="dataset tools: coco-subset")
    p.add_argument("action", choices=("coco-subset",))
    p.add_argument("--coco-root", required=True, help="a local COCO download (annotations/, train2017/, val2017/)")
    p.add_argument("--split", default="train2017")
    p.add_argument("--n", type=int, default=5000)
    p.add_argument("--val-split", default="val2017")
    p.add_argument("--val-n", type=int, default=None, help="validation images (default n/10)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_data)
    p = sub.add_parser("space", help="inspect a search space")
    p.add_argument("action", choices=("show", "sample", "render"))
    p.add_argument("space")
    p.add_argument("--n", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--point", default=None)
    p.add_argument("--genotype", default=None, help="JSON genotype to render")
    p.add_argument("--nc", type=int, default=80)
    p.add_argument("-o", "--output", default=None)
    p.set_defaults(func=cmd_space)
    p = sub.add_parser("info", help="describe a found_*.pt")
    p.add_argument("model")
    p.set_defaults(func=cmd_info)
    from .estimation.calibrate import add_arguments

    p = sub.add_parser("calibrate", help="measure how well a cheap estimator ranks designs")
    add_arguments(p)
    p.set_defaults(func=cmd_calibrate)
    for mode in MODES:
        p = sub.add_parser(mode, help=f"{mode} like 'yolo {mode}': key=value arguments")
        p.add_argument("args", nargs=argparse.REMAINDER)
        p.set_defaults(func=cmd_mode)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    debug = "--debug" in argv
    if not debug:
        warnings.filterwarnings("ignore")  # library deprecation chatter is not for users; --debug shows it
    try:
        args = build_parser().parse_args(argv)
        args.argv = list(argv)
        signal.signal(signal.SIGTERM, _sigterm)  # a scheduler's stop is handled like Ctrl-C
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
    except Exception as e:  # unexpected: still one line unless --debug
        if debug:
            raise
        msg = str(e).strip().splitlines()[0][:300] if str(e).strip() else ""
        print(f"ultranas: error: {type(e).__name__}: {msg} (rerun with --debug for the traceback)", file=sys.stderr)
        return 1


def _sigterm(signum, frame):
    raise KeyboardInterrupt


def entrypoint() -> None:
    sys.exit(main())
