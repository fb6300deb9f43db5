"""`--task recommend` end to end on generated interactions with a planted structure: roles found
by name, the splits, a recovered taste, seen items never recommended, `predict --k` and
`/recommend` agreeing, the exported tower's scores, and a tampered run directory refused."""
import json

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest
import torch
from fastapi.testclient import TestClient
from safetensors import safe_open
from safetensors.numpy import load_file
from typer.testing import CliRunner

import scaletrain
from scaletrain.cli import app
from scaletrain.data.split import random_per_user
from scaletrain.errors import DataError, RunDirError
from scaletrain.io import load_tensors, save_tensors
from scaletrain.recommend.interactions import history
from scaletrain.recommend.run import RecommenderRun
from scaletrain.serve import load_app
from scaletrain.serve.limits import Limits
from tests import warm_cli

N_USERS, N_ITEMS, GROUP_ITEMS = 160, 40, 10


def planted(seed: int = 0) -> pd.DataFrame:
    """Four tastes: a user of group g watches, in time order, 7 of items 10g..10g+9, and a
    couple of items at random; which of the taste's items come first is random."""
    rng = np.random.default_rng(seed)
    rows = []
    for user in range(N_USERS):
        group = user % 4
        liked = rng.permutation(np.arange(group * GROUP_ITEMS, (group + 1) * GROUP_ITEMS))[:7]
        noise = rng.choice(N_ITEMS, 2, replace=False)
        for t, item in enumerate(np.r_[noise, liked]):
            rows.append({"userId": f"u{user}", "movieId": int(item) + 100, "rating": int(rng.integers(1, 6)),
                         "timestamp": 1_000_000 + 1000 * user + t})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> RecommenderRun:
    out = tmp_path_factory.mktemp("rec") / "run"
    frame = planted()
    return scaletrain.fit(frame, out=out, data__task="recommend")


def test_roles_are_found_by_their_names_and_said(trained):
    notes = " ".join(trained.metrics["notes"])
    assert trained.metrics["data"]["roles"] == {"user": "userId", "item": "movieId", "rating": "rating",
                                                "time": "timestamp"}
    assert "the time column is 'timestamp'" in notes and "every rating" in notes
    frame = planted().rename(columns={"movieId": "thing"})
    with pytest.raises(DataError, match="no item column found.*--item"):
        scaletrain.fit(frame, out=None, data__task="recommend")


def test_a_planted_taste_is_recovered_and_beats_popularity(trained):
    m = trained.metrics
    assert m["spec"]["model"] != "popularity"
    assert m["test"]["hr@10"] > m["baselines"]["popularity"]["hr@10"] + 0.2
    assert m["test_sampled"]["hr@10"] >= m["test"]["hr@10"] and "NOT the full ranking" in m["test_sampled"]["what"]
    frame = trained.predict([f"u{u}" for u in range(0, N_USERS, 4)], k=3)  # group 0: items 100-109
    assert frame["item"].between(100, 109).mean() > 0.9


def test_seen_items_are_never_recommended(trained):
    data = planted()
    frame = trained.predict(sorted(data["userId"].unique()), k=N_ITEMS)
    seen = set(zip(data["userId"], data["movieId"]))
    assert not any((u, i) in seen for u, i in zip(frame["user"], frame["item"]))
    per_user = frame.groupby("user").size()
    assert (per_user == N_ITEMS - data.groupby("userId")["movieId"].nunique()).all()  # every unseen item, once


def test_an_unknown_user_gets_popular_items_and_strict_refuses_them(trained):
    frame = trained.predict(["nobody"], k=3)
    counts = planted()["movieId"].value_counts()
    assert not frame["known"].any() and frame["item"].tolist() == counts.index[:3].tolist()
    assert "not in the training data" in frame.attrs["warnings"][0]
    with pytest.raises(DataError, match="not trained on"):
        trained.predict(["nobody"], k=3, strict=True)
    with pytest.raises(DataError, match="does not exist"):  # a mistyped file is not taken for a user id
        trained.predict("users.cvs.csv", k=3)


