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


@pytest.mark.parametrize("key,value,words", [("data.val_fraction", "1.5", "less than 1"),
                                             ("train.lr", "-0.1", "greater than 0"),
                                             ("train.lr", ".inf", "finite"),
                                             ("train.batch_size", "0", "greater than or equal to 1"),
                                             ("train.seed", "-1", "greater than or equal to 0"),
                                             ("data.channels", "2", "1 or 3")])
def test_out_of_range_values_are_refused_naming_the_key(key, value, words):
    with pytest.raises(ConfigError, match=rf"'{key}'.*{words}"):
        make_config(sets=[f"{key}={value}"])


def test_an_empty_section_in_yaml_is_no_section(tmp_path):
    (tmp_path / "c.yaml").write_text("data:\ntrain:\n  lr: 0.01\n")
    assert make_config(tmp_path / "c.yaml").train.lr == 0.01


def test_a_trained_runs_config_is_frozen_and_changed_only_by_copies(tmp_path):
    """What a run was trained with is not changed behind its back (a tuner, compress, a refit
    derive copies); the copies may be changed."""
    import numpy as np
    import pandas as pd

    import scaletrain
    from scaletrain.errors import ConfigError

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(size=120), "b": rng.normal(size=120)})
    frame["y"] = np.where(frame["a"] > 0, "p", "n")
    run = scaletrain.fit(frame, "y", out=tmp_path / "run", model="mlp", epochs=2)
    for config in (run.config, scaletrain.Run.load(tmp_path / "run").config):
        assert config.is_frozen
        with pytest.raises(ConfigError, match="frozen"):
            config.train.lr = 0.5
    copy = run.config.with_values({"train.lr": 0.5})
    copy.model.dropout = 0.2
    assert not copy.is_frozen and copy.train.lr == 0.5 and run.config.train.lr != 0.5
