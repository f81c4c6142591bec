"""Ultralytics in a safe offline mode: switches at ``import ultranas``, set-up at first use, patches per call.

:func:`configure_env` runs at ``import ultranas`` and only sets environment variables, so it is cheap, creates
nothing in the user's folders and cannot fail (``ultranas --help`` works whatever ``HOME`` is); it comes before
anything imports Ultralytics (which reads them at import):
- ``YOLO_CONFIG_DIR``: unless one is set, Ultralytics gets a private config dir for this process (a fresh temporary
  folder, removed at exit; child processes share it), so the user's global settings are never read or rewritten
  and a refused command leaves nothing behind (Ultralytics writes ``settings.json`` there when it is imported);
- ``YOLO_OFFLINE`` (no online check, hence no analytics sync), ``YOLO_AUTOINSTALL=false`` (no pip installs);
  Ultralytics' verbosity is left as the user set it: the ``ultranas`` command is quiet by default, and
  :func:`quiet_ultralytics` quiets it only for the duration of a search, worker or calibration;
- ``ULTRALYTICS_SAFE_LOAD=1``: every checkpoint load uses Ultralytics' restricted (``weights_only``) unpickler;
- ``NNCF_CI=1`` unless set: NNCF (INT8 quantisation) sends no telemetry; OpenVINO's converter is run inside
  :func:`no_telemetry`;
- ``OMP_NUM_THREADS=1`` unless set: the default Ultralytics sets when it is imported, set here because torch may now
  be imported first (one thread per process, as before: latency timings and parallel workers rely on it).

ultranas' own folder (``$ULTRANAS_HOME``, default ``~/.config/ultranas``: checked copies of data YAMLs) is named by
:func:`home_dir`, checked when a command first needs it and created by what writes there.

:func:`setup` runs when the door to Ultralytics (``ultranas.ultra``) is first used. It checks a ``YOLO_CONFIG_DIR``
the user set (one line naming it when it is not a usable folder) and ships the fonts Ultralytics would download
(matplotlib's DejaVu Sans stands in for Arial). When the settings file is this process's private one (the normal
case), it also turns off sync and every integration callback (mlflow, comet, clearml, ...) there, with Ultralytics'
own settings API, as a process-wide default.

:func:`ultralytics_scope` holds the patches, for ultranas' own Ultralytics calls only (the door's training and
validation, ``NAS(...).train/val/export`` and non-streaming ``predict``; worker processes go through the same door);
restored after, exceptions included; re-entrant and thread-safe (the first entry applies, the last exit restores):
- sync and integrations off *in memory only* (the trainer reads them when it is built, in ``add_integration_callbacks``;
  the analytics singleton, which read ``sync`` when it was created, is switched off too). When Ultralytics was
  imported before ultranas, or the user set ``YOLO_CONFIG_DIR``, ``settings.json`` is the user's: it is never
  written with these values (a write Ultralytics itself makes meanwhile saves the user's values, not ours);
- torch's CPU threads, which Ultralytics' ``select_device`` sets to its own count (up to 8) in every trainer,
  validator, predictor and exporter: kept at the count the caller (or ultranas, per worker) set;
- the CUDA AMP check, which downloads ``yolo26n.pt`` and has no switch: ``ultralytics.engine.trainer.check_amp`` is
  :func:`_offline_amp_check` inside the scope only; the user's own ``YOLO(...).train()`` gets Ultralytics' check.
(Multi-GPU DDP workers run a script Ultralytics generates, outside any scope: the settings file, Ultralytics' check.)

The safe-load flag stays process-wide, by decision: when Ultralytics was imported before ultranas, :func:`setup` sets
``tasks.SAFE_LOAD``. It only tightens loading, writes nothing and makes the process the same whatever the import
order; a scope would have to catch every way a checkpoint reaches the loader (``NAS(...)``, ``pretrained=``, resume).
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import os
import shutil
import sys
import tempfile
import threading
from pathlib import Path

from .errors import UserError

_INTEGRATIONS = ("clearml", "comet", "dvc", "hub", "mlflow", "neptune", "raytune", "tensorboard", "wandb")
_done: set[str] = set()


def configure_env() -> None:
    """Ultralytics' environment switches (read when it is imported); cheap: no import of Ultralytics or torch, nothing
    created but this process's private Ultralytics config dir (in the temporary folder), and nothing raised."""
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_AUTOINSTALL", "false")
    os.environ["ULTRALYTICS_SAFE_LOAD"] = "1"  # restricted unpickler for every load (README: loading is safe)
    os.environ.setdefault("NNCF_CI", "1")  # NNCF's switch for its telemetry (read at its import): nothing is sent
    if not os.environ.get("OMP_NUM_THREADS"):
        os.environ["OMP_NUM_THREADS"] = "1"  # as ``import ultralytics`` does, before torch reads it
    if "ultralytics" not in sys.modules and not os.environ.get("YOLO_CONFIG_DIR"):
        private = _private_config_dir()
        if private is not None:
            os.environ["YOLO_CONFIG_DIR"] = private
            os.environ[_PRIVATE_ENV] = private  # children that inherit it know the settings file is not the user's
            _matplotlib_fallback(Path(private) / "matplotlib")