def test_predict_k_on_the_command_line_and_the_served_lists_agree(trained, tmp_path):
    pd.DataFrame({"userId": ["u1", "u2", "nobody"]}).to_csv(tmp_path / "users.csv", index=False)
    result = CliRunner().invoke(app, ["predict", str(trained.path), str(tmp_path / "users.csv"), "--k", "4",
                                      "--output", str(tmp_path / "lists.csv")])
    assert result.exit_code == 0, result.output
    written = pd.read_csv(tmp_path / "lists.csv")
    client = TestClient(load_app(trained.path))
    posted = client.post("/recommend", json={"users": ["u1", "u2", "nobody"], "k": 4}).json()["recommendations"]
    one = client.get("/recommend", params={"user": "u1", "k": 4}).json()["recommendations"][0]
    assert [i["item"] for i in one["items"]] == [i["item"] for i in posted[0]["items"]]
    assert np.allclose([i["score"] for i in one["items"]], [i["score"] for i in posted[0]["items"]], rtol=1e-5)
    for answer in posted:
        rows = written[written["user"] == answer["user"]]
        assert [i["item"] for i in answer["items"]] == rows["item"].tolist()
        assert np.allclose([i["score"] for i in answer["items"]], rows["score"], rtol=1e-5)
    assert [a["known"] for a in posted] == [True, True, False]


def test_the_server_bounds_what_a_request_may_ask(trained):
    client = TestClient(load_app(trained.path, limits=Limits(rows=5)))
    assert client.get("/recommend", params={"user": "u1", "k": 5000}).status_code == 422
    assert client.post("/recommend", json={"users": ["u1"] * 6}).status_code == 413
    assert client.post("/recommend", json={"users": [["u1"]]}).status_code == 422
    assert client.post("/recommend", content=b"{not json").status_code == 400
    assert client.get("/health").json()["status"] == "ok"
    because = client.get("/recommend", params={"user": "u1", "k": 2, "explain": 2}).json()["recommendations"][0]
    assert all(b["item"] in set(planted().query("userId == 'u1'")["movieId"]) for i in because["items"]
               for b in i["because"])  # reasons are the user's own past items


def test_the_exported_tower_scores_as_the_run_does(trained, tmp_path):
    from scaletrain.export import export_onnx

    path = export_onnx(trained.path, tmp_path / "rec.onnx")
    card = json.loads(path.with_suffix(".card.json").read_text())
    embeddings = load_tensors(tmp_path / "item_embeddings.safetensors")
    users = np.arange(6)
    history = trained.recommender.history_rows(users).numpy()
    vector, scores = ort.InferenceSession(str(path)).run(None, {card["input"]: history})
    assert np.allclose(scores, trained.recommender.scores(users).numpy(), atol=1e-5)
    assert np.allclose(vector @ embeddings["items"].numpy().T + embeddings["bias"].numpy(), scores, atol=1e-5)
    assert card["items"] == trained.recommender.item_ids


def test_matrix_factorization_exports_a_user_tower(tmp_path):
    run = scaletrain.fit(planted(), out=tmp_path / "mf", data__task="recommend", model="mf")
    assert run.metrics["spec"]["model"] == "mf"
    from scaletrain.export import export_onnx

    path = export_onnx(run.path)
    _, scores = ort.InferenceSession(str(path)).run(None, {"user": np.arange(5, dtype=np.int64)})
    assert np.allclose(scores, run.recommender.scores(np.arange(5)).numpy(), atol=1e-4)


def test_users_past_the_table_limit_share_folded_rows(tmp_path, monkeypatch):
    from scaletrain.export import export_onnx
    from scaletrain.models import factorization

    monkeypatch.setattr(factorization, "USER_ROWS", 40)  # 160 users: u, u+40, u+80, u+120 share a row (one taste)
    run = scaletrain.fit(planted(), out=tmp_path / "mf", data__task="recommend", model="mf")
    assert run.recommender.scorer.weights["users"].shape[0] == 40
    assert "160 users share 40 rows" in " ".join(run.metrics["notes"])
    assert run.metrics["test"]["hr@10"] > run.metrics["baselines"]["popularity"]["hr@10"] + 0.1
    loaded = RecommenderRun.load(run.path)
    users = np.array([3, 43, 150])
    assert torch.equal(loaded.recommender.scores(users), run.recommender.scores(users))
    _, scores = ort.InferenceSession(str(export_onnx(run.path))).run(None, {"user": users})
    assert np.allclose(scores, run.recommender.scores(users).numpy(), atol=1e-4)
    weights = load_tensors(run.path / "model.safetensors")  # more rows than users: damaged, refused
    weights["users"] = torch.zeros((N_USERS + 1, weights["users"].shape[1]))
    with safe_open(str(run.path / "model.safetensors"), "pt") as fh:
        save_tensors(run.path / "model.safetensors", weights, metadata=fh.metadata())
    with pytest.raises(RunDirError, match="need"):
        RecommenderRun.load(run.path)


