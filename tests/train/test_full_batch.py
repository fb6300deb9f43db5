"""Full-batch L-BFGS: solves the convex linear problem scikit-learn solves, and chooses its L2
strength by cross-validation only where the folds show a real gain."""
import numpy as np
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression, Ridge

from scaletrain.train.full_batch import choose_l2, fit_lbfgs


def test_lbfgs_reaches_scikit_learns_logistic_regression():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 4))
    y = (x @ [1.0, -2.0, 0.5, 0.0] + rng.normal(size=300) > 0).astype(int)
    l2 = 0.01
    model = torch.nn.Linear(4, 2)
    fit_lbfgs(model, (torch.tensor(x, dtype=torch.float32),), torch.tensor(y), F.cross_entropy, l2)
    # softmax over two logits: the difference of the rows is the binary model's weight vector, and
    # at the optimum the rows are opposite, so the penalty on both is half that on the difference
    reference = LogisticRegression(C=2 / (l2 * len(y)), tol=1e-10, max_iter=10000).fit(x, y)
    ours = (model.weight[1] - model.weight[0]).detach().numpy()
    np.testing.assert_allclose(ours, reference.coef_[0], atol=2e-3)


def test_ridge_by_lbfgs_matches_the_closed_form():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 5))
    y = x @ [1.0, 0.0, -1.0, 2.0, 0.5] + rng.normal(size=200)
    l2 = 0.05
    model = torch.nn.Linear(5, 1)
    fit_lbfgs(model, (torch.tensor(x, dtype=torch.float32),), torch.tensor(y, dtype=torch.float32),
              lambda out, t: F.mse_loss(out.squeeze(-1), t), l2)
    # mean squared error + l2/2 |w|^2  ==  (1/n)(|y - Xw|^2 + alpha |w|^2) / ... with alpha = l2 * n / 2
    reference = Ridge(alpha=l2 * len(y) / 2).fit(x, y)
    np.testing.assert_allclose(model.weight[0].detach().numpy(), reference.coef_, atol=2e-3)


def _wide_noisy(seed: int):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(80, 60))
    y = x[:, 0] * 0.5 + rng.normal(size=80)  # one weak signal among 60 columns
    return (torch.tensor(x, dtype=torch.float32),), torch.tensor(y, dtype=torch.float32)


def test_cross_validation_strengthens_the_penalty_where_the_folds_show_overfitting():
    inputs, y = _wide_noisy(0)
    loss = lambda out, t: F.mse_loss(out.squeeze(-1), t)  # noqa: E731
    chosen, path = choose_l2(lambda: torch.nn.Linear(60, 1), inputs, y, loss, "regression", seed=0)
    default = 1 / len(y)
    assert chosen > 10 * default and path[chosen] < path[default]


def test_the_default_strength_is_kept_when_no_other_wins_by_more_than_noise():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(400, 3))
    y = (x @ [2.0, -1.0, 1.0] + 0.3 * rng.normal(size=400) > 0).astype(int)
    inputs, target = (torch.tensor(x, dtype=torch.float32),), torch.tensor(y)
    chosen, path = choose_l2(lambda: torch.nn.Linear(3, 2), inputs, target, F.cross_entropy, "binary", seed=0)
    assert chosen == 1 / len(y) and len(path) > 5


def test_with_many_rows_the_strength_is_chosen_on_the_validation_rows_and_left_fitted():
    from scaletrain.train.full_batch import l2_on_validation, on_validation

    assert on_validation(2000, 400) and not on_validation(1999, 400) and not on_validation(5000, 10)
    rng = np.random.default_rng(3)
    x = torch.tensor(rng.normal(size=(600, 60)), dtype=torch.float32)
    y = x[:, 0] * 0.5 + torch.tensor(rng.normal(size=600), dtype=torch.float32)  # one weak signal among 60
    loss = lambda out, t: F.mse_loss(out.squeeze(-1), t)  # noqa: E731
    model = torch.nn.Linear(60, 1)
    chosen, path = l2_on_validation(model, (x[:300],), y[:300], ((x[300:],), y[300:]), loss)
    assert path[chosen] == min(path.values()) and chosen > 1 / 300  # stronger than the default on noise
    fresh = torch.nn.Linear(60, 1)
    fit_lbfgs(fresh, (x[:300],), y[:300], loss, chosen)
    np.testing.assert_allclose(model.weight.detach().numpy(), fresh.weight.detach().numpy(), atol=1e-3)
