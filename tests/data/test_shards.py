"""Shards: prepare once, stream with exact positions, statistics equal to in-memory ones."""
import json

import numpy as np
import pandas as pd
import pytest
import torch

from scaletrain.config import Config
from scaletrain.data.manifest import read_manifest
from scaletrain.data.preprocess import fit_target
from scaletrain.data.schema import Schema
from scaletrain.data.stream import ShardBatches, read_units, units_of
from scaletrain.errors import DataError
from scaletrain.modalities import load_source, prepare, prepare_shards
from scaletrain.modalities.table.preprocess import fit_table, table_tensors

ROWS = 3000


def table(seed: int = 0, n: int = ROWS) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2))
    frame = pd.DataFrame({"id": np.arange(n, dtype=float), "a": x[:, 0], "b": x[:, 1] * 100 + 7,
                          "colour": rng.choice(["red", "green", "blue", "violet", None], n),
                          "flag": rng.choice(["yes", "no"], n)})
    frame.loc[rng.random(n) < 0.1, "a"] = np.nan
    frame["y"] = np.where(x[:, 0] + (frame["colour"] == "red") > 0.2, "pos", "neg")
    return frame


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tables")
    frame = table()
    frame.iloc[:1000].to_csv(folder / "p0.csv", index=False)
    frame.iloc[1000:2000].to_parquet(folder / "p1.parquet")
    frame.iloc[2000:].to_json(folder / "p2.jsonl", orient="records", lines=True)
    return folder


@pytest.fixture(scope="module")
def shards(files, tmp_path_factory):
    out = tmp_path_factory.mktemp("prepared") / "shards"
    # id kept as a number so that tests can tell rows apart; small row groups give many units
    prepare_shards([str(files / "p*")], str(out), target="y", roles={"id": "numeric"}, chunk_rows=97,
                   verbose=False)
    return out


def data_config(**values):
    config = Config().data
    for key, value in values.items():
        setattr(config, key, value)
    return config


def ids(batches: ShardBatches, prepared, epoch: int = 0, start: int = 0) -> list[int]:
    """Return the row ids a stream yields, read back from the (unclipped, scaled) id column."""
    entry = prepared.preprocess["numeric"][0]
    assert entry["name"] == "id"
    out = []
    for inputs, _ in batches.epoch(epoch, start):
        out += torch.round(inputs[0][:, 0].double() * entry["scale"] + entry["center"]).long().tolist()
    return out


@pytest.fixture(scope="module")
def prepared(shards):
    return prepare(load_source(str(shards)), None, data_config(clip_quantile=0.0), seed=0)


def stream(shards, prepared, **kwargs) -> ShardBatches:
    settings = dict(batch_size=32, seed=0, workers=0, to_tensors=table_tensors(prepared.preprocess, str(shards))) | kwargs
    return ShardBatches(read_manifest(str(shards)), str(shards), "train", prepared.preprocess, **settings)


def test_manifest_lists_every_row_once_with_checksums(shards):
    manifest = json.loads((shards / "manifest.json").read_text())
    assert manifest["format_version"] == 2 and len(manifest["sources"]) == 3
    assert sum(manifest["rows"].values()) == ROWS
    assert all(len(s["crc32"]) == 8 and sum(s["row_groups"]) == s["rows"] for s in manifest["shards"])
    assert 0.6 < manifest["rows"]["train"] / ROWS < 0.8  # the default 70/15/15 split by hash


def test_streamed_statistics_equal_in_memory_ones(shards):
    manifest = read_manifest(str(shards))
    train = read_units(manifest.root, str(shards), units_of(manifest, "train"))
    roles = manifest.data["roles"]
    in_memory = fit_table(train, Schema(**roles), "standard", 0.01, True, 16)
    in_memory["target"] = fit_target(train["y"], "binary")
    streamed = prepare(load_source(str(shards)), None, data_config(clip_quantile=0.01), seed=0).preprocess
    for ours, theirs in zip(streamed["numeric"], in_memory["numeric"]):
        assert ours.keys() == theirs.keys() and ours["name"] == theirs["name"]
        for key in ("median", "lo", "hi", "center", "scale"):
            assert ours[key] == pytest.approx(theirs[key], rel=1e-9, abs=1e-12), (ours["name"], key)
    assert streamed["onehot"] == in_memory["onehot"] and streamed["target"] == in_memory["target"]


