import math

import pytest
import torch
from torch import nn

from scaletrain.config import make_config
from scaletrain.models.init import apply_init
from scaletrain.models.registry import ModelSpec, build_model


def layer_stats(scheme: str, fan_in=400, fan_out=300):
    layer = nn.Linear(fan_in, fan_out)
    apply_init(layer, scheme)
    return layer.weight.detach(), layer.bias.detach()


@pytest.mark.parametrize("scheme,std", [
    ("uniform", 1 / math.sqrt(3 * 400)),        # U(-1/sqrt(fan_in), +)
    ("normal", 1 / math.sqrt(400)),
    ("xavier", math.sqrt(2 / (400 + 300))),
    ("kaiming", math.sqrt(2 / 400)),
])
def test_init_schemes_have_their_variance(scheme, std):
    w, b = layer_stats(scheme)
    assert abs(w.std().item() - std) / std < 0.05 and (b == 0).all()


def test_uniform_init_is_bounded_and_normal_is_not():
    w, _ = layer_stats("uniform")
    assert w.abs().max() <= 1 / math.sqrt(400)
    w, _ = layer_stats("normal")
    assert w.abs().max() > 1 / math.sqrt(400)


def test_mlp_784_128_10_from_config_alone():
    cfg = make_config({"model": {"name": "mlp", "hidden": [128], "dropout": 0.0, "norm": "none", "init": "xavier"}})
    model = build_model(ModelSpec("table", 10, n_dense=784), cfg.model)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(784, 128), (128, 10)]
    assert model(torch.randn(5, 784)).shape == (5, 10)


def test_dropout_is_off_in_eval():
    cfg = make_config({"model": {"name": "mlp", "hidden": [64], "dropout": 0.5, "norm": "none", "init": "kaiming"}})
    model = build_model(ModelSpec("table", 3, n_dense=10), cfg.model)
    x = torch.randn(8, 10)
    model.train()
    assert not torch.equal(model(x), model(x))
    model.eval()
    assert torch.equal(model(x), model(x))


@pytest.mark.parametrize("name", ["cnn", "resnet", "mlp", "linear"])
def test_image_models_take_raw_pixels(name):
    cfg = make_config({"model": {"name": name, "width": 8, "depth": 2, "hidden": [16], "dropout": 0.0,
                                 "norm": "batch", "init": "kaiming"}})
    model = build_model(ModelSpec("image", 4, shape=(3, 16, 16), mean=(0.5,) * 3, std=(0.25,) * 3), cfg.model)
    assert model(torch.rand(2, 3, 16, 16)).shape == (2, 4)


def test_table_model_embeds_categories():
    cfg = make_config({"model": {"name": "mlp", "hidden": [8], "dropout": 0.0, "norm": "layer",
                                 "init": "kaiming", "embedding_dim": 3}})
    model = build_model(ModelSpec("table", 2, n_dense=4, cardinalities=(10, 5)), cfg.model)
    out = model(torch.randn(6, 4), torch.randint(0, 6, (6, 2)))
    assert out.shape == (6, 2) and model.embeddings[0].num_embeddings == 11


def test_the_weighted_bag_takes_the_sparse_path_with_the_bags_gradient():
    """Full-batch fits see the same rows again: the cached sparse product must give the same
    outputs and gradients as the bag, and evaluation must keep using the bag."""
    from scaletrain.models.tabular import WeightedBag

    torch.manual_seed(0)
    tokens, weights = torch.randint(0, 50, (40, 12)), torch.rand(40, 12)
    tokens[:, 3] = tokens[:, 4]  # a piece twice in a row: its weights add up
    bag = WeightedBag(50, 3)
    reference = torch.nn.EmbeddingBag(50, 3, mode="sum")
    reference.weight.data.copy_(bag.weight.data)
    expected = reference(tokens, per_sample_weights=weights)
    expected.square().sum().backward()
    for _ in range(3):  # the bag, then the sparse product (built on the second sight), then reused
        bag.weight.grad = None
        out = bag(tokens, weights)
        out.square().sum().backward()
        torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(bag.weight.grad, reference.weight.grad, rtol=1e-5, atol=1e-5)
    assert len(bag._seen) == 4
    bag.eval()
    assert bag._seen is None  # rows are not kept past training


def test_periodic_numeric_embeddings_embed_the_dense_columns_and_pass_the_rest():
    from scaletrain.models.tabular import PeriodicNumbers

    layer = PeriodicNumbers(3, frequencies=4, dim=5)
    x = torch.randn(7, 3 + 2)
    out = layer(x)
    assert out.shape == (7, 3 * 5 + 2) and torch.equal(out[:, -2:], x[:, -2:])
    assert (out[:, :15] >= 0).all()  # ReLU after each column's linear map
    spec = ModelSpec("table", 1, n_dense=3)
    config = make_config(sets=["model.name=mlp", "model.numeric_embedding=periodic", "model.hidden=[8]"]).model
    model = build_model(spec, config)
    assert isinstance(model.body[0], PeriodicNumbers) and model(torch.randn(4, 3)).shape == (4, 1)


def test_piece_pairs_weigh_pairs_seen_in_two_rows_as_tfidf_and_drop_the_rest():
    from scaletrain.data.text import pair_ids, tfidf_weights
    from scaletrain.models.tabular import PiecePairs

    tokens = torch.tensor([[5, 6, 7, 0], [5, 6, 9, 0], [8, 8, 8, 8], [8, 8, 0, 0]])  # (5, 6), (8, 8): two rows each
    pairs = PiecePairs(vocab_size=10, buckets=1 << 10)
    pairs.fit_idf(tokens)
    bucket = pair_ids(tokens, 1 << 10)
    assert pairs.idf[bucket[0, 0]] == pytest.approx(math.log(5 / 3) + 1)  # scikit-learn's smooth idf, 2 of 4 rows
    assert pairs.idf[bucket[2, 0]] == pytest.approx(math.log(5 / 3) + 1) and pairs.idf[bucket[0, 1]] == 0  # (6, 7): one row
    weights = torch.rand(4, 4)
    ids, both = pairs(tokens, weights)
    assert ids.shape == (4, 7) and bool((ids[:, 4:][bucket > 0] >= 10).all())  # pairs after the vocabulary
    expected = torch.cat([weights, tfidf_weights(bucket, pairs.idf)], dim=1) * 0.5 ** 0.5
    torch.testing.assert_close(both, expected)
    assert float(both[2, 4:].sum()) == pytest.approx(0.5 ** 0.5)  # (8, 8) three times: one term, its half of norm 1/√2
