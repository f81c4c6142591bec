"""Out-of-range arguments of every sub-command (calibrate, space, data, predict, val, train, export, info): one line
naming the flag, exit 2, no traceback, nothing written (see ``badinput.check``); the key=value parser of the modes is
fuzzed in-process (random argument strings are refused with a ``UserError`` or come out typed and in range)."""

from __future__ import annotations

import functools
import io
import math
from pathlib import Path

import pytest
import torch
from badinput import check, text
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ultranas import checks
from ultranas.cli_modes import parse_mode_args
from ultranas.errors import UserError
from ultranas.space import load_space


@functools.cache
def _checkpoint_bytes(**extra) -> bytes:
    """A yolo11n detector checkpoint (2 classes) with ``extra`` entries, built once per test process."""
    from ultranas.ultra import build_model

    space = load_space("yolo")
    buf = io.BytesIO()
    torch.save({"model": build_model(space.render(space.point("yolo11n"), 2)), **extra}, buf)
    return buf.getvalue()


def _pt(t: Path, name: str = "det.pt", **extra) -> Path:
    path = t / name
    path.write_bytes(_checkpoint_bytes(**extra))
    return path


def _mode(command: str, *kv: str):
    """``ultranas <command> model=<a real checkpoint> kv...``."""
    return lambda t: [command, f"model={_pt(t)}", *kv]


def _calib(*flags: str):
    return lambda t: ["calibrate", "--project", t / "runs", "--estimators", "zero-cost:params", *flags]


def _space(action: str, *flags: str):
    return lambda t: ["space", action, "yolo", *flags]


BOMB = "[&a [1,1,1,1,1,1,1,1,1,1], " + ", ".join(f"&{b} [{', '.join([f'*{a}'] * 10)}]" for a, b in zip("abcde", "bcdef")) \
    + "]"
DEEP_JSON = "[" * 20_000 + "]" * 20_000