def test_quantile_sketch_beyond_the_exact_limit_stays_within_its_rank_error(monkeypatch):
    import scaletrain.data.stats as stats

    monkeypatch.setattr(stats, "EXACT_LIMIT", 1000)
    values = np.random.default_rng(0).lognormal(size=200_000)
    merged = stats.NumericStats()
    for chunk in np.array_split(values, 7):
        part = stats.NumericStats()
        part.update(chunk)
        merged.merge(part)
    assert merged.sketch.values is None  # the sketch, not the exact buffer, answered
    for q, estimate in zip([0.01, 0.5, 0.99], merged.sketch.quantiles([0.01, 0.5, 0.99])):
        assert abs((values < estimate).mean() - q) < 0.01
    assert merged.moments.mean == pytest.approx(values.mean(), rel=1e-12)
    assert merged.moments.std == pytest.approx(values.std(), rel=1e-9)


def test_two_ranks_by_two_workers_see_every_row_exactly_once(shards, prepared):
    manifest = read_manifest(str(shards))
    train_ids = read_units(manifest.root, str(shards), units_of(manifest, "train"))["id"].astype(int)
    seen = []
    for rank in (0, 1):
        seen += ids(stream(shards, prepared, rank=rank, world=2, workers=2), prepared)
    assert sorted(seen) == sorted(train_ids.tolist())


def test_order_is_seeded_and_changes_per_epoch(shards, prepared):
    first = ids(stream(shards, prepared), prepared)
    assert first == ids(stream(shards, prepared), prepared)
    assert first != ids(stream(shards, prepared, seed=1), prepared)
    assert first != ids(stream(shards, prepared), prepared, epoch=1)
    assert sorted(first) == sorted(ids(stream(shards, prepared), prepared, epoch=1))


@pytest.mark.parametrize("workers", [0, 2])
def test_a_resume_mid_epoch_continues_with_exactly_the_remaining_batches(shards, prepared, workers):
    batches = stream(shards, prepared, workers=workers)
    full = [(tuple(x.clone() for x in inputs), y.clone()) for inputs, y in batches.epoch(2)]
    for start in (1, 7, 31, 32, 33, 64, len(full) - 1):  # inside and at the edges of worker groups
        resumed = list(batches.epoch(2, start))
        assert len(resumed) == len(full) - start
        for (a_in, a_y), (b_in, b_y) in zip(full[start:], resumed):
            assert all(torch.equal(a, b) for a, b in zip(a_in, b_in)) and torch.equal(a_y, b_y)


def test_a_damaged_shard_is_named(files, tmp_path):
    out = tmp_path / "shards"
    prepare_shards([str(files / "p0.csv")], str(out), target="y", verbose=False)
    shard = sorted(out.glob("train-*.parquet"))[0]
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(DataError, match=f"{shard.name}.*checksum"):
        prepare(load_source(str(out)), None, data_config(), seed=0)


def test_another_format_version_is_refused(files, tmp_path):
    out = tmp_path / "shards"
    prepare_shards([str(files / "p0.csv")], str(out), target="y", verbose=False)
    manifest = json.loads((out / "manifest.json").read_text())
    (out / "manifest.json").write_text(json.dumps({**manifest, "format_version": 99}))
    with pytest.raises(DataError, match="version 99.*prepare the data again"):
        prepare(load_source(str(out)), None, data_config(), seed=0)