@pytest.mark.parametrize("damage, message", [
    ("items", "need"), ("history", "not rows of item indices"), ("spec", "not non-negative numbers"),
    ("older", "older scaletrain"),
])
def test_a_tampered_recommender_run_is_refused(trained, tmp_path, damage, message):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained.path, run)
    if damage == "items":
        state = json.loads((run / "preprocess.json").read_text())
        state["items"] = state["items"][:-1]
        (run / "preprocess.json").write_text(json.dumps(state))
    elif damage == "history":
        from scaletrain.recommend.histories import save_histories

        history_file = load_file(str(run / "history.safetensors"))
        save_histories(run / "history.safetensors", history_file["history.indptr"], history_file["history.items"] + 10_000)
    elif damage == "older":  # the layout before history.safetensors: the histories inside the weights
        history_file = load_file(str(run / "history.safetensors"))
        (run / "history.safetensors").unlink()
        tensors = load_tensors(run / "model.safetensors") | {k: torch.from_numpy(v) for k, v in history_file.items()}
        with safe_open(str(run / "model.safetensors"), "pt") as fh:
            save_tensors(run / "model.safetensors", tensors, metadata=fh.metadata())
    else:
        with safe_open(str(run / "model.safetensors"), "pt") as fh:
            spec = json.loads(fh.metadata()["model_spec"])
        spec["l2"] = "a lot"
        save_tensors(run / "model.safetensors", load_tensors(run / "model.safetensors"),
                     metadata={"model_spec": json.dumps(spec)})
    with pytest.raises(RunDirError, match=message):
        RecommenderRun.load(run)
    result = CliRunner().invoke(app, ["predict", str(run), "u1", "--k", "3"])
    assert result.exit_code == 2 and message.split()[0] in result.output


def test_random_per_user_holds_a_share_of_each_user_and_never_all():
    users = np.repeat(np.arange(4), [1, 2, 8, 20])
    kept, held = random_per_user(users, 0.25, seed=0)
    assert np.bincount(users[held], minlength=4).tolist() == [0, 1, 2, 5]
    assert sorted(np.r_[kept, held].tolist()) == list(range(len(users)))
    assert (random_per_user(users, 0.25, seed=0)[1] == held).all()


def test_without_a_time_column_the_split_is_random_per_user(tmp_path):
    run = scaletrain.fit(planted().drop(columns="timestamp"), out=None, data__task="recommend",
                         data__test_fraction=0.25)
    assert "random per user" in run.metrics["data"]["split"]
    assert run.metrics["test"]["users_scored"] == N_USERS


def test_a_row_run_refuses_k(served_table, tmp_path):
    result = CliRunner().invoke(app, ["predict", str(served_table), "x", "--k", "3"])
    assert result.exit_code == 2 and "--k is for recommender runs" in result.output


def test_torch_is_used_for_scores_not_a_users_by_items_matrix(trained):
    # scores come a batch of users at a time: asking for many users never builds users × items at once
    calls = []
    original = trained.recommender.scores

    def spy(users):
        calls.append(len(users))
        return original(users)

    trained.recommender.scores = spy
    try:
        trained.predict([f"u{u}" for u in range(N_USERS)] * 10, k=1)
    finally:
        del trained.recommender.scores
    assert max(calls) <= 1024 and torch.is_tensor(original(np.arange(2)))


