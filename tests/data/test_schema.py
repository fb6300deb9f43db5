import numpy as np
import pandas as pd
import pytest

from scaletrain.data.schema import find_target, infer_schema
from scaletrain.errors import TargetError
from scaletrain.tasks.infer import infer_task


def test_roles_of_mixed_columns(mixed_frame):
    frame = mixed_frame.assign(notes=[f"free text number {i} about things that happened that day" for i in range(len(mixed_frame))])
    schema = infer_schema(frame, "label")
    assert schema.task == "binary"
    assert schema.numeric == ["x"] and schema.boolean == ["flag"] and schema.datetime == ["when"]
    assert schema.categorical == ["color", "city"]
    assert "ID-like" in schema.dropped["id"] and schema.dropped["constant"] == "constant"
    assert schema.text == ["notes"] and "notes" not in schema.dropped  # free text: tokenized, not dropped


@pytest.mark.parametrize("values,task", [
    ([0.5, 1.7, 2.2, 3.9] * 10, "regression"),
    ([0, 1] * 20, "binary"),
    (["a", "b", "c"] * 10, "multiclass"),
    (list(range(5)) * 20, "multiclass"),
    (list(np.linspace(25, 346, 400).round()), "regression"),
    ([0] * 400 + [1] * 80 + [2] * 20 + [3] * 6 + [4] * 4 + [7] * 2, "regression"),  # counts (doctor visits)
    ([0] * 40 + [1] * 25 + [2] * 15 + [3] * 12 + [4] * 8, "multiclass"),  # grades: the top not ten times rarer
    ([1] * 5 + [2] * 10 + [3] * 15 + [4] * 30 + [5] * 40, "multiclass"),  # ratings
])
def test_task_from_target(values, task):
    assert infer_task(pd.Series(values), "auto") == task


def test_missing_target_lists_columns_and_closest_match(mixed_frame):
    with pytest.raises(TargetError, match="did you mean 'label'") as info:
        find_target(mixed_frame, "lable", "data.csv")
    assert "columns:" in str(info.value)


def test_single_class_and_empty_target_are_refused():
    frame = pd.DataFrame({"x": [1.0, 2.0, 3.0], "y": ["a", "a", "a"], "z": [np.nan] * 3})
    with pytest.raises(TargetError, match="single class"):
        infer_schema(frame, "y")
    with pytest.raises(TargetError, match="no values"):
        infer_schema(frame, "z")


def test_config_roles_override_inference(mixed_frame):
    schema = infer_schema(mixed_frame, "label", roles={"id": "categorical", "x": "drop", "constant": "numeric"})
    assert "id" in schema.categorical and "x" in schema.dropped and "constant" in schema.numeric


def test_roles_for_unknown_columns_are_config_errors(mixed_frame):
    from scaletrain.errors import ConfigError

    with pytest.raises(ConfigError, match="nope"):
        infer_schema(mixed_frame, "label", roles={"nope": "numeric"})