def test_a_file_with_another_schema_is_named_and_nothing_is_left(files, tmp_path):
    table().drop(columns="colour").to_csv(tmp_path / "other.csv", index=False)
    out = tmp_path / "shards"
    with pytest.raises(DataError, match="other.csv.*'colour'"):
        prepare_shards([str(files / "p0.csv"), str(tmp_path / "other.csv")], str(out), target="y", verbose=False)
    assert not out.exists()  # no half-made shard directory


def test_a_target_of_another_type_is_named(tmp_path):
    frame = table(n=200).assign(y=lambda f: (f["y"] == "pos").astype(int))
    frame.to_csv(tmp_path / "a.csv", index=False)
    frame.assign(y="text").to_csv(tmp_path / "b.csv", index=False)
    with pytest.raises(DataError, match="b.csv.*column 'y'"):
        prepare_shards([str(tmp_path / "a.csv"), str(tmp_path / "b.csv")], str(tmp_path / "s"), verbose=False)


def test_fsspec_memory_filesystem_end_to_end():
    import fsspec

    import scaletrain

    fs = fsspec.filesystem("memory")
    with fs.open("/in/t.csv", "wb") as fh:
        fh.write(table(n=600).to_csv(index=False).encode())
    prepare_shards(["memory://in/*.csv"], "memory://prepared", target="y", verbose=False)
    assert fs.exists("/prepared/manifest.json") and not [p for p in fs.find("/prepared") if p.endswith(".tmp")]
    run = scaletrain.fit("memory://prepared", out=None, epochs=2, data__loader_workers=0)
    assert run.metrics["test"]["accuracy"] > 0.7
    fs.rm("/in", recursive=True)
    fs.rm("/prepared", recursive=True)


def test_training_from_shards_matches_training_in_memory_in_quality(shards, files):
    import scaletrain

    streamed = scaletrain.fit(str(shards), out=None, epochs=4, data__loader_workers=1)
    assert streamed.metrics["test"]["accuracy"] > 0.85
    predictions = streamed.predict(files / "p0.csv")  # raw rows in, as from any run
    assert len(predictions) == 1000 and set(predictions["prediction"]) <= {"pos", "neg"}


def test_parallel_prepare_merges_sketches_from_worker_processes(files, tmp_path, monkeypatch):
    import scaletrain.data.stats as stats

    monkeypatch.setattr(stats, "EXACT_LIMIT", 50)  # every file's sketch is a KLL, made in a worker
    out = tmp_path / "shards"
    prepare_shards([str(files / "p*")], str(out), target="y", workers=2, verbose=False)
    state = prepare(load_source(str(out)), None, data_config(), seed=0).preprocess
    b = next(c for c in state["numeric"] if c["name"] == "b")
    assert b["median"] == pytest.approx(7, abs=15)  # b = 100 * N(0, 1) + 7


def test_parallel_prepare_starts_the_largest_file_first_and_merges_in_file_order(files, tmp_path, monkeypatch):
    import scaletrain.modalities.table.shards as shards_module

    started = []

    class InProcessPool:  # records the order files are handed out in
        def __init__(self, workers):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def map(self, fn, jobs):
            started.extend(job[0] for job in jobs)
            return map(fn, jobs)

    one = prepare_shards([str(files / "p*")], str(tmp_path / "one"), target="y", workers=1, verbose=False)
    monkeypatch.setattr(shards_module, "ProcessPoolExecutor", InProcessPool)
    two = prepare_shards([str(files / "p*")], str(tmp_path / "two"), target="y", workers=2, verbose=False)
    sizes = {path: (files / path.rsplit("/", 1)[-1]).stat().st_size for path in started}
    assert started == sorted(sizes, key=sizes.get, reverse=True) and len(set(sizes.values())) == 3
    assert {k: v for k, v in one.items() if k != "seconds"} == {k: v for k, v in two.items() if k != "seconds"}


