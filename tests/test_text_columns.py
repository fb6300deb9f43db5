"""Free text in a table: a tokenizer trained on the training rows, a bag of word pieces beside
the other columns, and everything predict needs in the run directory."""
import json

import numpy as np
import pandas as pd
from typer.testing import CliRunner

import scaletrain
from scaletrain.cli import app
from scaletrain.data.text import SPECIAL, encode_texts, length_for, pretraining_vocab_size, train_tokenizer, vocab_size_for
from scaletrain.modalities.table.modality import TableFacts

TOPICS = {"sport": ["match", "goal", "team", "coach", "league"], "tech": ["software", "chip", "phone", "cloud", "robot"],
          "money": ["bank", "market", "shares", "profit", "loan"]}
FILLER = "the a of and to in is was for on with as by at it from that this".split()


def articles(n: int = 300, seed: int = 0) -> pd.DataFrame:
    """The label is in the words (two topic words among filler); `size` is noise beside them."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        topic = rng.choice(list(TOPICS))
        words = list(rng.choice(FILLER, 14)) + list(rng.choice(TOPICS[topic], 2))
        rng.shuffle(words)
        rows.append({"body": " ".join(words), "size": rng.normal(), "topic": topic})
    return pd.DataFrame(rows)


def test_a_text_column_is_read_and_decides_the_label(tmp_path):
    train, test = articles(seed=0), articles(n=150, seed=1)
    run = scaletrain.fit(train, "topic", test=test, out=tmp_path / "run", model="mlp", epochs=30)
    assert run.metrics["test"]["accuracy"] > 0.9  # chance is 1/3: the words are used
    assert "body" not in run.preprocess["dropped"] and run.preprocess["text"]["columns"] == ["body"]
    assert any("WordPiece tokenizer" in n for n in run.metrics["notes"])
    stored = json.loads((tmp_path / "run" / "preprocess.json").read_text())
    assert stored["text"]["tokenizer"] == "tokenizer.json" and (tmp_path / "run" / "tokenizer.json").is_file()
    loaded = scaletrain.load(tmp_path / "run")
    expected = run.predict(test.drop(columns="topic"))
    np.testing.assert_allclose(loaded.predict(test.drop(columns="topic"))["proba_sport"], expected["proba_sport"],
                               rtol=1e-5, atol=1e-7)


def test_the_tokenizer_learns_from_training_rows_only(tmp_path):
    train, test = articles(seed=0), articles(n=60, seed=1)
    test["body"] = test["body"] + " zanzibarquux"
    run = scaletrain.fit(train, "topic", test=test, out=None, model="mlp", epochs=2)
    from tokenizers import Tokenizer

    vocab = Tokenizer.from_str(run.preprocess["text"]["tokenizer"]).get_vocab()
    assert "zanzibarquux" not in vocab and "goal" in vocab


def test_sizes_follow_the_corpus():
    assert vocab_size_for(1_000) == 1000 and vocab_size_for(100_000) == 2048 and vocab_size_for(1_000_000) == 8192
    assert vocab_size_for(10**10) == 30000
    assert pretraining_vocab_size(5_000_000) == 8192 and pretraining_vocab_size(1_000) == 1000  # half, in bounds
    assert train_tokenizer(["alpha beta gamma delta " * 50 + f"w{i}" for i in range(400)], 300).get_vocab_size() <= 300
    assert length_for(np.array([10] * 97 + [400] * 3)) == 16 and length_for(np.array([2000])) == 512
    tokenizer = train_tokenizer(["one two three four five six"] * 20)
    ids, cut = encode_texts(tokenizer, ["one two", "one two three four five six one two three"], 8)
    assert ids.shape == (2, 8) and cut == 1 and ids[0, 4:].sum() == 0  # [CLS] one two [SEP], padded with 0


def test_the_tokenizer_trained_on_the_same_texts_is_the_same_every_time():
    rng = np.random.default_rng(0)  # few letters: many merges tie, as they do at a real vocabulary's edge
    texts = [" ".join("".join(rng.choice(list("abcdefgh"), rng.integers(2, 7))) for _ in range(8)) for _ in range(300)]
    trained = {train_tokenizer(texts, 1000).to_str() for _ in range(10)}  # 10 different before
    assert len(trained) == 1
    tokenizer = train_tokenizer(texts, 1000)
    assert [tokenizer.token_to_id(t) for t in SPECIAL] == [0, 1, 2, 3, 4]
    assert "##a" not in tokenizer.encode("x ##a").tokens  # a continuing piece in the text is not a special token


def test_text_columns_go_into_shards_and_are_tokenized_while_streaming(tmp_path):
    from scaletrain.modalities.table.shards import prepare_table_shards

    articles(n=600).to_csv(tmp_path / "articles.csv", index=False)
    manifest = prepare_table_shards([str(tmp_path / "articles.csv")], str(tmp_path / "shards"), "topic", verbose=False)
    assert manifest["roles"]["text"] == ["body"] and "body" not in manifest["roles"]["dropped"]
    run = scaletrain.fit(str(tmp_path / "shards"), out=tmp_path / "run", model="mlp", epochs=30)
    assert any(n.startswith("training rows stream from") for n in run.metrics["notes"])
    assert run.metrics["test"]["accuracy"] > 0.9  # chance is 1/3: the words are read from the shards
    assert run.preprocess["text"]["columns"] == ["body"]
    assert any(f"trained on the first {manifest['rows']['train']} training rows" in n and "streamed window" in n
               for n in run.metrics["notes"])
    test = articles(n=60, seed=5)
    assert (scaletrain.load(tmp_path / "run").predict(test.drop(columns="topic"))["prediction"] == test["topic"]).mean() > 0.9


def test_missing_text_is_empty_text():
    from scaletrain.data.text import row_texts

    assert row_texts([["a b", None, float("nan"), pd.NA], ["c", "d", "e", "f"]]) == \
        ["a b [SEP] c", " [SEP] d", " [SEP] e", " [SEP] f"]


def test_cross_validation_tuning_and_evaluate_take_raw_text(tmp_path):

    data = tmp_path / "articles.csv"
    articles(n=120, seed=2).to_csv(data, index=False)
    fixed = ["model.name=linear", "train.weight_decay=0.001"]  # no L2 search: a quick fit
    cv = scaletrain.cross_validate(str(data), "topic", k=2, sets=fixed)
    assert cv["k"] == 2 and cv["mean"]["accuracy"] > 0.9  # each fold tokenizes its own training rows
    from scaletrain.api import tune

    result = tune(str(data), "topic", sets=fixed, search="grid", space={"train.weight_decay": [0.001, 0.01]},
                  out=tmp_path / "tune", verbose=False, workers=1)
    assert (tmp_path / "tune" / "best" / "tokenizer.json").is_file() and result.run is not None
    articles(n=60, seed=3).to_csv(tmp_path / "new.csv", index=False)
    done = CliRunner().invoke(app, ["evaluate", str(tmp_path / "tune" / "best"), str(tmp_path / "new.csv")])
    assert done.exit_code == 0 and "accuracy" in done.stdout, done.output


def test_the_linear_tfidf_candidate_is_tried_for_any_text_input():
    from scaletrain.config import Config
    from scaletrain.modalities.table.modality import TABLE, TRANSFORMER_SECONDS
    from scaletrain.modalities.table.prepare import FEW_LABELS

    for rows in (50, 2_500, 200_000):
        facts = TableFacts("table", "multiclass", rows, 3, text_length=64)
        assert TABLE.candidates(Config(), facts)[:2] == ["linear", "mlp"]
        assert ("rnn" in TABLE.candidates(Config(), facts)) == (rows >= 2_000)  # the reader of word order
    numbers = TableFacts("table", "multiclass", 200_000, 3)
    assert TABLE.candidates(Config(), numbers) == ["mlp", "boosted"]  # no text, many rows: MLP and trees
    timed = Config()
    timed.train.time_limit = float(TRANSFORMER_SECONDS)
    assert TABLE.candidates(timed, TableFacts("table", "multiclass", 5_000, 3, text_length=64))[-1] == "transformer"
    assert "transformer" not in TABLE.candidates(timed, TableFacts("table", "multiclass", 500, 3, text_length=64))
    assert FEW_LABELS == 1000


def test_streamed_text_on_two_cores_is_tokenized_in_the_training_process(monkeypatch):
    """One forked loader worker tokenizes on one core; the training process itself uses both."""
    from scaletrain import runtime
    from scaletrain.config import Config
    from scaletrain.fitting import recipe

    def workers(cores: int, text_length: int, streamed: bool = True) -> int:
        monkeypatch.setattr(runtime, "cores", lambda: cores)
        monkeypatch.setattr(recipe, "cores", lambda: cores)
        facts = TableFacts("table", "multiclass", 50_000, 3, streamed=streamed, n_features=4, text_length=text_length)
        return recipe.resolve(Config(), facts).data.loader_workers

    assert workers(2, text_length=64) == 0
    assert workers(2, text_length=0) == 1 and workers(8, text_length=64) == 4  # numbers alone; cores to spare


def test_many_texts_train_the_linear_model_beside_the_mlp_and_the_rnn_and_no_few_labels_advice(tmp_path, monkeypatch):
    from scaletrain.data import text

    # the pair table grows with the rows it is sized on: the refit's (every row) is not the first fit's
    monkeypatch.setattr(text, "pair_buckets_for", lambda tokens: 1024 if len(tokens) < 2400 else 2048)
    train, test = articles(n=2600, seed=2), articles(n=100, seed=3)
    rng = np.random.default_rng(0)
    noisy = rng.random(len(train)) < 0.3  # labels drawn at random on 30% of the rows: no candidate is perfect
    train.loc[noisy, "topic"] = rng.choice(list(TOPICS), noisy.sum())
    run = scaletrain.fit(train, "topic", test=test, out=tmp_path / "run", train__blend="on")
    assert run.metrics["data"]["train_rows"] >= 2000
    assert set(run.metrics["candidates"]) == {"linear", "mlp", "rnn"}
    notes = " ".join(run.metrics["notes"])
    assert "chosen on the validation rows" in notes and "pretraining on unlabeled text" not in notes
    assert run.metrics["test"]["accuracy"] > 0.9
    # the linear model blends with the GRU (trained for fixed epochs), not with the early-stopped MLP,
    # and the blend refit on every row (its linear member's pair table sized on them) loads back
    assert [m.name for m in run.config.model.members] == ["linear", "rnn"]
    rows = test.drop(columns="topic")
    np.testing.assert_allclose(scaletrain.load(tmp_path / "run").predict(rows)["proba_sport"],
                               run.predict(rows)["proba_sport"], rtol=1e-5, atol=1e-7)


def test_few_texts_get_the_pretraining_advice():
    run = scaletrain.fit(articles(n=200), "topic", out=None, model="linear")
    assert any("with few labels (" in n for n in run.metrics["notes"])


def word_order(n: int, seed: int) -> pd.DataFrame:
    """The label is which of two words comes first, side by side among filler: every text has
    the same bag of words in both classes, so only the pairs of pieces can tell them apart."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        red_first = bool(rng.random() < 0.5)
        words = list(rng.choice(FILLER, 10))
        at = int(rng.integers(0, len(words) + 1))
        words[at:at] = ["red", "apple"] if red_first else ["apple", "red"]
        rows.append({"body": " ".join(words), "order": "red first" if red_first else "apple first"})
    return pd.DataFrame(rows)