def test_a_killed_factorization_resumed_is_the_same_to_the_bit(tmp_path, killed_after_two_epochs):
    from scaletrain.config import DataConfig
    from scaletrain.models import factorization
    from scaletrain.recommend.interactions import interactions_from

    found = interactions_from(planted(), DataConfig(), "planted")
    indptr, indices = history(found.users, found.items, found.times, found.n_users)
    whole = factorization.fit_bpr(indptr, indices, found.n_items, factorization.BprShape(dim=8, epochs=4))
    with pytest.raises(KeyboardInterrupt):
        factorization.fit_bpr(indptr, indices, found.n_items, factorization.BprShape(dim=8, epochs=4), tmp_path / "ck")
    killed_after_two_epochs.undo()
    resumed = factorization.fit_bpr(indptr, indices, found.n_items, factorization.BprShape(dim=8, epochs=4),
                                    tmp_path / "ck")
    for name, weights in whole.state_dict().items():
        assert torch.equal(weights, resumed.state_dict()[name]), name


def test_train_resume_continues_a_recommender_run(tmp_path):
    first = scaletrain.fit(planted(), out=tmp_path / "run", data__task="recommend", model="mf")
    assert list((tmp_path / "run" / "checkpoints").glob("*/step-*.safetensors"))
    planted().to_csv(tmp_path / "run.csv", index=False)
    result = CliRunner().invoke(app, ["train", str(tmp_path / "run.csv"), "--out", str(tmp_path / "run")])
    assert result.exit_code == 2 and "already holds a run" in result.output
    again = scaletrain.fit(planted(), out=tmp_path / "run", data__task="recommend", model="mf", resume=True)
    assert again.metrics["test"] == first.metrics["test"]
    assert torch.equal(again.recommender.scorer.weights["items"], first.recommender.scorer.weights["items"])


