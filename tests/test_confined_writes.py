"""Writes stay where they belong, and what a checkpoint or a run stores is checked before it is used.

- A checkpoint's model YAML, class names, ``train_args`` and ``ultranas`` entry are checked on every load (``info``,
  ``predict``, ``val``, ``train``, ``export``, ``NAS(...)``) before Ultralytics builds anything from them.
- ``train resume=True`` writes into the training run that holds the checkpoint (or ``save_dir=``), never into the
  ``save_dir``/``project``/``name`` the checkpoint names.
- ``ultranas worker`` and ``search --resume`` write into the run that holds the study file, never into the run the
  study recorded (a copied run stays a copy); a run's args.yaml is checked setting by setting.
"""

from __future__ import annotations

import copy
import functools
import io
import shutil
from pathlib import Path

import optuna
import pytest
import torch
import yaml
from badinput import check, dataset, det_pt, snapshot, text
from hypothesis import given, settings
from hypothesis import strategies as st

from ultranas.errors import UserError

EVIL_ACT = "__import__('os').system('touch pwned')"
DOWNLOAD = "import pathlib; pathlib.Path('pwned').touch()"


@functools.cache
def _base() -> bytes:
    """``det_pt``'s checkpoint (a yolo11n DetectionModel, 2 classes), saved once."""
    from ultranas.space import load_space
    from ultranas.ultra import build_model

    space, buffer = load_space("yolo"), io.BytesIO()
    torch.save({"model": build_model(space.render(space.point("yolo11n"), 2))}, buffer)
    return buffer.getvalue()


def crafted(tmp: Path, edit, path: Path | None = None) -> Path:
    """``det_pt``'s checkpoint edited by ``edit(ckpt)`` and saved to ``path`` (default ``tmp/crafted.pt``)."""
    ckpt = torch.load(io.BytesIO(_base()), weights_only=False)
    edit(ckpt)
    path = path or tmp / "crafted.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(ckpt, path)
    return path


def _yaml(**kv):
    return lambda c: c["model"].yaml.update(kv)


def _layer(i: int, row: list):
    return lambda c: c["model"].yaml["backbone"].__setitem__(i, row)


def _bomb():
    nested = [1]
    for _ in range(40):  # shared twice per level: 2**40 leaves once walked, a few bytes pickled
        nested = [nested, nested]
    return nested


def _ema_module(c):
    c["ema"] = copy.deepcopy(c["model"])
    c["ema"].yaml["backbone"][0][2] = "os.system"


def _set(**kv):
    return lambda c: c.update(kv)


def _stride(c):
    c["model"].stride = torch.tensor([8.0, 16.0, 1e9])


def _names(c):
    c["model"].names = 5


def _resumable(**train_args):
    """A checkpoint as Ultralytics saves one mid-training (epoch >= 0, optimizer state), with ``train_args``."""
    return _set(epoch=0, optimizer={"state": {}, "param_groups": []}, train_args=train_args)


def in_run(tmp: Path, edit, links: bool = False) -> Path:
    """A crafted checkpoint inside a training run folder (``run/weights/last.pt`` next to ``run/args.yaml``)."""
    run = tmp / "run_t"
    (run / "weights").mkdir(parents=True)
    (run / "args.yaml").write_text("epochs: 2\n")
    if links:
        (run / "results.csv").symlink_to(text(tmp, "outside.txt", "x"))
    return crafted(tmp, edit, run / "weights" / "last.pt")