def _matplotlib_fallback(folder: Path) -> None:
    """Where matplotlib's own folder (``~/.config/matplotlib``) cannot be made, it warns on stderr and uses a temporary
    one; point ``MPLCONFIGDIR`` at ours instead, quietly. A usable default is left alone (its font cache persists)."""
    if os.environ.get("MPLCONFIGDIR") or not sys.platform.startswith("linux"):
        return
    try:
        default = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "matplotlib"
    except RuntimeError:  # no home folder
        default = None
    if default is None or unusable_folder(default):
        os.environ["MPLCONFIGDIR"] = str(folder)


def _private_config_dir() -> str | None:
    """A fresh folder for Ultralytics' settings and fonts, private to this process (and the children it starts,
    which inherit ``YOLO_CONFIG_DIR``), removed when this process exits; None when no temporary folder is usable
    (then Ultralytics picks its own, as it does for any user). Folders left by killed processes are removed here."""
    try:
        tag = f"{_PRIVATE_PREFIX}{_host_tag()}-"
        _remove_orphans(Path(tempfile.gettempdir()), tag)
        path = tempfile.mkdtemp(prefix=f"{tag}{os.getpid()}-")
    except OSError:
        return None
    atexit.register(_remove_private_dir, path, os.getpid())
    return path


_PRIVATE_PREFIX = "ultranas-ultralytics-"
_PRIVATE_ENV = "ULTRANAS_PRIVATE_YOLO_CONFIG_DIR"


def _host_tag() -> str:
    """This machine's name, hashed: a temporary folder shared with other machines (or containers) is left to them."""
    import hashlib
    import socket

    return hashlib.sha1(socket.gethostname().encode()).hexdigest()[:8]


def _remove_orphans(tmp: Path, tag: str) -> None:
    """Private config folders of this machine whose process is gone (killed before its exit handler ran)."""
    for folder in tmp.glob(f"{tag}*-*"):
        pid = folder.name[len(tag):].split("-", 1)[0]
        try:  # another process may be removing the same orphan
            if pid.isdigit() and not _alive(int(pid)) and folder.stat().st_uid == getattr(os, "getuid", lambda: 0)():
                shutil.rmtree(folder, ignore_errors=True)
        except OSError:
            continue


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, another user's (or a platform without signal 0: keep the folder)
        return True
    return True


def _remove_private_dir(path: str, owner: int) -> None:
    if os.getpid() == owner:  # a forked child that runs exit handlers must not remove its parent's folder
        shutil.rmtree(path, ignore_errors=True)


def _home_path() -> tuple[Path | None, str]:
    """ultranas' folder as the environment names it, and the variable that names it (None: no home folder known)."""
    given = os.environ.get("ULTRANAS_HOME")
    try:
        return (Path(given).expanduser(), "ULTRANAS_HOME") if given else (Path.home() / ".config" / "ultranas", "HOME")
    except (RuntimeError, KeyError):  # no HOME and no user entry, or ~user of no user
        return None, "ULTRANAS_HOME" if given else "HOME"


def unusable_folder(path: Path) -> str | None:
    """Why ``path`` cannot be (or become) a writable folder, in a few words; None when it can. Creates nothing."""
    probe = path
    try:
        while not probe.exists() and probe.parent != probe:
            probe = probe.parent
        if not probe.is_dir():
            return f"{probe} is not a folder"
        if not os.access(probe, os.W_OK | os.X_OK):
            return f"{probe} is not writable"
    except (OSError, ValueError) as e:
        return getattr(e, "strerror", None) or str(e)
    return None


def home_dir() -> Path:
    """ultranas' own folder (``$ULTRANAS_HOME``, default ``~/.config/ultranas``), checked, not created: the code
    that writes there creates what it writes. One line naming the variable when it cannot be used."""
    path, variable = _home_path()
    if path is None:
        raise UserError("cannot tell where ultranas keeps its files (no home folder): set ULTRANAS_HOME to a folder")
    if why := unusable_folder(path):
        where = f"ULTRANAS_HOME={path}" if variable == "ULTRANAS_HOME" else f"ultranas' folder {path} (in HOME)"
        raise UserError(f"{where} cannot hold ultranas' files: {why}; set ULTRANAS_HOME to a writable folder")
    return path