CASES = {
    # calibrate: every flag range-checked before the data, the space or a run folder is touched
    "calibrate band negative": (_calib("--band", "-1"), "--band must be in (0, 1]"),
    "calibrate band zero": (_calib("--band", "0"), "--band must be in (0, 1]"),
    "calibrate band nan": (_calib("--band", "nan"), "--band must be a finite number"),
    "calibrate band samples negative": (_calib("--band-samples", "-4"), "--band-samples must be"),
    "calibrate band samples over n": (_calib("--n", "3", "--band-samples", "9"), "--band-samples must be"),
    "calibrate unknown band point": (_calib("--band-point", "nope", "--band-samples", "4"), "--band-point 'nope' is not a point"),
    "calibrate too few designs": (_calib("--n", "2"), "--n must be an integer in [3"),
    "calibrate too many designs": (_calib("--n", "99999999"), "--n must be"),
    "calibrate zero reference epochs": (_calib("--reference-epochs", "0"), "--reference-epochs must be"),
    "calibrate negative proxy epochs": (_calib("--proxy-epochs", "-1"), "--proxy-epochs must be"),
    "calibrate imgsz off stride": (_calib("--imgsz", "50"), "multiple of 32"),
    "calibrate imgsz too large": (_calib("--imgsz", "65536"), "--imgsz must be"),
    "calibrate proxy imgsz too small": (_calib("--proxy-imgsz", "16"), "--proxy-imgsz must be"),
    "calibrate zero batch": (_calib("--batch", "0"), "--batch must be"),
    "calibrate seeds not numbers": (_calib("--seeds", "a,b"), "--seeds must be a comma list"),
    "calibrate seed twice": (_calib("--seeds", "0,0"), "--seeds has a seed twice"),
    "calibrate negative seed": (_calib("--seed", "-5"), "--seed must be"),
    "calibrate name escaping the project": (_calib("--name", "../../x"), "--name must be a plain folder name"),
    "calibrate absolute name": (lambda t: [*_calib()(t), "--name", t / "x"], "--name must be a plain folder name"),
    "calibrate empty name": (_calib("--name", ""), "--name"),
    "calibrate device garbage": (_calib("--device", "gpu!"), "unknown device"),
    "calibrate reference cache a folder": (lambda t: [*_calib()(t), "--reference-cache", t], "is a folder"),
    "calibrate unknown estimator": (_calib("--estimators", "magic"), "unknown --estimators 'magic'"),
    # space
    "space render zero classes": (_space("render", "--point", "yolo11n", "--nc", "0"), "--nc must be"),
    "space render too many classes": (_space("render", "--point", "yolo11n", "--nc", "10001"), "--nc must be"),
    "space sample negative count": (_space("sample", "--n", "-1"), "--n must be"),
    "space sample zero count": (_space("sample", "--n", "0"), "--n must be"),
    "space sample negative seed": (_space("sample", "--seed", "-1"), "--seed must be"),
    "space show with a bad count": (_space("show", "--n", "0"), "--n must be"),
    "space render point and genotype": (_space("render", "--point", "yolo11n", "--genotype", "{}"), "not both"),
    "space render genotype nested deeply": (_space("render", "--genotype", DEEP_JSON), "nested too deeply"),
    "space render genotype not an object": (_space("render", "--genotype", "[1]"), "must be a JSON object"),
    "space render genotype incomplete": (_space("render", "--genotype", '{"stem": [1]}'), "is not a design of space"),
    "space render output a folder": (lambda t: [*_space("render", "--point", "yolo11n")(t), "-o", t], "is a folder"),
    # data
    "data subset zero images": (lambda t: ["data", "coco-subset", "--coco-root", t, "--out", t / "o", "--n", "0"],
                                "--n must be"),
    # predict / val / train / export: checked before the model is loaded
    "imgsz negative": (_mode("val", "imgsz=-32"), "imgsz must be"),
    "imgsz zero": (_mode("predict", "imgsz=0"), "imgsz must be"),
    "imgsz exponent form": (_mode("predict", "imgsz=1e9"), "imgsz must be"),
    "imgsz too large for a mode": (_mode("val", "imgsz=20000"), "imgsz must be"),
    "imgsz three sides": (_mode("export", "imgsz=[64,64,64]"), "imgsz must be"),
    "imgsz infinite": (_mode("val", "imgsz=.inf"), "imgsz must be a finite number"),
    "imgsz alias bomb": (_mode("val", f"imgsz={BOMB}"), "nodes"),
    "batch zero": (_mode("val", "batch=0"), "batch must be"),
    "batch autobatch outside train": (_mode("val", "batch=-1"), "batch must be"),
    "batch memory share outside train": (_mode("export", "batch=0.5"), "batch must be"),
    "train batch zero": (_mode("train", "batch=0"), "batch must be"),
    "conf above one": (_mode("predict", "conf=2"), "conf"),
    "conf nan": (_mode("predict", "conf=.nan"), "conf must be a finite number"),
    "conf a mapping": (_mode("predict", "conf={a: 1}"), "not a mapping"),
    "iou negative": (_mode("val", "iou=-1"), "iou"),
    "half not a bool": (_mode("val", "half=maybe"), "half must be true or false"),
    "max_det zero": (_mode("predict", "max_det=0"), "max_det"),
    "epochs negative": (_mode("train", "epochs=-1"), "epochs"),
    "epochs exponent form": (_mode("train", "epochs=1e9"), "epochs must be an integer in [1, 10,000]"),
    "workers negative": (_mode("train", "workers=-1"), "workers must be"),
    "loss gain negative": (_mode("train", "box=-1"), "box must be a non-negative number"),
    "learning rate nan": (_mode("train", "lr0=.nan"), "lr0 must be a finite number"),
    "device garbage": (_mode("val", "device=gpu!"), "unknown device"),
    "empty format": (_mode("export", "format="), "has no value"),
    "empty split": (_mode("val", "split="), "has no value"),
    "nested class list": (_mode("val", "classes=[0,[1]]"), "flat list"),
    "value over two lines": (_mode("predict", "project=a\nb"), "one line"),
    "run name escaping the project": (_mode("train", "name=../../x"), "name must be a plain folder name"),
    "coco max_dets without coco_eval": (_mode("predict", "max_dets=3"), "coco_eval=true"),
    "huge hex number": (_mode("val", "max_det=0x" + "f" * 200), "too large a number"),
    # info
    "info of a yaml": (lambda t: ["info", text(t, "m.yaml", "nc: 2\n")], "not a .pt checkpoint"),
    "info with an extra argument": (lambda t: ["info", _pt(t), "imgsz=32"], "unrecognized arguments"),
    "info of a damaged ultranas entry": (lambda t: ["info", _pt(t, "s.pt", ultranas="text")], "ultranas"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_argument(case, tmp_path, cli_forked):
    check(tmp_path, cli_forked, *CASES[case], timeout=120, mem_mb=400)


def test_the_checks_name_the_flag_in_one_line():
    """The shared rules in-process, as search, calibrate and the Python API meet them."""
    from ultranas.config import SearchConfig
    from ultranas.estimation.calibrate import calibrate

    for call, expected in ((lambda: SearchConfig(seed=-1).validate(), "--seed must be"),
                           (lambda: SearchConfig(name="a/../..").validate(), "--name"),
                           (lambda: SearchConfig(fraction=float("nan")).validate(), "--fraction must be a finite"),
                           (lambda: calibrate(band=float("inf")), "--band must be a finite number"),
                           (lambda: calibrate(seeds=[0, -1]), "--seeds must be non-negative"),
                           (lambda: checks.inside("--out", "/tmp/a/../../etc", "/tmp/a"), "leads outside"),
                           (lambda: checks.stride_size("--imgsz", True), "--imgsz must be an integer")):
        with pytest.raises(UserError, match=expected.replace("(", r"\(").replace("[", r"\[")) as info:
            call()
        assert len(str(info.value).splitlines()) == 1


# -- the key=value parser, fuzzed ------------------------------------------------------------------------------------
KEYS = ("imgsz", "batch", "conf", "iou", "epochs", "workers", "max_det", "half", "save", "split", "device", "name",
        "format", "fraction", "classes", "lr0", "box", "save_period", "source", "coco_eval", "max_dets", "project")
VALUES = ("-1", "0", "1", "32", "100", "640", "1e9", "1e400", ".nan", ".inf", "-.inf", "nan", "0.5", "2", "true",
          "maybe", "yes", "null", "~", "", "[1,2,3]", "[32, 64]", "[0,[1]]", "{a: 1}", "&a [*a]", BOMB, "!!binary aGk=",
          "!!python/object:os.system x", "a\nb", "0x" + "f" * 40, "1:30", "cpu", "cuda:0", "0,1", "../x", "val")


def _accepted(command: str, args: dict) -> None:
    """What a value that passed may be: plain, finite, typed and within its range."""
    ints = {"epochs": (1, 10_000), "workers": (0, 256), "max_det": (1, 100_000), "save_period": (-1, 10_000)}
    for key, value in args.items():
        flat = value if isinstance(value, list) else [value]
        assert isinstance(value, list) <= (key in checks.LIST_KEYS), (key, value)
        for v in flat:
            assert v is None or isinstance(v, (str, int, float, bool)), (key, value)
            assert not isinstance(v, float) or math.isfinite(v), (key, value)
            assert not isinstance(v, str) or (v.isprintable() and len(v) <= 4096), (key, value)
        if key == "imgsz":
            assert all(checks.is_int(v) and 1 <= v <= checks.MAX_PIXELS for v in flat) and len(flat) <= 2
        elif key == "batch":
            assert (checks.is_int(value) and 1 <= value <= 4096) or (command == "train" and (
                value == -1 or (isinstance(value, float) and 0 < value < 1))), value
        elif key in ints:
            assert checks.is_int(value) and ints[key][0] <= value <= ints[key][1], (key, value)
        elif key in ("conf", "iou", "lr0"):  # conf=null is Ultralytics' default (a threshold per mode)
            assert (key == "conf" and value is None) or (checks.is_number(value) and 0 <= value <= 1), (key, value)
        elif key in ("half", "save"):
            assert isinstance(value, bool), (key, value)
        elif key == "box":
            assert checks.is_number(value) and value >= 0
        elif key == "split":
            assert value in ("train", "val", "test")
        elif key == "name":
            assert value is None or (checks.FOLDER_NAME.fullmatch(value) and ".." not in value)


_item = st.one_of(
    st.tuples(st.sampled_from(KEYS), st.one_of(st.sampled_from(VALUES), st.text(max_size=24),
                                                st.floats().map(repr), st.integers().map(str)))
    .map(lambda kv: f"{kv[0]}={kv[1]}"),
    st.sampled_from(KEYS).map(lambda k: f"--{k}"),
    st.text(max_size=24),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(command=st.sampled_from(("predict", "val", "train", "export")), items=st.lists(_item, max_size=6))
def test_key_value_parser_refuses_in_one_line_or_returns_typed_values(command, items):
    try:
        model, args, own = parse_mode_args(command, ["model=found_n.pt", *items])
    except UserError as e:
        assert str(e) and len(str(e).splitlines()) == 1, str(e)
        return
    assert model == "found_n.pt"
    _accepted(command, args)
    assert isinstance(own.get("coco_eval", False), bool) and checks.is_int(own.get("max_dets", 1))
