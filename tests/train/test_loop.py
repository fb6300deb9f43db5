import pytest
import torch
from torch import nn

from scaletrain.data.batches import TensorBatches
from scaletrain.train.callbacks import EarlyStopping
from scaletrain.train.loop import LoopSettings, TrainState, train_loop


def regression_data(n=64, d=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    return x, x @ torch.arange(1.0, d + 1) + 0.1 * torch.randn(n, generator=g)


def run(settings: LoopSettings, batch_size=16, seed=0, callbacks=(), model=None, data=None):
    torch.manual_seed(seed)
    x, y = data or regression_data()
    model = model or nn.Linear(x.shape[1], 1)
    batches = TensorBatches((x,), y, batch_size, shuffle=True, seed=seed)

    def loss_fn(out, t):
        return nn.functional.mse_loss(out.squeeze(-1), t)
    opt = torch.optim.SGD(model.parameters(), lr=settings.lr)
    state = train_loop(model, batches, loss_fn, opt, settings, lambda m: {"val_loss": 0.0}, list(callbacks))
    return model, state


def test_gradient_accumulation_equals_a_larger_batch():
    a, _ = run(LoopSettings(epochs=3, lr=0.05, grad_accum=2), batch_size=8)
    b, _ = run(LoopSettings(epochs=3, lr=0.05), batch_size=16)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.allclose(pa, pb, atol=1e-5)


def test_gradient_clipping_bounds_each_step():
    torch.manual_seed(0)
    model = nn.Linear(5, 1)
    before = [p.detach().clone() for p in model.parameters()]
    run(LoopSettings(epochs=1, lr=1.0, clip=1e-3), batch_size=64, model=model)
    change = torch.sqrt(sum(((p - q) ** 2).sum() for p, q in zip(model.parameters(), before)))
    assert change <= 1e-3 + 1e-6


def test_bf16_autocast_runs_layers_in_bfloat16_and_still_learns():
    seen = []
    model = nn.Linear(5, 1)
    model.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    _, state = run(LoopSettings(epochs=20, lr=0.05, precision="bf16"), model=model)
    assert torch.bfloat16 in seen and state.train_loss < 1.0


def test_l1_pushes_irrelevant_weights_to_zero():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(40, 20, generator=g)
    y = 3 * x[:, 0] - 2 * x[:, 1] + torch.randn(40, generator=g)  # noise that plain weights fit
    plain, _ = run(LoopSettings(epochs=200, lr=0.05), data=(x, y), batch_size=40)
    sparse, _ = run(LoopSettings(epochs=200, lr=0.05, l1=0.5), data=(x, y), batch_size=40)

    def small(m):
        return int((m.weight.abs() < 0.05).sum())
    assert small(sparse) >= 14 and small(plain) <= 3
    assert sparse.weight[0, 0] > 2 and sparse.weight[0, 1] < -1.5


def test_early_stopping_stops_and_restores_the_best_epoch():
    model = nn.Linear(1, 1, bias=False)
    state = TrainState(model, None, LoopSettings(epochs=10, lr=0.1), total_steps=10)
    stopper = EarlyStopping(patience=2)
    for epoch, (val, weight) in enumerate([(1.0, 1.0), (0.5, 2.0), (0.7, 3.0), (0.8, 4.0), (0.2, 5.0)]):
        nn.init.constant_(model.weight, weight)
        state.epoch, state.val = epoch, {"val_loss": val}
        stopper.on_epoch_end(state)
        if state.stop:
            break
    assert state.stop and state.epoch == 3 and stopper.best_epoch == 1
    stopper.on_train_end(state)
    assert model.weight.item() == 2.0


@pytest.mark.serial
def test_time_limit_stops_training(tmp_path):
    from scaletrain.train.callbacks import TimeLimit

    _, state = run(LoopSettings(epochs=100000, lr=0.01, time_limit=0.3), callbacks=[TimeLimit(0.3)])
    assert state.stop and 0.3 <= state.elapsed < 5


def test_time_spent_before_training_counts_against_the_limit():
    from scaletrain.train.callbacks import TimeLimit

    # Loading already took longer than the whole budget: one step, not 10 s of training. (A limit
    # that ignored the time spent would run for 10 s and many thousand steps.)
    _, state = run(LoopSettings(epochs=100000, lr=0.01, time_limit=10.0, time_spent=10.5), callbacks=[TimeLimit(10.0)])
    assert state.stop and state.step == 1 and state.elapsed >= 10.5


@pytest.mark.serial
def test_time_needed_after_training_moves_the_limit_and_the_schedule_earlier():
    from scaletrain.train.callbacks import TimeLimit

    settings = LoopSettings(epochs=100000, lr=0.1, schedule="onecycle", time_limit=1.0)
    _, state = run(settings, callbacks=[TimeLimit(1.0, after=lambda: 0.8)])
    assert state.stop and 0.2 <= state.elapsed < 0.8  # 0.8 s kept for the final evaluation
    assert state.time_limit == pytest.approx(0.2) and state.lr < 0.01 * 0.1  # annealed by the earlier end
    assert settings.time_limit == 1.0  # the callback moved the state's limit, not the loop's settings


@pytest.mark.serial
def test_a_time_limited_one_cycle_anneals_by_the_time_it_stops():
    from scaletrain.train.callbacks import TimeLimit

    _, state = run(LoopSettings(epochs=10**6, lr=0.1, schedule="onecycle", time_limit=0.5), callbacks=[TimeLimit(0.5)])
    assert state.stop and state.epoch < 10**6 - 1 and state.lr < 0.01 * 0.1  # ended by time, annealed


def test_compiled_training_matches_eager_training(monkeypatch):
    from torch._dynamo.utils import counters

    import scaletrain.train.device as device

    monkeypatch.setattr(device, "COMPILE_BACKEND", "aot_eager")  # dynamo + autograd tracing, no C++ build
    torch._dynamo.reset()
    counters.clear()
    eager, _ = run(LoopSettings(epochs=2, lr=0.05))
    compiled, _ = run(LoopSettings(epochs=2, lr=0.05, compile=True))
    assert counters["stats"]["unique_graphs"] >= 1  # the forward really went through torch.compile
    for a, b in zip(eager.parameters(), compiled.parameters()):
        assert torch.allclose(a, b, atol=1e-6)
    assert list(compiled.state_dict()) == ["weight", "bias"]  # checkpoints keep the plain names


def poisoned_loss(bad_batches: set):
    """An MSE loss that turns NaN on the given batch numbers (0-based, counted across epochs)."""
    calls = {"n": 0}

    def loss_fn(out, t):
        loss = nn.functional.mse_loss(out.squeeze(-1), t)
        n, calls["n"] = calls["n"], calls["n"] + 1
        return loss * float("nan") if n in bad_batches else loss
    return loss_fn


def test_nan_loss_stops_with_the_step_and_advice():
    from scaletrain.errors import TrainingError

    x, y = regression_data()
    batches = TensorBatches((x,), y, 16)
    model = nn.Linear(5, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with pytest.raises(TrainingError, match=r"step 3 .*train.lr"):
        train_loop(model, batches, poisoned_loss({2}), opt, LoopSettings(epochs=2, lr=0.01), lambda m: {}, [])


@pytest.mark.parametrize("bad, steps", [(5, "5 and 6"), (4, "4 and 4")])  # caught mid-epoch / at its end
def test_a_deferred_nan_check_still_stops_and_names_the_steps(bad, steps):
    """The CUDA path reads the check every few steps; forced here on CPU: every 3 of 4 steps an epoch."""
    from scaletrain.errors import TrainingError

    x, y = regression_data()
    model = nn.Linear(5, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with pytest.raises(TrainingError, match=f"between steps {steps}"):
        train_loop(model, TensorBatches((x,), y, 16), poisoned_loss({bad - 1}), opt,
                   LoopSettings(epochs=5, lr=0.01, nan_check_every=3), lambda m: {}, [])


def test_nan_batches_can_be_skipped_without_touching_weights():
    x, y = regression_data()
    model = nn.Linear(5, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    state = train_loop(model, TensorBatches((x,), y, 16), poisoned_loss({1}), opt,
                       LoopSettings(epochs=1, lr=0.01, on_nan="skip"), lambda m: {}, [])
    assert state.step == 3 and torch.isfinite(model.weight).all()


def test_batch_sources_on_the_cpu_reach_the_training_device():
    """Memory-mapped pretraining shards yield CPU tensors; OnDevice moves inputs and targets
    (the meta device stands in for CUDA here: the loop itself never moves data)."""
    from scaletrain.train.device import OnDevice

    x, y = regression_data()
    batches = OnDevice(TensorBatches((x,), y, 16), torch.device("meta"))
    drawn = list(batches.epoch(0, start=1))
    assert len(batches) == 4 and len(drawn) == 3
    assert all(inputs[0].is_meta and target.is_meta for inputs, target in drawn)


def test_seeding_draws_as_torch_manual_seed_does_without_formatting_the_stack(monkeypatch):
    """A search seeds every model it builds; torch.manual_seed formats the caller's stack for its lazy device seeds."""
    import traceback

    from scaletrain.train.setup import seed_everything

    torch.manual_seed(7)
    expected = torch.rand(3)

    def refused(*args, **kwargs):
        raise AssertionError("the stack was formatted to seed")

    monkeypatch.setattr(traceback, "format_stack", refused)
    seed_everything(7)
    assert torch.equal(torch.rand(3), expected)
