import json

import numpy as np
import pandas as pd
import torch

from scaletrain.data.preprocess import decode_target, encode_target, fit_target
from scaletrain.data.schema import infer_schema
from scaletrain.modalities.image.preprocess import fit_images
from scaletrain.modalities.table.preprocess import fit_table, table_feature_names, transform_table


def fitted(frame, **kw):
    schema = infer_schema(frame, "label")
    options = dict(scale="standard", clip_quantile=0.01, missing_indicators=True, max_onehot=16) | kw
    return json.loads(json.dumps(fit_table(frame, schema, **options)))  # state must survive JSON


def test_state_is_learned_from_training_rows_only(mixed_frame):
    train = mixed_frame.iloc[:200]
    state = fitted(train)
    x = next(c for c in state["numeric"] if c["name"] == "x")
    assert np.isclose(x["median"], train["x"].median())
    blocks = transform_table(state, mixed_frame.iloc[200:])
    assert blocks.numbers.shape[0] == 100 and torch.isfinite(blocks.numbers).all()


def test_missing_values_are_imputed_with_an_indicator(mixed_frame):
    state = fitted(mixed_frame)
    names = table_feature_names(state)
    assert "x.missing" in names
    dense = transform_table(state, mixed_frame).numbers
    missing = mixed_frame["x"].isna().to_numpy()
    assert (dense[:, names.index("x.missing")].numpy() == missing).all()


def test_outliers_are_clipped_at_learned_quantiles(mixed_frame):
    state = fitted(mixed_frame)
    far = mixed_frame.iloc[:1].assign(x=1e9)
    value = transform_table(state, far).numbers[0, 0].item()
    hi = next(c for c in state["numeric"] if c["name"] == "x")
    assert np.isclose(value, (hi["hi"] - hi["center"]) / hi["scale"], atol=1e-5)


def test_unseen_categories_go_to_the_unknown_slot(mixed_frame):
    state = fitted(mixed_frame)
    names = table_feature_names(state)
    dense = transform_table(state, mixed_frame.iloc[:1].assign(color="purple")).numbers[0]
    assert dense[names.index("color=__unknown__")] == 1 and dense[names.index("color=red")] == 0


def test_high_cardinality_categories_get_embedding_indices(mixed_frame):
    state = fitted(mixed_frame, max_onehot=10)
    assert [c["name"] for c in state["embed"]] == ["city"]
    codes = transform_table(state, mixed_frame.iloc[:3].assign(city=["city1", "nowhere", "city2"])).categories
    assert codes.shape == (3, 1) and codes[1, 0] == 0 and codes[0, 0] > 0


def test_minmax_scaling_maps_training_range_to_unit_interval():
    frame = pd.DataFrame({"v": np.arange(10.0), "label": [0, 1] * 5})
    state = fitted(frame, scale="minmax", clip_quantile=0.0)
    dense = transform_table(state, frame).numbers[:, 0]
    assert dense.min() == 0 and dense.max() == 1


def test_target_encoding_round_trips_original_values():
    state = fit_target(pd.Series(["b", "a", "c", "a"]), "multiclass")
    codes = encode_target(state, ["c", "a"])
    assert codes.tolist() == [2, 0] and decode_target(state, codes.numpy()).tolist() == ["c", "a"]
    reg = fit_target(pd.Series([10.0, 20.0, 30.0]), "regression")
    assert np.allclose(decode_target(reg, encode_target(reg, [10.0, 30.0]).numpy()), [10.0, 30.0], atol=1e-4)


def test_image_statistics_per_channel():
    images = np.zeros((4, 2, 2, 3), dtype=np.uint8)
    images[..., 0] = 255
    state = fit_images(images)
    assert np.allclose(state["mean"], [1, 0, 0]) and state["size"] == [2, 2] and state["channels"] == 3


def test_arrow_backed_text_is_encoded_exactly_as_python_strings():
    """Shard reads give pyarrow-backed text; its fast lookup must agree with the object path."""
    import pyarrow as pa
    import pytest

    from scaletrain.data.preprocess import arrow_text
    from scaletrain.errors import DataError
    from scaletrain.modalities.table.preprocess import _category_codes

    values = ["red", None, "blue", "violet", "", "red", "__missing__"]
    categories = ["red", "blue", "__missing__", ""]
    as_objects = pd.Series(values, dtype=object)
    for arrow in (pd.Series(values, dtype="string[pyarrow]"), pd.Series(values, dtype=pd.ArrowDtype(pa.large_string())),
                  pd.Series(pa.array(values, pa.string()).to_pandas(types_mapper=pd.ArrowDtype))):
        assert arrow_text(arrow) is not None and arrow_text(as_objects) is None  # the Arrow lookup is used
        np.testing.assert_array_equal(_category_codes(arrow, categories), _category_codes(as_objects, categories))
        np.testing.assert_array_equal(_category_codes(arrow, categories), [1, 3, 2, 0, 4, 1, 3])
    state = fit_target(pd.Series(["no", "yes", "yes"]), "binary")
    labels = pd.Series(["yes", "no", "yes"], dtype="string[pyarrow]")
    assert encode_target(state, labels).tolist() == encode_target(state, labels.astype(object)).tolist() == [1, 0, 1]
    with pytest.raises(DataError, match="'maybe' that the model never saw"):
        encode_target(state, pd.Series(["yes", "maybe"], dtype="string[pyarrow]"))
