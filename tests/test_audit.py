"""The data audit finds what is planted: rows copied across the splits, flipped labels, a
leaked column; near-duplicate images and texts; and the command writes its findings."""
import json

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_digits
from typer.testing import CliRunner

from scaletrain.audit import audit_images, audit_table
from scaletrain.audit.duplicates import near_text_pairs
from scaletrain.cli import app
from scaletrain.config import Config
from scaletrain.fitting.cv import out_of_fold_proba
from scaletrain.modalities import load_source


def finding(findings: list[dict], check: str) -> dict:
    found = [f for f in findings if f["check"].startswith(check)]
    assert found, [f["check"] for f in findings]
    return found[0]


@pytest.fixture(scope="module")
def planted():
    """Digits as a table (1,797 real rows): 1% of rows copied into the test split, 2% of labels
    flipped, and a column that is the label plus noise."""
    rng = np.random.default_rng(0)
    frame = load_digits(as_frame=True).frame.rename(columns={"target": "y"})
    frame["y"] = frame["y"].map(lambda d: f"d{d}")
    frame["leak"] = frame["y"].str[1:].astype(float) + rng.normal(0, 0.05, len(frame))  # before the copies: copied too
    n = len(frame)
    split = rng.choice(np.array(["train", "val", "test"], dtype=object), n, p=[0.7, 0.15, 0.15])
    originals = rng.choice(np.flatnonzero(split == "train"), n // 100, replace=False)
    copies = frame.iloc[originals]
    frame = pd.concat([frame, copies], ignore_index=True)
    split = np.concatenate([split, np.full(len(copies), "test", dtype=object)])
    copied = np.arange(n, len(frame))
    flipped = rng.choice(np.flatnonzero(split[:n] == "train"), int(0.02 * n), replace=False)
    frame.loc[flipped, "y"] = [f"d{(int(v[1:]) + rng.integers(1, 10)) % 10}" for v in frame.loc[flipped, "y"]]
    return frame, split, copied, flipped


def test_the_audit_finds_the_copies_the_leak_and_the_flipped_labels(planted):
    frame, split, copied, flipped = planted
    features = frame.drop(columns="leak")  # the model behind the label check must not read the leak
    # one named model, not zero-config's candidates in each fold: the audit is under test, not the choice
    proba, classes = out_of_fold_proba(load_source(features), Config().with_values(
        {"data.target": "y", "train.epochs": 20, "model.name": "mlp"}), k=3)
    findings = audit_table(frame, "y", split, proba, classes)
    leaked_rows = set(finding(findings, "exact duplicates across splits")["rows"])
    assert len(leaked_rows & set(copied)) / len(copied) >= 0.95
    assert finding(findings, "target leaked")["columns"] == ["leak"]
    suspects = [s["row"] for s in finding(findings, "likely label errors")["suspects"]]
    assert len(suspects) <= max(10, int(0.05 * len(frame)))
    assert len(set(suspects) & set(flipped)) / len(flipped) >= 0.5


def test_near_duplicate_images_and_texts_are_found():
    rng = np.random.default_rng(1)
    digits = load_digits()
    images = (digits.images[:300] * 16).clip(0, 255).astype(np.uint8)
    near = np.clip(images[:10].astype(int) + rng.integers(-6, 7, images[:10].shape), 0, 255).astype(np.uint8)
    split = np.array(["train"] * 300 + ["test"] * 10, dtype=object)
    found = audit_images(np.concatenate([images, near]), None, split)
    rows = set(finding(found, "near-duplicate images")["rows"])
    assert len(rows & set(range(300, 310))) >= 9
    story = ("the {w} market closed higher on tuesday after a strong day of trading in london and new york, "
             "as investors weighed the central bank's latest remarks on interest rates and the outlook for growth "
             "in the second half of the year, while analysts said the gains were broad and volumes above average")
    texts = [story.format(w=w) for w in ("stock", "bond", "oil", "gold")]
    texts += ["an entirely different story about the league cup final, won on penalties after a goalless draw"]
    texts.append(texts[0].replace("tuesday", "wednesday"))  # one word changed of 50
    assert (0, 5) in near_text_pairs(texts)
    assert not any(4 in pair for pair in near_text_pairs(texts))


def test_the_audit_command_writes_its_findings(tmp_path):
    frame = load_digits(as_frame=True).frame.rename(columns={"target": "y"}).iloc[:400]
    frame = pd.concat([frame, frame.iloc[:40]], ignore_index=True)  # copies: some cross the splits
    frame.to_csv(tmp_path / "rows.csv", index=False)
    result = CliRunner().invoke(app, ["audit", str(tmp_path / "rows.csv"), "--target", "y", "--folds", "0",
                                      "--out", str(tmp_path / "a")])
    assert result.exit_code == 0, result.output
    saved = json.loads((tmp_path / "a" / "audit.json").read_text())
    assert any(f["check"].startswith("exact duplicates") for f in saved["findings"])
    assert "Data audit" in (tmp_path / "a" / "audit.html").read_text()


def test_every_run_reports_rows_repeated_across_its_splits(tmp_path):
    import scaletrain
    from tests.test_explain import planted as planted_table

    frame = planted_table(600)
    frame = pd.concat([frame, frame.iloc[:150]], ignore_index=True)  # a fifth of the rows twice
    run = scaletrain.fit(frame, "y", out=tmp_path / "run", model="mlp", epochs=3)
    leak = finding(run.metrics["audit"], "identical encoded rows across splits")
    assert leak["count"] >= 20 and leak["severity"] == "high"
    assert "Data audit" in (tmp_path / "run" / "report.html").read_text()
