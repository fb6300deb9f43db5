import gzip

import numpy as np
import pandas as pd
import pytest
import zstandard

from scaletrain.data.tables import read_table, sniff_csv
from scaletrain.errors import DataError


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
