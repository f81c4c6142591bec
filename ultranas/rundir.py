"""Run directories and their studies: create, resume, join, with every refusal before anything is written."""

from __future__ import annotations

import os
import re
import types
import typing
import warnings
from pathlib import Path

import optuna

from .config import SearchConfig
from .errors import UserError
from .safe_yaml import read_text, safe_load
from .settings import DEFINING, RESUME_SAFE


def absolute_paths(cfg: SearchConfig) -> SearchConfig:
    """Make every path in ``cfg`` absolute, so ``--resume`` and workers work from any directory."""
    from .data import resolve_data
    from .space._space import SPACES_DIR

    if cfg.data not in ("coco8", "coco8.yaml", "coco128", "coco128.yaml") or Path(cfg.data).exists():
        cfg.data = str(resolve_data(cfg.data, cfg.coco128))
    if Path(cfg.space).suffix and Path(cfg.space).exists() and Path(cfg.space).resolve().parent != SPACES_DIR:
        cfg.space = str(Path(cfg.space).resolve())
    for key in ("project", "calibration", "final_cache", "coco128", "latency_lut"):
        if getattr(cfg, key):
            setattr(cfg, key, str(Path(getattr(cfg, key)).expanduser().resolve()))
    if cfg.pretrained:
        cfg.pretrained = [str(Path(p).expanduser().resolve()) for p in cfg.pretrained]
    if cfg.storage and cfg.storage.startswith("sqlite:///") and not cfg.storage.startswith("sqlite:////"):
        cfg.storage = "sqlite:///" + str(Path(cfg.storage.removeprefix("sqlite:///")).resolve())
    return cfg


def storage_url(cfg: SearchConfig, run_dir: Path) -> str:
    return cfg.storage or f"sqlite:///{(run_dir / 'study.db').resolve()}"


def _differences(stored: dict, cfg: SearchConfig, keys=DEFINING) -> list[str]:
    mine = cfg.to_dict()
    return [f"{k} {stored.get(k)!r} (now {mine[k]!r})" for k in keys if k in stored and stored[k] != mine[k]]


def open_study(cfg: SearchConfig, run_dir: Path, resume: bool = False) -> optuna.Study:
    """The run's study: created (or, with ``resume``, required to exist) and checked against ``cfg``."""
    from .study import StudyRecord, create_study

    directions = ["maximize" if o == "map" else "minimize" for o in cfg.objectives]
    url = storage_url(cfg, run_dir)
    try:
        study, exists = create_study(url, cfg.name, directions, must_exist=resume)
    except KeyError:
        raise UserError(f"no study '{cfg.name}' in {url} (empty or replaced study file?): nothing to resume; "
                        "start a new run") from None
    except UserError:
        raise
    except Exception as e:  # corrupt database, unreachable server, bad URL
        raise UserError(f"cannot open the study storage {url}: {str(e).splitlines()[0][:200]}") from None
    if [d.name.lower() for d in study.directions] != directions:
        raise UserError(f"study '{cfg.name}' in {url} has other objectives; use a new --name")
    record = StudyRecord(study)
    stored = record.config
    if stored is None:
        if exists and study.trials:
            raise UserError(f"study '{cfg.name}' in {url} was not made by 'ultranas search'; use a new --name")
        record.config = cfg.to_dict()  # what 'ultranas worker' joins with
        record.run_dir = str(run_dir.resolve())
    elif diffs := _differences(stored, cfg):
        raise UserError(f"study '{cfg.name}' in {url} was made with other settings: {'; '.join(diffs[:3])}; "
                        "use a new --name (or 'ultranas worker' to join it with its own settings)")
    elif resume:
        _adopt(study, cfg, run_dir, url)
    from .objectives import metric_names

    names = metric_names(cfg.objectives, cfg.score)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if study.metric_names != names:
            study.set_metric_names(names)  # named columns in optuna-dashboard
    return study