CHECKPOINTS = {  # name: (argv, expected)
    "module outside the allow-list": (lambda t: ["info", crafted(t, _layer(0, [-1, 1, "os.system", [16, 3, 2]]))],
                                      "not an allowed"),
    "string layer argument": (lambda t: ["val", f"model={crafted(t, _layer(0, [-1, 1, 'Conv', [EVIL_ACT]]))}"],
                              "args must be"),
    "layer width beyond bounds": (lambda t: ["predict", f"model={crafted(t, _layer(0, [-1, 1, 'Conv', [10**7, 3]]))}",
                                             f"source={t}"], "args must be a list of numbers up to 4096"),
    "eval-bait activation, train": (lambda t: ["train", f"model={crafted(t, _yaml(activation=EVIL_ACT))}",
                                               f"data={dataset(t)}", "epochs=1", "imgsz=32"], "not allowed"),
    "model yaml not a mapping": (lambda t: ["export", f"model={crafted(t, lambda c: setattr(c['model'], 'yaml', 'x.yaml'))}"],
                                 "needs 'backbone' and 'head'"),
    "scale not in scales": (lambda t: ["info", crafted(t, _yaml(scale="z"))], "'scale'"),
    "ema with a foreign module": (lambda t: ["info", crafted(t, _ema_module)], "not an allowed"),
    "stride beyond bounds": (lambda t: ["predict", f"model={crafted(t, _stride)}", f"source={t}"], "strides"),
    "class names not a mapping": (lambda t: ["info", crafted(t, _names)], "class names"),
    "train_args not a mapping": (lambda t: ["info", crafted(t, _set(train_args=[1, 2]))], "'train_args' must be"),
    "train_args imgsz huge": (lambda t: ["predict", f"model={crafted(t, _set(train_args={'imgsz': 10**6}))}",
                                         f"source={t}"], "train_args imgsz"),
    "train_args imgsz nan": (lambda t: ["val", f"model={crafted(t, _set(train_args={'imgsz': float('nan')}))}"],
                             "train_args imgsz"),
    "epoch not a number": (lambda t: ["train", f"model={crafted(t, _set(epoch='x'))}", "resume=True"],
                           "'epoch' must be a whole number"),
    "ultranas entry not a mapping": (lambda t: ["info", crafted(t, _set(ultranas="found"))], "must be a mapping"),
    "verdict a number": (lambda t: ["info", crafted(t, _set(ultranas={"verdict": 5}))], "'verdict' must be a list"),
    "metadata holds an object": (lambda t: ["info", crafted(t, _set(ultranas={"x": torch.tensor([1.0])}))],
                                 "plain data"),
    "metadata nests too deep": (lambda t: ["info", crafted(t, _set(ultranas=_deep(200)))], "nests deeper"),
}
BOMBS = {  # refused within the time and memory caps
    "model yaml alias bomb": (lambda t: ["info", crafted(t, lambda c: c["model"].yaml["head"][0].__setitem__(
        3, _bomb()))], "expands to more than"),
    "train_args alias bomb": (lambda t: ["val", f"model={crafted(t, _set(train_args={'x': _bomb()}))}"],
                              "expands to more than"),
    "cfg file alias bomb": (lambda t: ["train", f"model={det_pt(t)}", f"data={dataset(t)}",
                                       f"cfg={text(t, 'c.yaml', ALIAS_BOMB)}"], "cannot be read as YAML"),
}
RESUMES = {
    "resume from a loose checkpoint": (lambda t: ["train", f"model={crafted(t, _resumable(save_dir=str(t / 'x')))}",
                                                  "resume=True"], "not in a run's weights/ folder"),
    "resume through a link in the run": (lambda t: ["train", f"model={in_run(t, _resumable(), links=True)}",
                                                    "resume=True"], "symbolic link"),
    "resume with train_args of the wrong type": (lambda t: ["train", f"model={in_run(t, _resumable(epochs='many'))}",
                                                            "resume=True"], "its train_args"),
    "resume with a distill model to evaluate": (lambda t: ["train", f"model={in_run(t, _resumable(distill_model=_evil(t)))}",
                                                           "resume=True"], "not allowed"),
    "resume on the checkpoint's data with a download": (lambda t: ["train", f"model={in_run(t, _bait_data(t))}",
                                                                    "resume=True"], "test images not found"),
    "resume asked in a cfg file": (lambda t: ["train", f"model={crafted(t, _resumable(save_dir=str(t / 'x')))}",
                                              f"cfg={text(t, 'c.yaml', 'resume: true')}"], "not in a run's weights/"),
    "resume= a finished checkpoint": (lambda t: ["train", f"model={det_pt(t)}", f"resume={det_pt(t)}"],
                                      "not a resumable"),
    "distill model to evaluate": (lambda t: ["train", f"model={det_pt(t)}", f"distill_model={text(t, 'd.yaml', 'x')}"],
                                  "needs 'backbone' and 'head'"),
}


