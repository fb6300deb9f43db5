"""A log too big to hold: shards of more than STREAM_ROWS interactions are streamed (here the
limit is lowered to a few thousand rows). Its split holds out sampled users' latest items; the
histories are written a block at a time into a standard safetensors file; training resumes
exactly; the run loads and predicts like any recommender run."""
import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.numpy import load_file
from typer.testing import CliRunner

import scaletrain
from scaletrain.cli import app
from scaletrain.config import DataConfig
from scaletrain.data.manifest import read_manifest
from scaletrain.errors import RunDirError
from scaletrain.models import factorization
from scaletrain.recommend import log_stream, stream_fit
from scaletrain.recommend.histories import FILE, open_histories, save_histories
from scaletrain.recommend.run import RecommenderRun
from tests.test_serve import free_port

USERS, ITEMS, GROUPS = 300, 60, 4


def log(rows: int = 12_000, seed: int = 0) -> pd.DataFrame:
    """Users of group g (user % 4) choose 80% of their items among items ≡ g (mod 4)."""
    rng = np.random.default_rng(seed)
    users = rng.integers(0, USERS, rows)
    taste = rng.integers(0, ITEMS // GROUPS, rows) * GROUPS + users % GROUPS
    items = np.where(rng.random(rows) < 0.8, taste, rng.integers(0, ITEMS, rows))
    return pd.DataFrame({"userId": users + 1000, "movieId": items + 1, "rating": rng.integers(1, 6, rows),
                         "timestamp": np.arange(rows) + 10**9})


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    folder = tmp_path_factory.mktemp("log")
    log().to_parquet(folder / "log.parquet")
    done = CliRunner().invoke(app, ["prepare", str(folder / "log.parquet"), "--out", str(folder / "shards"),
                                    "--target", "timestamp", "--quiet"])
    assert done.exit_code == 0, done.output
    return folder / "shards"


@pytest.fixture(scope="module")
def streamed(shards, tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(log_stream, "STREAM_ROWS", 1_000)
        patch.setattr(log_stream, "BLOCK_ROWS", 2_500)  # the histories in five passes
        patch.setattr(stream_fit, "EVAL_USERS", 100)
        patch.setattr(stream_fit, "STREAM_EPOCHS", 4)
        patch.setattr(stream_fit, "STREAM_BATCH", 256)
        return scaletrain.fit(str(shards), out=tmp_path_factory.mktemp("run") / "run", data__task="recommend")


def test_a_big_log_is_streamed_and_its_planted_taste_beats_popularity(streamed):
    m = streamed.metrics
    assert "streamed" in m["data"]["split"] and m["data"]["interactions"] == 12_000
    assert m["model"].startswith("mf") and m["test"]["users_scored"] == 100
    assert m["test"]["ndcg@10"] > m["baselines"]["popularity"]["ndcg@10"] + 0.05


def test_the_streamed_histories_hold_every_users_items(streamed):
    frame = log()
    user_ids, item_ids = streamed.recommender.user_ids, streamed.recommender.item_ids
    tensors = load_file(str(streamed.path / FILE))  # a standard safetensors file, whatever wrote it
    indptr, items = tensors["history.indptr"], tensors["history.items"]
    for user in (0, 7, len(user_ids) - 1):
        expected = frame.movieId[frame.userId == user_ids[user]].tolist()
        assert sorted(item_ids[i] for i in items[indptr[user]:indptr[user + 1]]) == sorted(expected)


def test_a_streamed_run_loads_and_never_recommends_a_seen_item(streamed):
    run = RecommenderRun.load(streamed.path)
    frame = log()
    lists = run.predict([1000, 1001], k=10)
    for user, rows in lists.groupby("user"):
        assert not set(rows["item"]) & set(frame.movieId[frame.userId == user])
    assert lists.equals(streamed.predict([1000, 1001], k=10))


def test_damaged_histories_are_refused(streamed, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(streamed.path, run)
    n_users, n_items = len(streamed.recommender.user_ids), len(streamed.recommender.item_ids)
    indptr, items = open_histories(run / FILE, n_users, n_items)
    save_histories(run / FILE, np.array(indptr), np.array(items) + n_items)
    with pytest.raises(RunDirError, match="not rows of item indices"):
        RecommenderRun.load(run)
    (run / FILE).write_bytes(b"not a safetensors file")
    with pytest.raises(RunDirError, match="not a readable safetensors"):
        RecommenderRun.load(run)


def test_a_streamed_fit_not_written_to_a_folder_leaves_nothing_in_tmp(shards, monkeypatch, tmp_path):
    import tempfile

    from scaletrain.recommend.scorers import Scorer

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    opened = log_stream.LogStream.open(str(shards), read_manifest(str(shards)), DataConfig())
    popular = Scorer({"model": "popularity"}, {"popularity": stream_fit.popularity_without(opened)})
    recommender = stream_fit.shipped(opened, popular, None)
    assert not list(tmp_path.iterdir())  # the histories are read through the mapping of an unlinked file
    assert int(recommender.indptr[-1]) == 12_000 and len(np.array(recommender.indices)) == 12_000


def test_the_log_is_read_a_row_group_at_a_time_never_whole(shards, monkeypatch):
    opened = log_stream.LogStream.open(str(shards), read_manifest(str(shards)), DataConfig())
    sizes = [len(frame) for frame in opened.frames()]
    assert len(sizes) > 1 and max(sizes) < 12_000 and sum(sizes) == 12_000
    frame = log()
    last = frame.groupby("userId").movieId.last()
    assert [opened.item_ids[i] for i in opened.latest_item[:5]] == last.iloc[:5].tolist()


def test_a_killed_streamed_factorization_resumed_is_the_same_to_the_bit(shards, tmp_path, killed_after_two_epochs):
    opened = log_stream.LogStream.open(str(shards), read_manifest(str(shards)), DataConfig())
    shape = factorization.BprShape(dim=8, epochs=3, batch=512)

    def fit(folder=None):
        return factorization.fit_bpr_streamed(lambda epoch: opened.shuffled_rows(0, epoch), len(opened.user_ids),
                                              len(opened.item_ids), shape, folder)

    whole = fit()
    with pytest.raises(KeyboardInterrupt):
        fit(tmp_path / "ck")
    killed_after_two_epochs.undo()
    resumed = fit(tmp_path / "ck")
    for name, weights in whole.state_dict().items():
        assert torch.equal(weights, resumed.state_dict()[name]), name


def test_a_streamed_factorization_folds_users_past_the_table_limit(monkeypatch):
    monkeypatch.setattr(factorization, "USER_ROWS", 64)
    frame = log(2_000)

    def epoch_rows(epoch):
        yield (frame.userId - 1000).to_numpy(), (frame.movieId - 1).to_numpy()

    model = factorization.fit_bpr_streamed(epoch_rows, USERS, ITEMS, factorization.BprShape(dim=8, epochs=1, batch=256))
    assert model.users.weight.shape == (64, 8)
    assert factorization.folding_note(USERS) and not factorization.folding_note(64)


def test_two_ranks_stream_the_same_factorization_as_one_process(shards, tmp_path, monkeypatch):
    import subprocess
    import sys

    settings = {(log_stream, "STREAM_ROWS"): 1_000, (stream_fit, "EVAL_USERS"): 100, (stream_fit, "STREAM_BATCH"): 256}
    script = tmp_path / "fit.py"
    script.write_text(
        "import sys\nimport scaletrain\nfrom scaletrain.recommend import log_stream, stream_fit\n"
        + "".join(f"{module.__name__.rsplit('.', 1)[1]}.{name} = {value}\n" for (module, name), value in settings.items())
        + "scaletrain.fit(sys.argv[1], out=sys.argv[2], data__task='recommend', model='mf')\n")
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
                           "--master-port", str(free_port()), str(script), str(shards), str(tmp_path / "ranks2")],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    for (module, name), value in settings.items():  # the one process: this one, as the script sets it
        monkeypatch.setattr(module, name, value)
    scaletrain.fit(str(shards), out=tmp_path / "ranks1", data__task="recommend", model="mf", verbose=False)
    runs = {ranks: RecommenderRun.load(tmp_path / f"ranks{ranks}") for ranks in (1, 2)}
    one, two = (runs[r].recommender.scorer.weights for r in (1, 2))
    for name in ("users", "items", "bias"):  # the same steps; only the sums' order differs
        torch.testing.assert_close(two[name], one[name], rtol=1e-3, atol=1e-4)
    assert "rows each batch touched" in runs[2].metrics["distributed"]["gradients"]


def test_a_streamed_log_refuses_what_it_cannot_train(shards, monkeypatch):
    from scaletrain.errors import ConfigError

    monkeypatch.setattr(log_stream, "STREAM_ROWS", 1_000)
    with pytest.raises(ConfigError, match="streamed.*mf or popularity"):
        scaletrain.fit(str(shards), out=None, data__task="recommend", model="ease")
    for flag in ("items", "users"):
        with pytest.raises(ConfigError, match=f"--{flag}"):
            scaletrain.fit(str(shards), out=None, data__task="recommend", **{f"data__{flag}": f"{flag}.csv"})


def test_a_streamed_log_keeps_only_the_ratings_data_min_rating_asks_for(shards, monkeypatch):
    monkeypatch.setattr(log_stream, "STREAM_ROWS", 1_000)
    monkeypatch.setattr(stream_fit, "STREAM_EPOCHS", 1)
    run = scaletrain.fit(str(shards), out=None, data__task="recommend", data__min_rating=4)
    assert run.metrics["data"]["interactions"] == int((log().rating >= 4).sum())
    assert any("a rating of 4 or more in 'rating'" in note for note in run.metrics["notes"])
