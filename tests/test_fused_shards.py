"""Image columns through `scaletrain prepare`: the shards carry each cell's image file, and a
fused model trains from them a row group at a time."""
import json

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

import scaletrain
from tests.test_cli import prepare_in_a_fresh_interpreter
from tests.test_fused import shapes_table


def test_an_image_column_is_carried_into_shards_and_trains_from_them(tmp_path):
    table = shapes_table(tmp_path, n=500)
    rows = pd.read_csv(table)
    rows.loc[:9, "photo"] = [None] * 5 + ["img/nope.png"] * 5  # empty cells, and files that do not exist
    rows.to_csv(table, index=False)
    shards = tmp_path / "shards"
    said, imported = prepare_in_a_fresh_interpreter(table, shards, "label")
    assert imported == "[]"  # bytes are carried, nothing decoded

    manifest = json.loads((shards / "manifest.json").read_text())
    assert manifest["roles"]["image"] == ["photo"] and "photo" not in manifest["roles"]["dropped"]
    parts = {split: [pq.read_table(shards / s["file"]) for s in manifest["shards"] if s["split"] == split]
             for split in ("train", "val", "test")}
    assert all(t.schema.field("photo").type == pa.binary() for ts in parts.values() for t in ts)
    files = {(tmp_path / "img" / f"{i}.png").read_bytes() for i in range(10, 500)}
    cells = [c for ts in parts.values() for t in ts for c in t["photo"].to_pylist() if c is not None]
    assert len(cells) == 490 and set(cells) == files  # each cell the file itself
    nulls = {split: sum(t["photo"].null_count for t in ts) for split, ts in parts.items()}
    assert sum(nulls.values()) == 10  # the empty and the missing files alike
    assert manifest["stats"]["media_absent"] == {"photo": nulls["train"]}
    assert f"image column 'photo': each cell's file carried into the shards; {nulls['train']} training cell(s) " \
           "held no image (empty" in said

    run = scaletrain.fit(str(shards), out=tmp_path / "run", sets=["model.name=mlp", "train.epochs=25"])
    assert run.metrics["test"]["accuracy"] >= 0.9
    assert f"image column 'photo': 16×16 pixels, 1 channel(s), its own convolutional encoder; {nulls['train']} of " \
           f"{manifest['rows']['train']} training cells held no image" in " ".join(run.metrics["notes"])
    predicted = scaletrain.load(tmp_path / "run").predict(table)  # raw rows, paths read as the run was prepared
    assert (predicted["prediction"] == rows["label"]).iloc[10:].mean() >= 0.9
    _exported_and_served_as_predict_reads(tmp_path / "run", table, predicted)


def _exported_and_served_as_predict_reads(folder, table, predicted) -> None:
    """The run trained from shards ships as one read whole does: its ONNX graph and its server
    (a row's image inline) give predict's labels."""
    import base64

    import numpy as np
    import onnxruntime as ort
    from fastapi.testclient import TestClient

    from scaletrain.export.onnx_export import export_onnx, onnx_inputs
    from scaletrain.modalities import read_for_run
    from scaletrain.serve.app import create_app
    from scaletrain.serve.graph import graph_engine

    run = scaletrain.load(folder)
    label, proba = ort.InferenceSession(str(export_onnx(folder, folder / "m.onnx"))).run(
        ["label", "probabilities"], onnx_inputs(run, read_for_run(run.preprocess, str(table))))
    assert list(label) == predicted["prediction"].tolist()
    np.testing.assert_allclose(proba, predicted[["proba_no", "proba_yes"]].to_numpy(), atol=1e-5)
    rows = pd.read_csv(table).iloc[10:14]
    inline = [{"photo": "data:image/png;base64," + base64.b64encode((table.parent / p).read_bytes()).decode(), "x": x}
              for p, x in zip(rows["photo"], rows["x"])]
    with TestClient(create_app(run, engine=graph_engine(run))) as client:
        answer = client.post("/predict", json={"records": inline})
        assert answer.status_code == 200 and answer.json()["predictions"] == predicted["prediction"].tolist()[10:14]


def test_rows_with_images_are_cut_into_small_row_groups(tmp_path, monkeypatch):
    """A streamed window decodes a few row groups at once: with images they are small."""
    from scaletrain.modalities.table import shards as table_shards

    monkeypatch.setattr(table_shards, "MEDIA_CHUNK_ROWS", 64)
    table = shapes_table(tmp_path, n=300)
    manifest = table_shards.prepare_table_shards([str(table)], str(tmp_path / "shards"), "label", verbose=False)
    groups = [n for s in manifest["shards"] for n in s["row_groups"]]
    assert sum(groups) == 300 and max(groups) <= 64


def test_image_paths_are_read_from_the_tables_own_filesystem():
    """A table behind an fsspec URL names its images relative to itself, on the same filesystem."""
    import io

    import fsspec
    import numpy as np
    from PIL import Image

    from scaletrain.modalities.table.shards import prepare_table_shards

    fs, rng, files = fsspec.filesystem("memory"), np.random.default_rng(0), {}
    for i in range(40):
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (8, 8), dtype=np.uint8)).save(buffer, format="PNG")
        files[f"pics/{i}.png"] = buffer.getvalue()
        with fs.open(f"/remote/pics/{i}.png", "wb") as fh:
            fh.write(buffer.getvalue())
    rows = pd.DataFrame({"photo": list(files), "x": rng.normal(size=40), "label": ["a", "b"] * 20})
    with fs.open("/remote/rows.csv", "wb") as fh:
        fh.write(rows.to_csv(index=False).encode())
    try:
        manifest = prepare_table_shards(["memory://remote/rows.csv"], "memory://remote-shards", "label", verbose=False)
        cells = [c for s in manifest["shards"]
                 for c in pq.read_table(fs.open(f"/remote-shards/{s['file']}", "rb"))["photo"].to_pylist()]
        assert sorted(cells) == sorted(files.values())
    finally:
        fs.rm("/remote", recursive=True)
        if fs.exists("/remote-shards"):
            fs.rm("/remote-shards", recursive=True)


def test_a_cell_that_holds_no_image_is_carried_as_none(tmp_path, monkeypatch):
    """Empty, missing, a directory, bytes or a data URI that are not an image, a file over the
    size bound: each is stored empty (and counted), never read past the bound."""
    import fsspec

    from scaletrain.modalities.table import media

    shapes_table(tmp_path, n=1)
    image = (tmp_path / "img" / "0.png").read_bytes()
    (tmp_path / "big.png").write_bytes(image + b"\0" * 5000)
    fs = fsspec.filesystem("file")
    monkeypatch.setattr(media, "MAX_CELL_BYTES", 4000)
    cells = [None, "", "  ", "nope.png", "img", b"plain bytes", "data:image/png;base64,@@@",
             "data:image/png;base64,aGVsbG8=", "big.png", 3.5]
    assert [media.cell_bytes(c, fs, str(tmp_path)) for c in cells] == [None] * len(cells)
    assert media.cell_bytes("img/0.png", fs, str(tmp_path)) == image == media.cell_bytes(image, fs, str(tmp_path))