def test_image_folder_prepares_into_shards_and_trains_streamed(tmp_path):
    """Encoded bytes in the shards, pixel statistics equal to in-memory ones, a bad file skipped."""
    import scaletrain
    from scaletrain.data.stream import read_units
    from scaletrain.datasets import write_digits_folder
    from scaletrain.modalities.image.preprocess import fit_images
    from scaletrain.modalities.image.shards import decode_frame

    folder = write_digits_folder(tmp_path / "digits")
    (folder / "3" / "broken.png").write_bytes(b"not an image")
    out = tmp_path / "shards"
    with pytest.warns(UserWarning, match="broken.png"):
        manifest = prepare_shards([str(folder)], str(out), verbose=False)
    assert manifest["kind"] == "image" and sum(manifest["rows"].values()) == 1797
    shards = read_manifest(str(out))
    train = decode_frame(read_units(shards.root, str(out), units_of(shards, "train")), [8, 8], 1)
    expected = fit_images(train.images)
    assert manifest["pixels"]["mean"] == pytest.approx(expected["mean"], rel=1e-9)
    assert manifest["pixels"]["std"] == pytest.approx(expected["std"], rel=1e-9)
    run = scaletrain.fit(str(out), out=None, epochs=6, data__loader_workers=1)
    assert run.metrics["test"]["accuracy"] > 0.85
    assert len(run.predict(folder / "3")) == len(list((folder / "3").glob("*.png"))) - 1


@pytest.mark.parametrize("suffix", [".csv.gz", ".csv.zst", ".tsv.bz2"])
def test_compressed_inputs_stream_through_prepare(tmp_path, suffix):
    import fsspec

    frame = table(n=300)
    with fsspec.open(str(tmp_path / f"t{suffix}"), "wb", compression="infer") as fh:
        fh.write(frame.to_csv(index=False, sep="\t" if ".tsv" in suffix else ",").encode())
    manifest = prepare_shards([str(tmp_path / f"t{suffix}")], str(tmp_path / "s"), target="y", chunk_rows=64,
                              verbose=False)
    assert sum(manifest["rows"].values()) == 300


def counted(prepared, shards, calls: list):
    encode = table_tensors(prepared.preprocess, str(shards))

    def to_tensors(frame):
        calls.append(len(frame))
        return encode(frame)
    return to_tensors


def epochs_of(batches: ShardBatches, count: int) -> list:
    return [[(tuple(x.clone() for x in inputs), y.clone()) for inputs, y in batches.epoch(e)] for e in range(count)]


def test_kept_units_are_encoded_once_and_give_the_same_batches(shards, prepared):
    calls = []
    plain = epochs_of(stream(shards, prepared, cache_bytes=0), 3)
    kept = stream(shards, prepared, cache_bytes=2 ** 30, to_tensors=counted(prepared, shards, calls))
    cached = epochs_of(kept, 3)
    assert sum(calls) == kept.rows  # every training row encoded once, in the first epoch
    for ours, theirs in zip(sum(cached, []), sum(plain, [])):
        assert all(torch.equal(a, b) for a, b in zip(ours[0] + (ours[1],), theirs[0] + (theirs[1],)))
    resumed = list(kept.epoch(2, 5))  # a resume from the kept units: the same batches
    assert all(torch.equal(a[1], b[1]) for a, b in zip(resumed, cached[2][5:]))


def test_a_small_budget_keeps_what_fits_and_the_batches_stay_the_same(shards, prepared):
    calls = []
    plain = epochs_of(stream(shards, prepared, cache_bytes=0), 2)
    small = stream(shards, prepared, cache_bytes=20_000, to_tensors=counted(prepared, shards, calls))
    cached = epochs_of(small, 2)
    assert 0 < small.kept.used <= 20_000 and small.kept.full
    assert small.rows < sum(calls) < 2 * small.rows  # some units read again, not all
    assert all(torch.equal(a[1], b[1]) and torch.equal(a[0][0], b[0][0]) for a, b in zip(sum(cached, []), sum(plain, [])))
