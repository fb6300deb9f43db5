import pytest

from scaletrain.config import make_config, parse_duration
from scaletrain.errors import ConfigError


def test_set_and_yaml_values_land_in_the_tree(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  lr: 0.5\nmodel:\n  hidden: [8, 4]\n")
    cfg = make_config(path, ["train.optimizer=momentum", "train.momentum=0.8", "data.augment=false"])
    assert cfg.train.lr == 0.5 and cfg.model.hidden == [8, 4]
    assert cfg.train.optimizer == "momentum" and cfg.train.momentum == 0.8 and cfg.data.augment is False


def test_unknown_key_names_the_nearest_valid_key():
    with pytest.raises(ConfigError, match="did you mean 'train.lr'"):
        make_config(None, ["train.lrr=0.1"])
    with pytest.raises(ConfigError, match="did you mean 'model.dropout'"):
        make_config({"model": {"dropuot": 0.1}})


def test_invalid_value_names_the_key():
    with pytest.raises(ConfigError, match="train.optimizer"):
        make_config(None, ["train.optimizer=rmsprop_magic"])


def test_bare_keyword_overrides_resolve_to_their_section():
    cfg = make_config(None, None, epochs=3, model="mlp", train__lr=0.2)
    assert cfg.train.epochs == 3 and cfg.model.name == "mlp" and cfg.train.lr == 0.2


@pytest.mark.parametrize("text,seconds", [("90", 90), ("90s", 90), ("10m", 600), ("1.5h", 5400)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


def test_bad_duration_is_a_config_error():
    with pytest.raises(ConfigError, match="10m"):
        parse_duration("ten minutes")