def test_piece_pairs_let_the_linear_model_read_word_order():
    train, test = word_order(400, seed=0), word_order(200, seed=1)
    scores = {}
    for pairs in (True, False):
        run = scaletrain.fit(train, "order", test=test, out=None, model="linear", sets=[f"model.text_pairs={pairs}"])
        scores[pairs] = run.metrics["test"]["accuracy"]
    assert scores[True] > 0.95 and scores[False] < 0.7, scores


def test_piece_pairs_are_read_by_the_linear_model_on_short_texts_with_enough_rows():
    from scaletrain.config import Config
    from scaletrain.fitting.recipe import resolve
    from scaletrain.modalities.table.modality import PAIRS_MAX_LENGTH, PAIRS_MIN_ROWS

    def pairs(rows: int, length: int) -> bool:
        return resolve(Config(), TableFacts("table", "multiclass", rows, 3, text_length=length)).model.text_pairs

    assert pairs(PAIRS_MIN_ROWS, PAIRS_MAX_LENGTH) and not pairs(PAIRS_MIN_ROWS - 1, 64)
    assert not pairs(5000, PAIRS_MAX_LENGTH + 8) and not pairs(5000, 0)


def test_a_recurrent_reader_learns_word_order_that_a_bag_of_pieces_cannot():
    train, test = word_order(400, seed=0), word_order(200, seed=1)
    run = scaletrain.fit(train, "order", test=test, out=None, model="rnn")
    assert run.metrics["test"]["accuracy"] > 0.95  # the bag alone (no pairs): under 0.7, above
    m, t = run.config.model, run.config.train
    assert (m.pooling, m.width, m.depth, t.early_stopping) == ("max_mean", 96, 1, 0)  # fixed epochs: blendable


def test_a_recurrent_reading_does_not_depend_on_the_padding_after_the_text():
    import torch

    from scaletrain.models.recurrent import Recurrence, RecurrentText

    torch.manual_seed(0)
    reader = RecurrentText(50, Recurrence("gru", 8, 2, True, "max_mean")).eval()
    tokens = torch.tensor([[5, 9, 3, 0, 0, 0], [7, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0]])
    longer = torch.cat([tokens, torch.zeros(3, 10, dtype=torch.long)], dim=1)
    with torch.no_grad():
        torch.testing.assert_close(reader(tokens), reader(longer))
        assert reader(tokens).shape == (3, reader.width) and reader(tokens)[2].abs().sum() == 0  # no text: zeros


def test_a_recurrent_reader_named_for_a_table_without_text_says_what_it_reads():
    import pytest

    from scaletrain.errors import ConfigError

    numbers = pd.DataFrame({"a": np.arange(60.0), "y": np.arange(60) % 2})
    with pytest.raises(ConfigError, match="free text; use linear or mlp for tables"):
        scaletrain.fit(numbers, "y", out=None, model="rnn")
