import gzip

import numpy as np
import pandas as pd
import pytest
import torch
import zstandard

from scaletrain.config import Config
from scaletrain.errors import DataError
from scaletrain.modalities import load_source, prepare
from scaletrain.modalities.table.tables import read_table, sniff_csv


def test_semicolon_csv_in_cp1252_with_header(tmp_path):
    path = tmp_path / "t.csv"
    path.write_bytes("name;price\ncafé;1,5\nthé;2\n".encode("cp1252"))
    frame = read_table(path)
    assert list(frame.columns) == ["name", "price"] and frame["name"].tolist() == ["café", "thé"]


def test_tsv_without_header_gets_column_names(tmp_path):
    path = tmp_path / "t.tsv"
    path.write_text("1\t2.5\ta\n3\t4.5\tb\n")
    frame = read_table(path)
    assert list(frame.columns) == ["col0", "col1", "col2"] and len(frame) == 2


def test_sniffer_sees_headers_and_delimiters():
    assert sniff_csv("a|b\n1|2\n3|4\n", ".csv") == ("|", True)
    assert sniff_csv("1,2\n3,4\n", ".csv") == (",", False)


@pytest.mark.parametrize("suffix", [".csv.gz", ".csv.zst", ".jsonl", ".jsonl.gz", ".parquet"])
def test_formats_and_compression_read_the_same_rows(tmp_path, suffix):
    frame = pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"]})
    path = tmp_path / f"t{suffix}"
    if suffix == ".parquet":
        frame.to_parquet(path)
    else:
        text = frame.to_csv(index=False) if ".csv" in suffix else frame.to_json(orient="records", lines=True)
        data = text.encode()
        if suffix.endswith(".gz"):
            data = gzip.compress(data)
        elif suffix.endswith(".zst"):
            data = zstandard.ZstdCompressor().compress(data)
        path.write_bytes(data)
    pd.testing.assert_frame_equal(read_table(path), frame)


def test_glob_concatenates_files(tmp_path):
    for i in range(3):
        pd.DataFrame({"a": [i, i], "b": [0.5, 1.5]}).to_csv(tmp_path / f"part{i}.csv", index=False)
    frame = read_table(str(tmp_path / "part*.csv"))
    assert len(frame) == 6 and sorted(frame["a"].unique()) == [0, 1, 2]


def test_glob_with_another_schema_names_the_file(tmp_path):
    pd.DataFrame({"a": [1], "b": [2]}).to_csv(tmp_path / "p1.csv", index=False)
    pd.DataFrame({"a": [1], "c": [2]}).to_csv(tmp_path / "p2.csv", index=False)
    with pytest.raises(DataError, match="p2.csv"):
        read_table(str(tmp_path / "p*.csv"))


@pytest.mark.parametrize("content,message", [(b"", "empty"), (b"a,b\n", "no data rows"),
                                             (b"\x00\x01\x02binary", "binary")])
def test_unusable_files_raise_data_errors_naming_the_file(tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    with pytest.raises(DataError, match=message) as info:
        read_table(path)
    assert "bad.csv" in str(info.value)


def test_missing_path_and_empty_glob():
    with pytest.raises(DataError, match="does not exist"):
        read_table("/no/such/file.csv")
    with pytest.raises(DataError, match="matches no files"):
        read_table("/no/such/*.csv")


def prepare_for_training(path):
    return prepare(load_source(path), None, Config().data, seed=0)


def test_ragged_row_names_the_line(tmp_path):
    path = tmp_path / "ragged.csv"
    path.write_text("a,b,y\n1,2,p\n3,4,5,q\n")
    with pytest.raises(DataError, match="ragged.csv.*line 3.*fix or remove"):
        read_table(path)


def test_jsonl_bad_line_and_non_object_line_are_named(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text('{"a": 1, "y": "p"}\n{"a": 2, "y": \n')
    with pytest.raises(DataError, match="line 2 is not valid JSON"):
        read_table(path)
    path.write_text('{"a": 1, "y": "p"}\n[1, 2]\n')
    with pytest.raises(DataError, match="line 2 holds a JSON list"):
        read_table(path)


def test_nested_json_and_binary_parquet_cells_become_text(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text('{"a": [1, 2], "b": {"k": 1}, "y": 1}\n{"a": [], "b": null, "y": 2}\n')
    frame = read_table(path)
    assert frame["a"].tolist() == ["[1, 2]", "[]"] and frame["b"][0] == '{"k": 1}'
    pd.DataFrame({"raw": [b"\x80\x81", b"ok"], "y": [1, 2]}).to_parquet(tmp_path / "b.parquet")
    assert read_table(tmp_path / "b.parquet")["raw"].tolist() == ["\\x80\\x81", "ok"]


def test_duplicate_column_names_in_parquet_are_refused(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_arrays([pa.array([1, 2]), pa.array([3, 4]), pa.array([0, 1])],
                                        names=["a", "a", "y"]), tmp_path / "dup.parquet")
    with pytest.raises(DataError, match="'a' twice"):
        prepare_for_training(tmp_path / "dup.parquet")


def test_infinite_values_are_treated_as_missing(tmp_path):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(size=60), "y": rng.integers(0, 2, 60)})
    frame.loc[[3, 10, 20, 40], "a"] = [np.inf, -np.inf, np.inf, np.nan]
    frame.to_csv(tmp_path / "inf.csv", index=False)
    prepared = prepare_for_training(tmp_path / "inf.csv")
    assert all(bool(torch.isfinite(t).all()) for t in prepared.train_inputs + prepared.val_inputs)
    assert "a.missing" in [c["name"] + ".missing" for c in prepared.preprocess["numeric"] if c["indicator"]]


def test_too_few_rows_is_a_clear_error(tmp_path):
    pd.DataFrame({"a": [1.0, 2.0, 3.0], "y": [0, 1, 0]}).to_csv(tmp_path / "tiny.csv", index=False)
    with pytest.raises(DataError, match="too few usable rows"):
        prepare_for_training(tmp_path / "tiny.csv")


def test_duplicate_column_names_in_csv_are_refused(tmp_path):
    (tmp_path / "dup.csv").write_text("a,b,a\n1,2,3\n4,5,6\n")
    with pytest.raises(DataError, match="dup.csv.*'a' twice"):
        read_table(tmp_path / "dup.csv")


def test_values_too_large_to_scale_are_named(tmp_path):
    rows = [f"{'1e308' if i % 2 else '-1e308'},{i},{'pq'[i % 2]}" for i in range(30)]
    (tmp_path / "big.csv").write_text("a,b,y\n" + "\n".join(rows) + "\n")
    with pytest.raises(DataError, match="column 'a' holds values too large"):
        prepare_for_training(tmp_path / "big.csv")