def _adopt(study: optuna.Study, cfg: SearchConfig, run_dir: Path, url: str) -> None:
    """A resumed study that recorded another run folder: adopted when its file is inside this run (a copied or moved
    run: workers then write here), refused when it is kept elsewhere (it belongs to the run it recorded)."""
    from .study import StudyRecord

    record = StudyRecord(study)
    recorded, here = record.run_dir, str(Path(run_dir).resolve())
    if not recorded or recorded == here:
        return
    if not _study_file_in(url, run_dir):
        raise UserError(f"--resume {run_dir}: study '{cfg.name}' in {url} belongs to the run {recorded}; resume that "
                        "run (this folder is a copy or was moved)")
    record.run_dir = here


def new_run_dir(cfg: SearchConfig) -> Path:
    from .ultra import increment_path

    project = Path(cfg.project)
    try:
        project.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create the output folder {project}: {e.strerror}") from None
    run_dir = increment_path(project / cfg.name, exist_ok=False, mkdir=False)
    try:
        run_dir.mkdir(parents=True)
        check_writable(run_dir)
    except OSError as e:
        raise UserError(f"cannot write to the output folder {run_dir}: {e.strerror}") from None
    return run_dir


def check_writable(run_dir: Path) -> None:
    probe = run_dir / ".write-test"
    try:
        probe.write_text("ok")
        probe.unlink()
    except OSError as e:
        raise UserError(f"cannot write to the run directory {run_dir}: {e.strerror}") from None


def config_from(stored, where: str) -> SearchConfig:
    """Search settings stored by a run (its args.yaml, or a study's ``config``): a mapping of known settings, each
    value of its setting's type (``epochs`` a whole number, ``seeds`` a list of them ...), then validated."""
    if not isinstance(stored, dict):
        raise UserError(f"{where} must be a mapping of search settings")
    hints = typing.get_type_hints(SearchConfig)
    for key, value in stored.items():
        if key not in hints:
            raise UserError(f"{where}: unknown setting {str(key)[:40]!r}")
        if not _fits(value, hints[key]) and not (key == "device" and _fits(value, int)):
            raise UserError(f"{where}: setting '{key}' has a value of the wrong type ({type(value).__name__} "
                            f"{str(value)[:40]!r})")
    try:
        return SearchConfig.from_dict(stored).validate()
    except (TypeError, ValueError, re.error) as e:
        raise UserError(f"{where}: {str(e).splitlines()[0][:200]}") from None


def _fits(value, hint) -> bool:
    """Whether ``value`` is of type ``hint`` as a YAML file holds it (``int | None``, ``list[str]``, ``float`` ...)."""
    if isinstance(hint, types.UnionType):
        return any(_fits(value, h) for h in typing.get_args(hint))
    if typing.get_origin(hint) is list:
        return isinstance(value, list) and all(_fits(v, typing.get_args(hint)[0]) for v in value)
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)


def first_link(folder: Path, links_under: tuple[str, ...] = ()) -> Path | None:
    """The first symbolic link in ``folder`` (itself included) that writes into it could go through; file links in
    the sub-folders ``links_under`` (a search run's ``splits`` link to the dataset's images, read only) pass."""
    folder = Path(folder)
    if folder.is_symlink():
        return folder
    for root, dirs, files in os.walk(folder):
        under = Path(root).relative_to(folder).parts[:1]
        for name in dirs + files:
            path = Path(root) / name
            if path.is_symlink() and not (name in files and under and under[0] in links_under):
                return path
    return None


def check_no_links(run_dir: Path) -> None:
    """A search run's folder must hold no symbolic link its writes could follow out of it (one line naming it)."""
    if link := first_link(run_dir, links_under=("splits",)):
        raise UserError(f"run {run_dir} holds the symbolic link {link}: writes into the run would go through it; "
                        "remove it (or copy the run without links)")


