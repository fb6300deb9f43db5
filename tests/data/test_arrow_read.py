"""prepare's Arrow reader gives exactly what the pandas reader gives, and hands over to it."""
import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

import scaletrain.modalities.table.arrow_read as arrow_read
import scaletrain.modalities.table.shards as shards
from scaletrain.modalities import prepare_shards

ROWS = 4000


def mixed_table(n: int = ROWS) -> pd.DataFrame:
    """Every column kind the Arrow reader types itself, with gaps."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=n)
    frame = pd.DataFrame({
        "id": np.arange(n, dtype=float),
        "x": np.where(rng.random(n) < 0.1, np.nan, np.round(x, 5)),
        "count": rng.integers(0, 50, n),
        "zone": rng.integers(100, 130, n),                                       # integer categories
        "colour": rng.choice(["red", "green", "blue", "NA", ""], n),             # text with pandas' gaps
        "member": rng.choice(["yes", "no", "Yes"], n),                           # true-words
        "paid": rng.choice([True, False, None], n),                              # booleans with gaps
        "bit": rng.integers(0, 2, n),                                            # 0/1 booleans
        "note": [" ".join(rng.choice(["fits", "well", "too", "small", "soft", ""], 4)).strip() for _ in range(n)],
    })
    frame["y"] = np.where(x + (frame["colour"] == "red") > 0.2, 1, 0)
    return frame


def prepared(tmp_path, name: str, sources: list[str], fast: bool, monkeypatch) -> tuple[dict, pd.DataFrame]:
    """Prepare, with the Arrow reader allowed or not; return the manifest and every shard row."""
    with monkeypatch.context() as patch:
        if not fast:
            patch.setattr(shards, "read_types", lambda *args: None)
        else:  # the pandas canonicalizer must not run: the Arrow reader did the work
            patch.setattr(shards, "canonical", lambda *args: pytest.fail("pandas path used"))
        out = tmp_path / name
        manifest = prepare_shards(sources, str(out), target="y", roles={"id": "numeric", "zone": "categorical", "note": "text"},
                                  chunk_rows=700,
                                  workers=1, verbose=False)
    frames = [pq.read_table(out / s["file"]).to_pandas().assign(split=s["split"]) for s in manifest["shards"]]
    rows = pd.concat(frames, ignore_index=True).sort_values("id", ignore_index=True)
    return manifest, rows


def assert_same(fast: tuple, slow: tuple) -> None:
    (fast_manifest, fast_rows), (slow_manifest, slow_rows) = fast, slow
    pd.testing.assert_frame_equal(fast_rows, slow_rows)
    assert fast_manifest["rows"] == slow_manifest["rows"]
    assert fast_manifest["target"] == slow_manifest["target"]
    assert fast_manifest["stats"]["categories"] == slow_manifest["stats"]["categories"]
    for name, entry in slow_manifest["stats"]["numeric"].items():
        ours = fast_manifest["stats"]["numeric"][name]
        assert ours["missing"] == entry["missing"], name
        assert ours["moments"] == pytest.approx(entry["moments"], rel=1e-12), name


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_arrow_reader_gives_the_pandas_readers_shards_and_statistics(tmp_path, monkeypatch, suffix):
    frame = mixed_table()
    path = tmp_path / f"data{suffix}"
    if suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        frame.astype({"paid": "boolean"}).to_parquet(path)
    fast = prepared(tmp_path, "fast", [str(path)], True, monkeypatch)
    assert_same(fast, prepared(tmp_path, "slow", [str(path)], False, monkeypatch))
    roles = fast[0]["roles"]
    assert set(roles["boolean"]) == {"member", "paid"} and set(roles["categorical"]) == {"zone", "colour"}
    assert fast[1]["member"].isin([0.0, 1.0]).all() and fast[1]["paid"].isna().any()
    assert "120" in set(fast[1]["zone"])
    assert roles["text"] == ["note"] and fast[1]["note"].str.contains("fits").any()  # free text kept as written
    assert fast[1]["colour"].isna().any() == (suffix == ".csv")  # "NA" and "" in a CSV are missing


def test_a_value_arrow_cannot_parse_hands_the_file_to_pandas_and_leaves_nothing(tmp_path, monkeypatch):
    frame = mixed_table().astype({"x": object})
    frame.loc[ROWS - 5, "x"] = "12,5"  # late in the file: the Arrow pass has written shards by then
    path = tmp_path / "data.csv"
    frame.to_csv(path, index=False)
    monkeypatch.setattr(arrow_read, "BLOCK_BYTES", 4096)  # many small blocks, so the failure comes late
    attempts = []
    real = shards._prepare_file

    def spy(*args, fast):
        attempts.append(fast)
        return real(*args, fast=fast)

    monkeypatch.setattr(shards, "_prepare_file", spy)
    manifest = prepare_shards([str(path)], str(tmp_path / "out"), target="y", roles={"id": "numeric"},
                              chunk_rows=700, workers=1, verbose=False)
    assert attempts == [True, False]
    listed = {s["file"] for s in manifest["shards"]} | {"manifest.json", "stats.safetensors"}
    assert {p.name for p in (tmp_path / "out").iterdir()} == listed  # no .tmp, no shard of the first pass
    rows = sum(pq.read_metadata(tmp_path / "out" / name).num_rows for name in listed if name.endswith(".parquet"))
    assert rows == ROWS
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["stats"]["numeric"]["x"]["missing"] > 0


def test_read_ahead_keeps_order_and_runs_ahead_in_another_thread():
    import threading

    producers = []

    def numbers():
        for i in range(50):
            producers.append(threading.current_thread().name)
            yield i

    assert list(arrow_read.read_ahead(numbers(), depth=3)) == list(range(50))
    assert set(producers) == {"scaletrain-read-ahead"}


def test_read_ahead_raises_the_producers_error_after_its_items():
    def failing():
        yield 1
        yield 2
        raise ValueError("bad row 3")

    seen = []
    with pytest.raises(ValueError, match="bad row 3"):
        for item in arrow_read.read_ahead(failing()):
            seen.append(item)
    assert seen == [1, 2]


def test_read_ahead_stopped_early_stops_and_closes_the_producer():
    import threading

    closed, made = threading.Event(), []

    def endless():
        try:
            while True:
                made.append(1)
                yield len(made)
        finally:
            closed.set()  # where a reader's `with` closes its file

    items = arrow_read.read_ahead(endless(), depth=2)
    assert [next(items) for _ in range(3)] == [1, 2, 3]
    items.close()
    assert closed.is_set()
    count = len(made)
    assert count <= 3 + 2 + 1  # the consumed items, a full queue and one waiting to go in
    assert not any(t.name == "scaletrain-read-ahead" for t in threading.enumerate())