def test_two_ranks_train_the_same_factorization_as_one_process(tmp_path):

    planted().to_csv(tmp_path / "ratings.csv", index=False)
    done = warm_cli.run("train", tmp_path / "ratings.csv", "--task", "recommend", "--set", "model.name=mf", "--out",
                        tmp_path / "ranks2", "--quiet", "--nproc-per-node", "2", timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    # the one process: this one (a process of its own would only add its imports)
    scaletrain.fit(str(tmp_path / "ratings.csv"), out=tmp_path / "ranks1", data__task="recommend", model="mf",
                   verbose=False)
    runs = {ranks: RecommenderRun.load(tmp_path / f"ranks{ranks}") for ranks in (1, 2)}
    one, two = (runs[r].recommender.scorer.weights for r in (1, 2))
    for name in ("users", "items", "bias"):  # the same steps; only the gradient sums' order differs
        torch.testing.assert_close(two[name], one[name], rtol=1e-3, atol=1e-4)
    assert runs[2].metrics["distributed"]["ranks"] == 2 and "distributed" not in runs[1].metrics
    assert runs[2].metrics["test"]["hr@10"] == pytest.approx(runs[1].metrics["test"]["hr@10"], abs=0.02)


def test_two_towers_rank_items_nobody_has_seen_by_their_features(tmp_path):
    items = pd.DataFrame({"movieId": list(range(100, 100 + N_ITEMS)) + [900, 901, 902, 903],
                          "genres": [f"taste{(i // GROUP_ITEMS)} film" for i in range(N_ITEMS)]
                          + [f"taste{g} film" for g in range(4)]})  # 900-903: one new item per taste
    items.to_csv(tmp_path / "items.csv", index=False)
    run = scaletrain.fit(planted(), out=tmp_path / "towers", data__task="recommend", model="twotower",
                         data__items=str(tmp_path / "items.csv"))
    assert run.metrics["spec"]["model"] == "twotower" and len(run.recommender.item_ids) == N_ITEMS + 4
    assert "4 items with no interaction yet join the catalogue" in " ".join(run.metrics["notes"])
    model = run.recommender
    new = [model.item_ids.index(i) for i in (900, 901, 902, 903)]
    for group in range(4):
        users = model.user_indices([f"u{u}" for u in range(group, N_USERS, 4)])
        scores = model.scores(users)[:, new].mean(0)
        assert int(scores.argmax()) == group  # the new item of the users' own taste scores highest
    from scaletrain.export import export_onnx

    path = export_onnx(run.path)
    history = model.history_rows(np.arange(5)).numpy()
    _, onnx_scores = ort.InferenceSession(str(path)).run(None, {"history": history})
    assert np.allclose(onnx_scores, model.scores(np.arange(5)).numpy(), atol=1e-4)


def test_two_towers_rank_for_a_user_with_no_history_by_their_features(tmp_path):
    users = pd.DataFrame({"userId": [f"u{u}" for u in range(N_USERS)] + [f"new{g}" for g in range(4)],
                          "segment": [f"taste{u % 4}" for u in range(N_USERS)] + [f"taste{g}" for g in range(4)],
                          "age": np.random.default_rng(0).integers(18, 80, N_USERS + 4)})  # age: noise
    users.to_csv(tmp_path / "users.csv", index=False)
    planted().to_csv(tmp_path / "ratings.csv", index=False)
    done = CliRunner().invoke(app, ["train", str(tmp_path / "ratings.csv"), "--task", "recommend", "--users",
                                    str(tmp_path / "users.csv"), "--set", "model.name=twotower", "--out",
                                    str(tmp_path / "run"), "--quiet"])
    assert done.exit_code == 0, done.output
    run = RecommenderRun.load(tmp_path / "run")
    assert "4 users with no interaction yet join the users" in " ".join(run.metrics["notes"])
    lists = run.predict([f"new{g}" for g in range(4)], k=5)
    for g in range(4):  # a new user's list is their segment's taste, not the popular items
        rows = lists[lists["user"] == f"new{g}"]
        assert rows["known"].all() and (rows["item"] // GROUP_ITEMS - 10 == g).mean() >= 0.8, rows
    from scaletrain.export import export_onnx

    path = export_onnx(run.path)
    card = json.loads(path.with_suffix(".card.json").read_text())
    model, picked = run.recommender, np.array([0, 5, N_USERS, N_USERS + 3])
    assert card["inputs"] == ["history", "user"] and card["users"] == model.user_ids
    _, onnx_scores = ort.InferenceSession(str(path)).run(None, {"history": model.history_rows(picked).numpy(),
                                                                 "user": picked})
    assert np.allclose(onnx_scores, model.scores(picked).numpy(), atol=1e-4)


@pytest.mark.parametrize("table, message", [
    ("userId\nu1\nu2\n", "at least one feature column"), ("userId,age\n", "no data rows"),
    (None, "users.csv"),
])
def test_a_side_table_that_cannot_be_read_is_a_clear_error(tmp_path, table, message):
    if table is not None:
        (tmp_path / "users.csv").write_text(table)
    with pytest.raises(DataError, match=message):
        scaletrain.fit(planted(), out=None, data__task="recommend", data__users=str(tmp_path / "users.csv"))


def test_prepared_shards_and_wide_parquet_are_read_by_their_role_columns(tmp_path):
    planted().to_csv(tmp_path / "ratings.csv", index=False)
    done = CliRunner().invoke(app, ["prepare", str(tmp_path / "ratings.csv"), "--out", str(tmp_path / "shards"),
                                    "--target", "rating", "--quiet"])
    assert done.exit_code == 0, done.output
    run = scaletrain.fit(str(tmp_path / "shards"), out=None, data__task="recommend", model="ease")
    assert "prepared shard(s) read whole" in run.metrics["notes"][0]
    assert run.metrics["data"]["interactions"] == len(planted().drop_duplicates(["userId", "movieId"]))
    planted().assign(review=["a long text"] * len(planted())).to_parquet(tmp_path / "wide.parquet")
    from scaletrain.config import DataConfig
    from scaletrain.recommend.interactions import read_interactions

    frame, _ = read_interactions(str(tmp_path / "wide.parquet"), DataConfig())
    assert list(frame.columns) == ["userId", "movieId", "rating", "timestamp"]  # the review column never read


@pytest.mark.parametrize("rows, message", [
    ("userId,movieId\n1,2\n2,3\n", "no user has two interactions"),
    ("userId,movieId,timestamp\n1,2,2020-01-01\n1,3,yesterday\n", "row 3: time 'yesterday'"),
    ("userId,movieId\n,\n,\n", "no interactions left"),
])
def test_unusable_interactions_get_one_clear_line(tmp_path, rows, message):
    (tmp_path / "log.csv").write_text(rows)
    result = CliRunner().invoke(app, ["train", str(tmp_path / "log.csv"), "--task", "recommend", "--out",
                                      str(tmp_path / "run"), "--quiet"])
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "run" / "model.safetensors").exists()  # nothing half-written