def load_run(resume: str | Path, given: dict | None = None) -> tuple[SearchConfig, Path]:
    """The stored settings of run ``resume``, with the ``given`` ones applied where that is safe.

    A given setting that would change what the finished trials mean (``--epochs``, ``--data`` ...) is refused with
    one line; ``RESUME_SAFE`` ones (``--trials`` to extend the run, ``--device`` ...) are applied.
    """
    import yaml

    run_dir = Path(resume)
    args = run_dir / "args.yaml"
    if not args.is_file():
        raise UserError(f"--resume {run_dir}: no args.yaml there; give a run directory made by 'ultranas search'")
    try:
        stored = safe_load(read_text(args, "run settings"))
    except (yaml.YAMLError, UnicodeDecodeError, OSError) as e:
        raise UserError(f"{args} is damaged: {str(e).splitlines()[0]}") from None
    cfg = config_from(stored, str(args))
    given = dict(given or {})
    unknown = sorted(set(given) - set(cfg.to_dict()))
    if unknown:
        raise UserError(f"unknown search setting '{unknown[0]}'")
    probe = SearchConfig(**{**cfg.to_dict(), **given}).validate()
    absolute_paths(probe)
    conflicts = [k for k in given if k not in RESUME_SAFE and getattr(probe, k) != getattr(cfg, k)]
    if conflicts:
        k = conflicts[0]
        raise UserError(f"--{k.replace('_', '-')} {getattr(probe, k)!r} conflicts with the run's "
                        f"{getattr(cfg, k)!r}: a resumed run keeps its settings (you may change "
                        f"{', '.join('--' + s.replace('_', '-') for s in RESUME_SAFE)})")
    for k in given:
        setattr(cfg, k, getattr(probe, k))
    return cfg, run_dir


def _study_file_in(url: str, run_dir: Path) -> bool:
    """Whether ``url`` is a study file inside the run folder ``run_dir`` (a copy of the run copies it too)."""
    from .study import storage_file

    file = storage_file(url)
    return file is not None and file.parent == Path(run_dir).resolve()


def _check_study_run(cfg: SearchConfig, run_dir: Path) -> None:
    """A resumed run's study kept outside the run (``--storage``) must belong to this run: a study file inside another
    run, or a SQLite study that recorded another run folder (this one is a copy), is refused before anything is
    written (database servers and journals: checked by :func:`open_study`)."""
    from .study import recorded_run_dir, storage_file

    url, here = cfg.storage, Path(run_dir).resolve()
    file = storage_file(url)
    if file is None or file.parent == here:
        return
    if (file.parent / "args.yaml").is_file():
        raise UserError(f"--resume {run_dir}: its study file {file} lies in another run ({file.parent}); resume "
                        "that run (a copied run keeps its study file in the copy)")
    recorded = recorded_run_dir(file, cfg.name) if file.is_file() and url.startswith("sqlite") else None
    if recorded and Path(recorded).resolve() != here:
        raise UserError(f"--resume {run_dir}: study '{cfg.name}' in {url} belongs to the run {recorded}; resume "
                        "that run (this folder is a copy or was moved)")


def check_resumable(cfg: SearchConfig, run_dir: Path) -> None:
    """A run's own SQLite study must exist and hold the study (an empty or replaced file is refused untouched)."""
    import sqlite3

    check_no_links(run_dir)
    if cfg.storage:
        _check_study_run(cfg, run_dir)
        return  # a database server or journal: open_study(resume=True) checks the study exists
    db = run_dir / "study.db"
    if not db.is_file() or db.stat().st_size == 0:
        raise UserError(f"--resume {run_dir}: study.db is missing or empty: nothing to resume; start a new run")
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
            names = {r[0] for r in con.execute("SELECT study_name FROM studies")}
    except sqlite3.Error as e:
        raise UserError(f"--resume {run_dir}: study.db cannot be read as an optuna study ({e}); restore it or start "
                        "a new run") from None
    if cfg.name not in names:
        raise UserError(f"--resume {run_dir}: study.db holds no study '{cfg.name}'; restore it or start a new run")
