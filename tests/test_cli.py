"""The CLI as a user runs it: real processes, exit codes, one-line errors. The trained run comes
from a fresh interpreter, as a user starts one; the other commands are processes forked warm
(tests/warm_cli.py), and the tests of what a cold start imports exec their own."""
import json
import subprocess
import sys

import pandas as pd
import pytest

import scaletrain
from scaletrain.errors import ConfigError
from tests import warm_cli


def cli(*args, cwd=None):
    return warm_cli.run(*args, cwd=cwd)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, ):
    import numpy as np

    folder = tmp_path_factory.mktemp("cli")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(240, 3))
    frame = pd.DataFrame(x, columns=["a", "b", "c"]).assign(kind=np.where(x[:, 0] + x[:, 1] > 0, "up", "down"))
    frame.iloc[:180].to_csv(folder / "train.csv", index=False)
    frame.iloc[180:].to_csv(folder / "test.csv", index=False)
    result = subprocess.run([sys.executable, "-m", "scaletrain", "train", folder / "train.csv", "--target", "kind",
                             "--test", folder / "test.csv", "--out", folder / "run", "--set", "train.epochs=15", "--quiet"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return folder, result


def test_train_prints_metrics_and_report_path(trained):
    folder, result = trained
    assert "accuracy" in result.stdout and "report.html" in result.stdout
    assert (folder / "run" / "report.html").is_file()


def test_predict_writes_rows_with_predictions(trained):
    folder, _ = trained
    result = cli("predict", folder / "run", folder / "test.csv", "--output", folder / "pred.csv")
    assert result.returncode == 0, result.stderr
    pred = pd.read_csv(folder / "pred.csv")
    assert {"a", "b", "c", "kind", "prediction", "proba_down", "proba_up"} <= set(pred.columns)
    metrics = json.loads((folder / "run" / "metrics.json").read_text())
    assert (pred["prediction"] == pred["kind"]).mean() == metrics["test"]["accuracy"]


def test_evaluate_json_matches_metrics_json(trained):
    folder, _ = trained
    result = cli("evaluate", folder / "run", folder / "test.csv", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == json.loads((folder / "run" / "metrics.json").read_text())["test"]


def test_info_describes_the_run(trained):
    folder, _ = trained
    result = cli("info", folder / "run")
    assert result.returncode == 0 and "binary" in result.stdout and "kind" in result.stdout


@pytest.mark.parametrize("args,needle", [
    (["train", "{f}/train.csv", "--target", "knd"], "did you mean 'kind'"),
    (["train", "{f}/nope.csv", "--target", "kind"], "does not exist"),
    (["train", "{f}/empty.csv", "--target", "kind"], "empty"),
    (["train", "{f}/one.csv", "--target", "kind"], "single class"),
    (["train", "{f}/train.csv", "--target", "kind", "--set", "train.lrr=1"], "did you mean 'train.lr'"),
    (["predict", "{f}/no_run", "{f}/test.csv"], "does not exist"),
])
def test_bad_input_is_one_line_and_exit_code_2(trained, args, needle):
    folder, _ = trained
    (folder / "empty.csv").write_text("")
    pd.DataFrame({"a": [1, 2, 3], "kind": ["x", "x", "x"]}).to_csv(folder / "one.csv", index=False)
    result = cli(*[a.format(f=folder) for a in args])
    assert result.returncode == 2
    assert needle in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_missing_data_path_is_refused_before_torch_loads(tmp_path):
    code = ("import sys\nfrom scaletrain.cli import main\nsys.argv = ['scaletrain', 'train', sys.argv[1], '--target', 'y']\n"
            "try:\n    main()\nexcept SystemExit as end:\n    print(end.code, 'torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "nope.csv")], capture_output=True, text=True,
                          timeout=120)
    assert done.stdout.split() == ["2", "False"] and "does not exist; check the path" in done.stderr


def test_predict_loads_a_run_without_scikit_learn_matplotlib_or_torchs_compiler(trained, tmp_path):
    """Loading a run and predicting computes no metric, draws nothing and compiles nothing
    (the run's shape check builds the model on the meta device: no initialisation there)."""
    folder, _ = trained
    code = ("import sys\nfrom scaletrain.cli import main\nsys.argv = ['scaletrain', 'predict', *sys.argv[1:]]\n"
            "try:\n    main()\nexcept SystemExit as end:\n    assert not end.code, end.code\n"
            "print(sorted(m for m in ('sklearn', 'scipy', 'matplotlib', 'torch._dynamo') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code, str(folder / "run"), str(folder / "test.csv"), "--output",
                           str(tmp_path / "p.csv")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]" and len(pd.read_csv(tmp_path / "p.csv")) == 60


def test_debug_shows_the_traceback(trained):
    folder, _ = trained
    result = cli("train", folder / "train.csv", "--target", "knd", "--debug")
    assert result.returncode != 0 and "Traceback" in result.stderr


def test_prepare_then_train_from_shards(trained):
    folder, _ = trained
    result = cli("prepare", folder / "train.csv", folder / "test.csv", "--out", folder / "shards", "--target", "kind",
                 "--shard-size", "1MB", "--quiet")
    assert result.returncode == 0, result.stderr
    assert "2 file(s)" in result.stdout and (folder / "shards" / "manifest.json").is_file()
    again = cli("prepare", folder / "train.csv", "--out", folder / "shards", "--target", "kind")
    assert again.returncode == 2 and "already exists" in again.stderr and len(again.stderr.strip().splitlines()) == 1
    trained_run = cli("train", folder / "shards", "--out", folder / "streamed", "--set", "train.epochs=3", "--quiet")
    assert trained_run.returncode == 0, trained_run.stderr
    assert "accuracy" in trained_run.stdout and "stream" in trained_run.stderr  # the note says where rows came from
    bad_size = cli("prepare", folder / "train.csv", "--out", folder / "other", "--shard-size", "lots")
    assert bad_size.returncode == 2 and "256MB" in bad_size.stderr


def test_the_textbook_line_trains_on_every_row_and_recovers_w_and_b(tmp_path):
    """y = 2x on x = 1, 2, 3: too small to split, so every row trains (no early stopping) and
    the metrics say they are the training rows'; gradient descent finds w = 2, b = 0."""
    (tmp_path / "line.csv").write_text("x,y\n1,2\n2,4\n3,6\n")
    result = cli("train", tmp_path / "line.csv", "--target", "y", "--out", tmp_path / "run", "--quiet",
                 "--set", "data.val_fraction=0", "--set", "data.test_fraction=0", "--set", "train.optimizer=gd")
    assert result.returncode == 0, result.stderr
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["task"] == "regression" and metrics["model"] == "linear" and metrics["stopped_by"] == "epochs"
    assert metrics["train"]["r2"] > 0.999 and not metrics["val"] and not metrics["test"]
    assert "train" in result.stdout and any("training rows" in n for n in metrics["notes"])
    low, high = scaletrain.load(tmp_path / "run").predict(pd.DataFrame({"x": [1.0, 3.0]}))["prediction"]
    w = (high - low) / 2
    assert abs(w - 2) < 0.01 and abs(low - w) < 0.01  # b = f(1) - w


def test_early_stopping_without_validation_rows_is_refused_with_what_to_do():
    line = pd.DataFrame({"x": [1.0, 2.0, 3.0], "y": [2.0, 4.0, 6.0]})
    with pytest.raises(ConfigError, match="early_stopping needs validation rows; set data.val_fraction above 0"):
        scaletrain.fit(line, "y", out=None, sets=["data.val_fraction=0", "data.test_fraction=0",
                                                  "train.early_stopping=5"])


def prepare_in_a_fresh_interpreter(table, shards, target: str) -> tuple[str, str]:
    """Run `scaletrain prepare` in a new interpreter; return its output (on one line) and which
    of torch and scikit-learn it imported."""
    code = ("import sys; from typer.testing import CliRunner; from scaletrain.cli import app; "
            f"r = CliRunner().invoke(app, ['prepare', {str(table)!r}, '--out', {str(shards)!r}, "
            f"'--target', {target!r}, '--quiet']); assert r.exit_code == 0, r.output; "
            "print(' '.join(r.output.split())); print(sorted(m for m in ('torch', 'sklearn') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    said, imported = done.stdout.strip().splitlines()
    return said, imported


def test_prepare_imports_neither_torch_nor_scikit_learn(tmp_path):
    """`prepare` is timed against a bare pyarrow read: importing torch would cost it ~2 s a run."""
    (tmp_path / "t.csv").write_text("a,b,y\n1,2,x\n3,4,z\n5,6,x\n7,8,z\n")
    assert prepare_in_a_fresh_interpreter(tmp_path / "t.csv", tmp_path / "s", "y")[1] == "[]"