def _bait_data(t: Path):
    """A resumable checkpoint trained on a data YAML whose ``download:`` would run (and whose test split is missing)."""
    return _resumable(data=str(dataset(t, test="images/test", download=DOWNLOAD)))


def _evil(t: Path) -> str:
    return str(text(t, "d.yaml", yaml.safe_dump({"backbone": [], "head": [], "activation": EVIL_ACT})))


def _deep(n: int) -> dict:
    node: dict = {}
    for _ in range(n):
        node = {"a": node}
    return node


@pytest.mark.parametrize("case", sorted(CHECKPOINTS))
def test_checkpoint_contents_are_checked_before_use(case, tmp_path, cli_forked):
    check(tmp_path, cli_forked, *CHECKPOINTS[case])


@pytest.mark.parametrize("case", sorted(BOMBS))
def test_shared_objects_in_a_checkpoint_are_refused_in_bounds(case, tmp_path, cli_forked):
    check(tmp_path, cli_forked, *BOMBS[case], timeout=60, mem_mb=200)


@pytest.mark.parametrize("case", sorted(RESUMES))
def test_resume_is_refused_before_writing(case, tmp_path, cli_forked):
    check(tmp_path, cli_forked, *RESUMES[case])


def test_the_python_api_checks_a_checkpoint_before_ultralytics_loads_it(tmp_path):
    from ultranas import NAS

    path = crafted(tmp_path, _yaml(activation=EVIL_ACT))
    before = snapshot(tmp_path)
    with pytest.raises(UserError, match="activation") as info:
        NAS(str(path))
    assert len(str(info.value).splitlines()) == 1 and snapshot(tmp_path) == before


def test_info_shows_odd_numbers_in_the_metadata(tmp_path, cli_forked):
    """nan, inf and text where numbers belong are shown as they are, never a traceback."""
    info = {"latency_ms": float("nan"), "latency_ratio": float("inf"), "map50_95": "high", "verdict": ["ok"]}
    path = crafted(tmp_path, _set(ultranas=info, train_args={"epochs": "many"}))
    proc = cli_forked("info", path, cwd=tmp_path)
    assert proc.returncode == 0 and not proc.stderr.strip(), proc.stderr
    assert "trained many epochs" in proc.stdout and ".nan" in proc.stdout and ".inf" in proc.stdout
    assert "verdict: ok" in proc.stdout


def test_resumed_training_writes_only_into_its_own_run(tmp_path, monkeypatch):
    """A real interrupted training, its checkpoint edited to name other folders; resuming it trains the last epoch
    in the run that holds the checkpoint and creates nothing anywhere else."""
    from ultranas import NAS

    class Stop(Exception):
        pass

    def stop(trainer):
        raise Stop

    monkeypatch.chdir(tmp_path)
    run = tmp_path / "work" / "runs" / "train"
    model = NAS(str(det_pt(tmp_path)))
    model.add_callback("on_fit_epoch_end", stop)  # after epoch 0 is saved to last.pt
    with pytest.raises(Stop):
        model.train(data=str(dataset(tmp_path)), epochs=2, imgsz=64, batch=2, device="cpu", workers=0, val=False,
                    plots=False, amp=False, project=str(run.parent), name=run.name)
    last = run / "weights" / "last.pt"
    ckpt = torch.load(last, weights_only=False)
    assert ckpt["epoch"] == 0 and ckpt["optimizer"] is not None
    ckpt["train_args"].update(save_dir=str(tmp_path / "elsewhere"), project=str(tmp_path / "p"), name="../../x")
    torch.save(ckpt, last)
    before = snapshot(tmp_path)
    NAS(str(last)).train(resume=True)
    after = snapshot(tmp_path)
    changed = {p for p in set(after) | set(before) if after.get(p) != before.get(p)}
    assert changed and all(p.startswith("work/runs/train/") for p in changed), sorted(changed)
    assert torch.load(last, weights_only=False)["epoch"] == -1  # the second epoch ran: finished, stripped


