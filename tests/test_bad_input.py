"""Bad input through the real CLI and the Python API: one line naming the problem (``ultranas: error:``), exit 2,
no traceback, and nothing created or changed on disk (a listing and hashes of the whole tmp dir, before and after)."""

from __future__ import annotations

from pathlib import Path

import pytest
from badinput import (
    COCO8,
    NOT_UTF8,
    TINY,
    check,
    cls_pt,
    dataset,
    det_pt,
    model_yaml,
    mutant_pt,
    run_dir,
    snapshot,
    space_file,
    sqlite_file,
    text,
)

from ultranas.errors import UserError
from ultranas.space import load_space


def _val(t, *kv):
    return ["val", f"model={det_pt(t)}", *kv]


BAD_MODULE = "backbone: [[-1, 1, os.system, [1]]]\nhead: []\n"
EVIL_ACT = "__import__('os').system('touch pwned')"

CASES = {
    # data
    "missing data yaml": (lambda t: ["search", "--data", t / "nope.yaml"], "data YAML not found"),
    "malformed data yaml": (lambda t: ["search", "--data", text(t, "d.yaml", "train: [unclosed")], "not valid YAML"),
    "data yaml not utf-8": (lambda t: ["search", "--data", text(t, "d.yaml", NOT_UTF8)], "not valid YAML"),
    "data yaml not a mapping": (lambda t: ["search", "--data", text(t, "d.yaml", "- a\n- b\n")], "must be a mapping"),
    "no images": (lambda t: ["search", "--data", text(t, "d.yaml", "train: images/train\nval: images/val\nnames: [a]\n")],
                  "train images not found"),
    "no labels": (lambda t: ["search", "--data", dataset(t, labels=False)], "labels not found"),
    "class id out of range": (lambda t: ["search", "--data", dataset(t, label_line="7 0.5 0.5 0.2 0.2")], "class id 7"),
    "box out of range": (lambda t: ["search", "--data", dataset(t, label_line="0 1.5 0.5 0.2 0.2")], "outside [0, 1]"),
    "label not numeric": (lambda t: ["search", "--data", dataset(t, label_line="a b c d e")], "is not numeric"),
    "label with 4 values": (lambda t: ["search", "--data", dataset(t, label_line="0 0.5 0.5 0.2")], "has 4 values"),
    "label not utf-8": (lambda t: ["search", "--data", dataset(t, label=NOT_UTF8)], "is not UTF-8"),
    "label is a folder": (lambda t: ["search", "--data", dataset(t, label_dir=True)], "is a folder"),
    "image cannot be decoded": (lambda t: ["search", "--data", dataset(t, image=b"not a jpeg")], "cannot be decoded"),
    "truncated image": (lambda t: ["search", "--data", dataset(t, image=(COCO8 / "images" / "val").glob("*.jpg")
                                                                .__next__().read_bytes()[:2000])], "cannot be decoded"),
    "test split missing": (lambda t: ["search", "--data", dataset(t, test="images/test")], "test images not found"),
    "path not a string": (lambda t: ["search", "--data", dataset(t, path=["a"])], "key 'path'"),
    "names with a gap": (lambda t: ["search", "--data", dataset(t, names={0: "a", 2: "b"})], "without gaps"),
    "class name not a string": (lambda t: ["search", "--data", dataset(t, names=(["a"], "b"))], "plain string"),
    "train is a list": (lambda t: ["search", "--data", dataset(t, train=["images/train"])], "key 'train'"),
    "channels out of range": (lambda t: ["search", "--data", dataset(t, channels=7)], "channels must be 1 or 3"),
    "class count mismatch": (lambda t: ["search", "--data", dataset(t, nc=5)], "nc=5 but 2 names"),
    "val data yaml missing": (lambda t: _val(t, f"data={t / 'nope.yaml'}"), "data YAML not found"),
    "val split absent from data": (lambda t: _val(t, f"data={dataset(t)}", "split=test"), "split=test is not in"),
    # spaces
    "empty space": (lambda t: ["search", "--space", text(t, "s.yaml", "")], "empty"),
    "malformed space": (lambda t: ["search", "--space", text(t, "s.yaml", "blocks: {a: [")], "not valid YAML"),
    "space not utf-8": (lambda t: ["search", "--space", text(t, "s.yaml", NOT_UTF8)], "cannot be read"),
    "unknown module in space": (lambda t: ["search", "--space", space_file(t, lambda r: r["blocks"].update(X=["Evil", ["$c"]]))],
                                "not allowed"),
    "module is a list": (lambda t: ["search", "--space", space_file(t, lambda r: r["blocks"].update(X=[["C2f"], ["$c"]]))],
                         "not allowed"),
    "width out of range": (lambda t: ["search", "--space", space_file(t, lambda r: r["decisions"].update(stem=[3]))],
                           "decisions.stem"),
    "eval bait in space": (lambda t: ["search", "--space", space_file(t, lambda r: r["blocks"].update(
        X=["C2f", ["$c", "__import__('os').system('touch pwned')"]]))], "only numbers"),
    "nan argument in space": (lambda t: ["search", "--space", space_file(t, lambda r: r["blocks"].update(
        X=["C2f", ["$c", float("nan")]]))], "only numbers"),
    "space version not a number": (lambda t: ["search", "--space", space_file(t, lambda r: r.update(version="abc"))],
                                   "key 'version'"),
    "space name missing a value": (lambda t: ["search", "--space", space_file(t, lambda r: r.update(name=None))], "key 'name'"),
    "space points a list": (lambda t: ["search", "--space", space_file(t, lambda r: r.update(points=[1]))], "key 'points'"),
    "head reg_max a string": (lambda t: ["search", "--space", space_file(t, lambda r: r["heads"]["detect"].update(
        reg_max="x"))], "heads.detect.reg_max"),
    "choice is a mapping": (lambda t: ["search", "--space", space_file(t, lambda r: r["decisions"].update(spp=[{"a": 1}]))],
                            "choices are names or numbers"),
    "unknown space key": (lambda t: ["search", "--space", space_file(t, lambda r: r.update(decision={}))],
                          "is not a space key"),
    "unknown space": (lambda t: ["search", "--space", "nosuchspace"], "space not found"),
    # model files
    "eval bait in model yaml": (lambda t: ["predict", f"model={model_yaml(t, activation=EVIL_ACT)}", "source=x.jpg"],
                                "not allowed"),
    "unknown module in model yaml": (lambda t: ["val", f"model={text(t, 'm.yaml', BAD_MODULE)}"], "not an allowed"),
    "model backbone not a list": (lambda t: ["val", f"model={model_yaml(t, backbone=5)}"], "'backbone' must be a list"),
    "model module a list": (lambda t: ["val", f"model={model_yaml(t, row=[-1, 1, ['Conv'], [16, 3, 2]])}"], "not an allowed"),
    "model activation a list": (lambda t: ["val", f"model={model_yaml(t, activation=[1])}"], "not allowed"),
    "model nc a string": (lambda t: ["val", f"model={model_yaml(t, nc='abc')}"], "'nc' must be a positive integer"),
    "model repeats zero": (lambda t: ["val", f"model={model_yaml(t, row=[-1, 0, 'Conv', [16, 3, 2]])}"], "repeats"),
    "model args code": (lambda t: ["val", f"model={model_yaml(t, row=[-1, 1, 'Conv', ['os.system(1)']])}"], "args must be"),
    "model yaml not utf-8": (lambda t: ["val", f"model={text(t, 'm.yaml', NOT_UTF8)}"], "cannot be read"),
    "model yaml is a folder": (lambda t: ["val", f"model={(t / 'f.yaml').mkdir() or t / 'f.yaml'}"], "is a folder"),
    "unsupported model file": (lambda t: ["val", f"model={text(t, 'm.txt', 'x')}"], "unsupported model file"),
    "missing checkpoint": (lambda t: ["info", t / "nope.pt"], "checkpoint not found"),
    "corrupted checkpoint": (lambda t: ["info", text(t, "bad.pt", "garbage")], "cannot be loaded safely"),
    "truncated checkpoint": (lambda t: ["info", text(t, "cut.pt", det_pt(t).read_bytes()[:4096])], "cannot be loaded safely"),
    "non-detection checkpoint": (lambda t: ["info", cls_pt(t)], "not a detection model"),
    # mode arguments
    "export engine without tensorrt": (lambda t: ["export", f"model={det_pt(t)}", "format=engine"], "tensorrt"),
    "unknown export format": (lambda t: ["export", f"model={det_pt(t)}", "format=banana"], "unknown export format"),
    "export format a number": (lambda t: ["export", f"model={det_pt(t)}", "format=5"], "unknown export format"),
    "imgsz not a number": (lambda t: _val(t, "imgsz=abc"), "imgsz must be"),
    "epochs not a number": (lambda t: ["train", f"model={det_pt(t)}", "epochs=abc"], "'epochs=abc' is of invalid type"),
    "unknown mode argument": (lambda t: ["predict", f"model={det_pt(t)}", "source=x.jpg", "foo=1"], "'foo' is not"),
    "conf not a number": (lambda t: ["predict", f"model={det_pt(t)}", f"source={t}", "conf=high"], "conf=high"),
    "mode device unavailable": (lambda t: _val(t, "device=9"), "device '9' is not available"),
    "predict source missing": (lambda t: ["predict", f"model={det_pt(t)}", f"source={t / 'x.jpg'}"], "source"),
    "coco_eval not a bool": (lambda t: _val(t, "coco_eval=maybe"), "coco_eval must be true or false"),
    "unknown split": (lambda t: _val(t, "split=bogus"), "split must be"),
    "argument without =": (lambda t: _val(t, "junk"), "is not key=value"),
    "argument without a name": (lambda t: _val(t, "=5"), "no valid name"),
    "mode without model": (lambda t: ["val", "imgsz=32"], "needs model=PATH"),
    # search flags
    "unknown strategy": (lambda t: ["search", "--strategy", "magic"], "unknown strategy 'magic'"),
    "unknown objective": (lambda t: ["search", "--objectives", "map,beauty"], "unknown objective 'beauty'"),
    "zero trials": (lambda t: ["search", "--trials", "0"], "--trials must be"),
    "negative epochs": (lambda t: ["search", "--epochs", "-3"], "--epochs must be"),
    "non-numeric budget": (lambda t: ["search", "--trials", "many"], "invalid int value"),
    "float trials": (lambda t: ["search", "--trials", "3.5"], "invalid int value"),
    "imgsz not a stride multiple": (lambda t: ["search", "--imgsz", "50"], "multiple of 32"),
    "unwritable output dir": (lambda t: ["search", *TINY, "--project", text(t, "afile", "x") / "runs"],
                              "cannot create the output folder"),
    "loss score without the fast trainer": (lambda t: ["search", "--score", "val_loss"],
                                            "needs --estimator short-train --trainer fast"),
    "unknown calibration proxy": (lambda t: ["calibrate", "--proxy", "short-train:accuracy"], "unknown --proxy"),
    "unknown device": (lambda t: ["search", *TINY, "--device", "7"], "device '7' is not available"),
    "conflicting flags": (lambda t: ["search", "--max-latency", "5", "--latency-le", "yolo11n"], "conflict"),
    "resume without a run": (lambda t: ["search", "--resume", t, "--trials", "3"], "no args.yaml there"),
    "resume with other settings": (lambda t: ["search", "--resume", run_dir(t), "--epochs", "9"],
                                   "--epochs 9 conflicts with the run's 1"),
    "unknown latency target": (lambda t: ["search", "--latency-target", "abacus"], "abacus"),
    "int8 drop without training": (lambda t: ["search", "--objectives", "map,latency,int8_drop", "--estimator",
                                              "zero-cost"], "int8_drop objective needs a trained model"),
    "unknown reference point": (lambda t: ["space", "render", "yolo", "--point", "yolo99z"], "no point 'yolo99z'"),
    "imgsz too large": (lambda t: ["search", "--imgsz", "65536"], "--imgsz"),
    "epochs in exponent form": (lambda t: ["search", "--epochs", "1e9"], "--epochs"),
    "max latency nan": (lambda t: ["search", "--max-latency", "nan"], "--max-latency"),
    "eta of one": (lambda t: ["search", "--eta", "1"], "--eta"),
    "negative rungs": (lambda t: ["search", "--halving", "--rungs=-1,1"], "--rungs"),
    "supernet with a training-loss score": (lambda t: ["search", "--estimator", "supernet", "--score", "loss_drop"],
                                            "scores by map or val_loss"),
    "inherited final weights without a supernet": (lambda t: ["search", "--final-init", "supernet"],
                                                   "needs --estimator supernet"),
    # --pretrained: checkpoints of the space's points only, read without running code from them
    "pretrained checkpoint missing": (lambda t: ["search", "--pretrained", t / "yolo11n.pt"], "checkpoint not found"),
    "pretrained classification model": (lambda t: ["search", "--pretrained", cls_pt(t)], "not a detection model"),
    "pretrained design that is no point": (lambda t: ["search", "--pretrained", mutant_pt(t)],
                                           "none of its points (the nearest: yolo11n)"),
    "pretrained with zero-cost proxies": (lambda t: ["search", "--estimator", "zero-cost", "--pretrained", det_pt(t)],
                                          "--pretrained needs a training estimator"),
    # a setting nothing in the configuration reads is refused, not silently ignored
    "proxy epochs with zero-cost": (lambda t: ["search", "--estimator", "zero-cost", "--epochs", "9"],
                                    "--epochs is not read here: only --strategy darts, --estimator short-train or "
                                    "--estimator supernet read it"),
    "zero-cost proxy with short-train": (lambda t: ["search", "--proxy", "synflow"], "--proxy is not read here"),
    "zero-cost proxy overriding the supernet score": (lambda t: ["search", "--estimator", "supernet", "--proxy",
                                                                 "val_loss"], "--proxy is not read here"),
    "single class with zero-cost": (lambda t: ["search", "--estimator", "zero-cost", "--single-cls"],
                                    "--single-cls is not read here"),
    "re-rank epochs without re-rank": (lambda t: ["search", "--rerank-epochs", "4"], "--rerank-epochs is not read here"),
    "band floor without bands": (lambda t: ["search", "--focus", "front", "--band-floor", "0.5"],
                                 "--band-floor is not read here"),
    "name escaping the project": (lambda t: ["search", "--name", "../../x"], "--name"),
    "empty name": (lambda t: ["search", "--name", ""], "--name"),
    # storage
    "worker sqlite file missing": (lambda t: ["worker", "--storage", f"sqlite:///{t / 'missing.db'}", "--name", "x"],
                                   "no SQLite study database"),
    "worker journal missing": (lambda t: ["worker", "--storage", f"journal:{t / 'missing.log'}", "--name", "x"],
                               "no journal file"),
    "worker empty sqlite file": (lambda t: ["worker", "--storage", f"sqlite:///{text(t, 'e.db', b'')}", "--name", "x"],
                                 "is empty"),
    "worker file not sqlite": (lambda t: ["worker", "--storage", f"sqlite:///{text(t, 'g.db', 'garbage' * 9)}",
                                          "--name", "x"], "not an SQLite database"),
    "worker sqlite without a study": (lambda t: ["worker", "--storage", f"sqlite:///{sqlite_file(t)}", "--name", "x"],
                                      "holds no optuna study"),
    "worker in-memory sqlite": (lambda t: ["worker", "--storage", "sqlite://", "--name", "x"], "in-memory"),
    "worker unreachable postgres": (lambda t: ["worker", "--storage", "postgres://nas@127.0.0.1:1/x", "--name", "x"],
                                    "cannot open the study storage"),
    "worker unknown storage scheme": (lambda t: ["worker", "--storage", "nosuchdb://x", "--name", "x"],
                                      "cannot open the study storage"),
}
ENGINE_CASES = {  # refused by the engine before anything in the project or run is touched
    "unknown reference in --references": (lambda t: ["search", *TINY, "--references", "yolo11x"], "yolo11x"),
    "unreachable storage": (lambda t: ["search", *TINY, "--storage", "postgresql://nas@127.0.0.1:1/x"],
                            "cannot open the study storage"),
    "resume with another data": (lambda t: ["search", "--resume", run_dir(t), "--data", dataset(t)],
                                 "conflicts with the run's 'coco8.yaml'"),
    "empty study.db under resume": (lambda t: ["search", "--resume", run_dir(t, b"")], "study"),
    "corrupted study database": (lambda t: ["search", "--resume", run_dir(t)], "cannot be read as an optuna study"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input(case, tmp_path, cli_forked):
    check(tmp_path, cli_forked, *CASES[case])


@pytest.mark.parametrize("case", sorted(ENGINE_CASES))
def test_bad_input_engine(case, tmp_path, cli_forked):
    check(tmp_path, cli_forked, *ENGINE_CASES[case])


def test_the_console_entry_itself_answers_bad_input_in_one_line(tmp_path, run_cli):
    """The cases above run forked from an imported server; this one goes through ``python -m ultranas`` itself."""
    check(tmp_path, run_cli, *CASES["missing data yaml"])


def _search(**kw):
    from ultranas import search

    return search(progress=False, **kw)


def _nas(t: Path):
    from ultranas import NAS

    return NAS(str(det_pt(t)))


API = {  # name: (make the inputs, the call, expected); the snapshot is taken between the two
    "search trials as text": (lambda t: None, lambda x, t: _search(trials="3", project=str(t / "runs")),
                              "--trials must be"),
    "search unknown setting": (lambda t: None, lambda x, t: _search(colour="red", project=str(t / "runs")),
                               "unknown search setting"),
    "search bad image": (lambda t: dataset(t, image=b"x"), lambda d, t: _search(data=str(d), project=str(t / "runs")),
                         "cannot be decoded"),
    "NAS unsupported file": (lambda t: text(t, "m.txt", "x"), lambda m, t: __import__("ultranas").NAS(str(m)),
                             "unsupported model file"),
    "NAS val missing data": (_nas, lambda m, t: m.val(data=str(t / "nope.yaml")), "data YAML not found"),
    "NAS val unknown argument": (_nas, lambda m, t: m.val(colour=1), "'colour' is not"),
    "NAS val split missing": (lambda t: (_nas(t), dataset(t)), lambda x, t: x[0].val(data=str(x[1]), split="test"),
                              "split=test is not in"),
    "NAS train bad label": (lambda t: (_nas(t), dataset(t, label=NOT_UTF8)),
                            lambda x, t: x[0].train(data=str(x[1]), project=str(t / "runs")), "is not UTF-8"),
    "NAS train epochs as text": (_nas, lambda m, t: m.train(epochs="many", project=str(t / "runs")),
                                 "'epochs=many' is of invalid type"),
    "NAS export unknown format": (_nas, lambda m, t: m.export(format="banana"), "unknown export format"),
    "NAS predict missing source": (_nas, lambda m, t: m.predict(str(t / "x.jpg")), "source"),
    "load_space bad value": (lambda t: space_file(t, lambda r: r.update(version=[1])), lambda s, t: load_space(s),
                             "key 'version'"),
    "safe_data_yaml missing test": (lambda t: dataset(t, test="images/test"),
                                    lambda d, t: __import__("ultranas.data").data.safe_data_yaml(d, t / "runs"),
                                    "test images not found"),
    "worker without its sqlite file": (lambda t: None, lambda x, t: __import__("ultranas.distributed").distributed.worker(
        f"sqlite:///{t / 'missing.db'}", "x"), "no SQLite study database"),
}


@pytest.mark.parametrize("case", sorted(API))
def test_bad_input_python_api(case, tmp_path, monkeypatch):
    make, call, expected = API[case]
    monkeypatch.chdir(tmp_path)
    made = make(tmp_path)
    before = snapshot(tmp_path)
    with pytest.raises(UserError) as info:
        call(made, tmp_path)
    message = str(info.value)
    assert expected in message and len(message.splitlines()) == 1, message
    assert snapshot(tmp_path) == before