def __getattr__(name: str):
    if name == "HOME":  # ``from .runtime import HOME``: the folder, checked when it is needed (not at import)
        return home_dir()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _check_config_dir() -> None:
    """A ``YOLO_CONFIG_DIR`` the user set must be a usable folder: Ultralytics would otherwise drop it silently."""
    given = os.environ.get("YOLO_CONFIG_DIR")
    if given and (why := unusable_folder(Path(given).expanduser())):
        raise UserError(f"YOLO_CONFIG_DIR={given} cannot hold Ultralytics' settings: {why}; point it at a writable "
                        "folder or unset it")


def _ship_fonts(config_dir: Path) -> None:
    """Matplotlib's DejaVu Sans as the Arial files Ultralytics would download (found without importing matplotlib,
    which would create its own config folder in ``HOME``)."""
    missing = [config_dir / n for n in ("Arial.ttf", "Arial.Unicode.ttf") if not (config_dir / n).exists()]
    spec = importlib.util.find_spec("matplotlib")
    if not missing or spec is None or not spec.submodule_search_locations:
        return
    source = Path(spec.submodule_search_locations[0]) / "mpl-data" / "fonts" / "ttf" / "DejaVuSans.ttf"
    if not source.is_file():
        return
    try:
        for target in missing:  # processes sharing the folder (children, parallel test workers) copy side by side
            tmp = target.with_name(f"{target.name}.{os.getpid()}.tmp")
            shutil.copyfile(source, tmp)
            os.replace(tmp, target)
    except OSError as e:
        raise UserError(f"cannot write fonts to Ultralytics' config folder {config_dir}: {e.strerror}; set "
                        "YOLO_CONFIG_DIR to a writable folder") from None


@contextlib.contextmanager
def no_telemetry():
    """OpenVINO's converter sends usage telemetry (and writes ``~/intel/``) unless it runs in CI: for the block,
    ``CI=true`` (its documented opt-out for automated runs), restored after."""
    old = os.environ.get("CI")
    os.environ["CI"] = "true"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("CI", None)
        else:
            os.environ["CI"] = old


def setup() -> None:
    """Idempotent: shipped fonts, safe loading, and (in this process's private settings file only) Ultralytics'
    settings with no sync and no integrations. A user's settings file is left alone: :func:`ultralytics_scope`."""
    if "setup" in _done:
        return
    configure_env()
    _check_config_dir()
    with _settings_notice_hidden():
        from ultralytics import utils

    if _private_settings(utils):
        wanted = _wanted(utils.SETTINGS)
        if any(utils.SETTINGS.get(k) != v for k, v in wanted.items()):
            utils.SETTINGS.update(wanted)  # a process-wide default, written to the private file (as children read it)
    _ship_fonts(Path(utils.USER_CONFIG_DIR))
    if not utils.SAFE_LOAD:  # Ultralytics was imported before ultranas, so it never saw ULTRALYTICS_SAFE_LOAD
        import ultralytics.nn.tasks as tasks

        tasks.SAFE_LOAD = True  # patch (no switch after import), process-wide by decision (module docstring)
    _decline_openvino_telemetry()
    _done.add("setup")


def _wanted(settings) -> dict:
    return {"sync": False, **{k: False for k in _INTEGRATIONS if k in settings}}


def _private_settings(utils) -> bool:
    """Whether Ultralytics' settings file is in the private config dir of this process (or of the ultranas process
    that started it), not the user's."""
    private = os.environ.get(_PRIVATE_ENV)
    try:
        return bool(private) and Path(private).resolve() in Path(utils.SETTINGS.file_path).resolve().parents
    except (OSError, RuntimeError):
        return False


@contextlib.contextmanager
def _settings_notice_hidden():
    """Ultralytics announces a settings file it creates at import; in this process's private config dir that is news
    to no one (and would be printed by every process). Its other messages pass."""
    import logging

    logger = logging.getLogger("ultralytics")

    def keep(record) -> bool:
        return "Ultralytics Settings" not in record.getMessage()

    logger.addFilter(keep)
    try:
        yield
    finally:
        logger.removeFilter(keep)


def _decline_openvino_telemetry() -> None:
    """``import openvino`` sends a usage event and writes a client id to ``~/intel/`` unless telemetry was declined;
    NNCF shares the same client. Create that (singleton) client once, declined, the documented way (CI mode), so
    every later import and conversion in this process finds it off. Cheap: ``openvino`` itself is not imported."""
    import importlib.util

    if "openvino_telemetry_declined" in _done or importlib.util.find_spec("openvino_telemetry") is None:
        return
    with no_telemetry():
        import openvino_telemetry

        openvino_telemetry.Telemetry(tid="none", app_name="OpenVINO", app_version="", backend="ga4",
                                     enable_opt_in_dialog=False, disable_in_ci=True)
    _done.add("openvino_telemetry_declined")