def study_run(tmp: Path, name: str = "run", storage: str | None = None) -> Path:
    """A run folder as 'ultranas search' makes one (args.yaml, a study recording this folder) whose one-trial budget
    is spent (one counted failed trial) and that times no latency, so a worker or a resume only opens it and writes
    its small files."""
    from optuna.trial import TrialState, create_trial

    from ultranas.config import SearchConfig
    from ultranas.rundir import absolute_paths, open_study

    run = tmp / name
    run.mkdir()
    cfg = absolute_paths(SearchConfig(project=str(tmp), name="exp", trials=1, epochs=1, imgsz=32, final=False,
                                      objectives=["map", "params"], focus="front", storage=storage).validate())
    (run / "args.yaml").write_text(yaml.safe_dump(cfg.to_dict()))
    study = open_study(cfg, run)
    study.add_trial(create_trial(state=TrialState.FAIL, user_attrs={"failure": "test", "uncounted": False}))
    return run


def _recorded(db: Path) -> str:
    return optuna.load_study(study_name="exp", storage=f"sqlite:///{db}").user_attrs["run_dir"]


def test_a_worker_on_a_copied_run_writes_into_the_copy(tmp_path, cli_forked):
    original = study_run(tmp_path)
    copied = Path(shutil.copytree(original, tmp_path / "copy"))
    before = snapshot(original)
    proc = cli_forked("worker", "--storage", f"sqlite:///{copied / 'study.db'}", "--name", "exp", "--quiet",
                      cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert f"trial files in {copied}" in proc.stdout
    assert snapshot(original) == before
    assert (copied / "data.yaml").is_file() and not (original / "data.yaml").exists()


def test_resuming_a_copied_run_adopts_the_copy(tmp_path, cli_forked):
    original = study_run(tmp_path)
    copied = Path(shutil.copytree(original, tmp_path / "copy"))
    before = snapshot(original)
    proc = cli_forked("search", "--resume", copied, cwd=tmp_path)
    assert "Traceback" not in proc.stderr and snapshot(original) == before, proc.stderr
    assert _recorded(copied / "study.db") == str(copied.resolve())  # a worker joining the copy writes there too


def _args_edit(run: Path, **kv) -> Path:
    args = yaml.safe_load((run / "args.yaml").read_text())
    (run / "args.yaml").write_text(yaml.safe_dump({**args, **kv}))
    return run


def _copy_with_storage_in_original(t: Path) -> Path:
    original = study_run(t, storage=f"sqlite:///{t / 'run' / 'other.db'}")
    return Path(shutil.copytree(original, t / "copy"))


def _shared_study_of_another_run(t: Path) -> Path:
    (t / "shared").mkdir()
    study_run(t, storage=f"sqlite:///{t / 'shared' / 'study.db'}")
    return Path(shutil.copytree(t / "run", t / "copy"))


def _recorded_run_without_args(t: Path) -> str:
    (t / "shared").mkdir()
    run = study_run(t, storage=f"sqlite:///{t / 'shared' / 'study.db'}")
    (run / "args.yaml").unlink()
    return f"sqlite:///{t / 'shared' / 'study.db'}"


def _linked_run(t: Path) -> Path:
    run = study_run(t)
    (t / "outside").mkdir()
    (run / "trials").symlink_to(t / "outside", target_is_directory=True)
    return run


ALIAS_BOMB = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n" for p, c in zip("abcdefgh", "bcdefghi"))
RUNS = {
    "resume a copy whose study lies in the original": (lambda t: ["search", "--resume", _copy_with_storage_in_original(t)],
                                                       "lies in another run"),
    "resume a copy of a run with a shared study": (lambda t: ["search", "--resume", _shared_study_of_another_run(t)],
                                                   "belongs to the run"),
    "worker for a study whose run is gone": (lambda t: ["worker", "--storage", _recorded_run_without_args(t), "--name",
                                                        "exp"], "not a run made by"),
    "resume a run holding a folder link": (lambda t: ["search", "--resume", _linked_run(t)], "symbolic link"),
    "worker on a run holding a folder link": (lambda t: ["worker", "--storage", f"sqlite:///{_linked_run(t) / 'study.db'}",
                                                         "--name", "exp"], "symbolic link"),
    "args.yaml epochs a list": (lambda t: ["search", "--resume", _args_edit(study_run(t), epochs=[1, 2])],
                                "setting 'epochs' has a value of the wrong type"),
    "args.yaml nested mapping": (lambda t: ["search", "--resume", _args_edit(study_run(t), name={"a": {"b": 1}})],
                                 "setting 'name'"),
    "args.yaml unknown key": (lambda t: ["search", "--resume", _args_edit(study_run(t), colour="red")],
                              "unknown setting 'colour'"),
    "args.yaml flag a string": (lambda t: ["search", "--resume", _args_edit(study_run(t), final="yes")],
                                "setting 'final'"),
}


@pytest.mark.parametrize("case", sorted(RUNS))
def test_runs_are_checked_before_writing(case, tmp_path, cli_forked):
    check(tmp_path, cli_forked, *RUNS[case])


def test_an_alias_bomb_in_args_yaml_is_one_line(tmp_path, cli_forked):
    def make(t):
        run = study_run(t)
        (run / "args.yaml").write_text(ALIAS_BOMB)
        return ["search", "--resume", run]

    check(tmp_path, cli_forked, make, "args.yaml is damaged", timeout=60, mem_mb=200)


SETTING_VALUES = st.recursive(st.none() | st.booleans() | st.integers(-10**12, 10**12) | st.floats()
                              | st.text(max_size=12), lambda inner: st.lists(inner, max_size=3)
                              | st.dictionaries(st.text(max_size=4), inner, max_size=3), max_leaves=8)


@settings(max_examples=100, deadline=None)
@given(edits=st.dictionaries(st.sampled_from(["epochs", "trials", "name", "objectives", "seeds", "rungs", "device",
                                              "final", "imgsz", "references", "time_limit", "strategy", "unknown"]),
                             SETTING_VALUES, max_size=3))
def test_stored_settings_are_a_config_or_one_line(edits):
    from ultranas.config import SearchConfig
    from ultranas.rundir import config_from

    stored = {**SearchConfig(trials=1, epochs=1, imgsz=32).to_dict(), **edits}
    try:
        assert isinstance(config_from(stored, "args.yaml"), SearchConfig)
    except UserError as e:
        assert len(str(e).splitlines()) == 1


def _rendered() -> dict:
    from ultranas.space import load_space

    space = load_space("yolo")
    return space.render(space.point("yolo11n"), 2)


RENDERED = _rendered()
MODEL_VALUES = st.none() | st.booleans() | st.integers(-10**9, 10**9) | st.floats() | st.text(max_size=40) \
    | st.lists(st.integers(-5, 5) | st.text(max_size=8), max_size=4)


@settings(max_examples=100, deadline=None)
@given(key=st.sampled_from(["nc", "activation", "scale", "scales", "depth_multiple", "channels", "end2end", "backbone"]),
       layer=st.integers(0, 10), part=st.integers(0, 3), value=MODEL_VALUES, top=st.booleans())
def test_model_dicts_are_accepted_or_refused_in_one_line(key, layer, part, value, top):
    from ultranas.model import check_model_dict

    model = copy.deepcopy(RENDERED)
    if top:
        model[key] = value
    else:
        model["backbone"][layer][part] = value
    try:
        check_model_dict(model, "model")
    except UserError as e:
        assert len(str(e).splitlines()) == 1