def _offline_amp_check(model) -> bool:
    """AMP on CUDA without the reference-weights download: fp16 forward must agree with fp32 on random input."""
    import copy

    import torch

    device = next(model.parameters()).device
    if device.type != "cuda":
        return False
    x = torch.rand(1, 3, 64, 64, device=device)
    try:
        model = copy.deepcopy(model).eval()  # eval: Detect returns a tensor, and the trainer's model is untouched

        def first(y):
            return y[0] if isinstance(y, (list, tuple)) else y

        with torch.no_grad():
            ref = first(model(x))
            with torch.autocast("cuda", dtype=torch.float16):
                half = first(model(x))
        return bool(torch.isfinite(half).all() and torch.allclose(ref.float(), half.float(), atol=0.5, rtol=0.05))
    except Exception:  # any failure means: train in fp32
        return False


_scope_lock, _scope = threading.Lock(), {"depth": 0, "undo": None}
_DEVICE_MODULES = ("ultralytics.engine.trainer", "ultralytics.engine.validator", "ultralytics.engine.predictor",
                   "ultralytics.engine.exporter")


@contextlib.contextmanager
def ultralytics_scope():
    """ultranas' patches of Ultralytics for the block (see the module docstring): its settings with no sync and no
    integrations in memory (the settings file is not written), the analytics switch off, the offline AMP check.
    Re-entrant and thread-safe: the first entry applies them, the last exit restores Ultralytics' own."""
    setup()
    with _scope_lock:
        if _scope["depth"] == 0:
            _scope["undo"] = _apply_patches()
        _scope["depth"] += 1
    try:
        yield
    finally:
        with _scope_lock:
            _scope["depth"] -= 1
            if _scope["depth"] == 0:
                undo, _scope["undo"] = _scope["undo"], None
                undo()


def _apply_patches():
    """Apply the scoped patches; returns the function that restores what was there (called under ``_scope_lock``)."""
    import torch
    import ultralytics.engine.trainer as trainer
    from ultralytics import utils
    from ultralytics.utils import events  # created now, if not yet, with the user's settings (it reads ``sync`` once)

    threads = torch.get_num_threads()  # Ultralytics' select_device() resets them to its own count: kept as set
    selects = {m: m.select_device for name in _DEVICE_MODULES if (m := sys.modules.get(name)) is not None}

    def keeping(select):
        def select_device(*args, **kwargs):
            try:
                return select(*args, **kwargs)
            finally:
                torch.set_num_threads(threads)
        return select_device

    settings, analytics = utils.SETTINGS, events.events
    amp, enabled = trainer.check_amp, analytics.enabled
    wanted = _wanted(settings)
    theirs = {k: dict.get(settings, k) for k in wanted}
    own = settings.__dict__.get("update")

    def update(*args, **kwargs):  # Ultralytics' every write (``[k] = v``, ``update``, ``reset``) comes here
        dict.update(settings, theirs)  # the user's values, which Ultralytics' ``update`` changes and saves
        try:
            type(settings).update(settings, *args, **kwargs)
        finally:
            theirs.update((k, dict.get(settings, k)) for k in wanted)  # restored after the scope
            dict.update(settings, wanted)

    def undo():
        trainer.check_amp, analytics.enabled = amp, enabled
        for module, select in selects.items():
            module.select_device = select
        torch.set_num_threads(threads)
        settings.__dict__.pop("update", None)
        if own is not None:
            settings.update = own
        dict.update(settings, theirs)  # in memory: the file was never written with ours

    settings.update = update
    dict.update(settings, wanted)  # ``dict.update``: JSONDict's own ``update`` would write the file
    analytics.enabled = False
    trainer.check_amp = _offline_amp_check  # patch: no setting turns off the download in Ultralytics' check
    for module, select in selects.items():
        module.select_device = keeping(select)
    return undo


configure_env()


def quiet_ultralytics(fn):
    """Run ``fn`` with Ultralytics' log at its ``verbose=`` (default off), for that call only: its own training and
    validation output, and that of the processes it starts. The user's Ultralytics output elsewhere in the process
    (``NAS(...).val(verbose=True)``, ``YOLO(...).info()``) is left as they set it."""
    import functools

    @functools.wraps(fn)
    def scoped(*args, **kwargs):
        from .ultra import ultralytics_verbosity

        with ultralytics_verbosity(bool(kwargs.get("verbose"))):
            return fn(*args, **kwargs)

    return scoped
