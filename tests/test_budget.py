"""The automatic mode under a time limit: a learning-rate range test and a model narrow
enough for the budget."""
import torch
from sklearn.datasets import load_breast_cancer
from torch import nn

from scaletrain.api import fit
from scaletrain.config import Config
from scaletrain.data.batches import TensorBatches
from scaletrain.fitting.recipe import resolve
from scaletrain.modalities.image.modality import ImageFacts
from scaletrain.modalities.table.modality import TableFacts
from scaletrain.train import sizing
from scaletrain.train.budget import TRAINING_SHARE, Budget
from scaletrain.train.lr_find import lr_range_test, seconds_per_step


def _regression(n=512, d=8):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, d, generator=g)
    return x, x @ torch.randn(d, 1, generator=g)


def test_the_range_test_picks_a_rate_below_divergence_and_restores_the_model():
    # Plain SGD on MSE of standardized inputs diverges above lr ≈ 2 / (2 λmax) ≈ 1 / λmax of
    # the inputs' covariance (≈ 1 here, a bit more for 8 sampled dimensions): the pick must
    # be well below that, and well above "no learning".
    x, y = _regression()
    torch.manual_seed(0)  # the weights drawn, not whatever ran before: 2 draws in 40 trained a little less
    model = nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.Linear(16, 1))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    finding = lr_range_test(model, TensorBatches((x,), y, 64, shuffle=True, seed=0), nn.MSELoss(),
                            lambda lr: torch.optim.SGD(model.parameters(), lr=lr), steps=100)
    assert finding.diverged_at is not None and 0.1 < finding.diverged_at < 3
    assert 1e-3 < finding.lr < finding.diverged_at / 5
    assert min(finding.losses) < finding.losses[0] * 0.6  # it trained on the way up
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # weights and batch-norm statistics


def test_the_range_test_is_skipped_when_too_few_steps_fit_its_share_of_the_budget():
    x, y = _regression()
    model = nn.Linear(8, 1)
    before = model.weight.detach().clone()
    finding = lr_range_test(model, TensorBatches((x,), y, 64, shuffle=True, seed=0), nn.MSELoss(),
                            lambda lr: torch.optim.SGD(model.parameters(), lr=lr), max_seconds=1e-9)
    assert finding is None and torch.equal(model.weight, before)


def test_auto_turns_the_range_test_on_only_for_a_time_limit_without_a_named_lr():
    facts = TableFacts("table", "binary", 400, 2, n_features=5)
    config = Config()
    assert resolve(config, facts).train.lr_find is False
    config.train.time_limit = 30.0
    assert resolve(config, facts).train.lr_find is True
    config.train.lr = 0.003
    assert resolve(config, facts).train.lr_find is False


def test_one_preempted_step_does_not_set_the_step_time():
    import time

    class OneSlowFetch(TensorBatches):  # the third batch waits 0.3 s, as a step the OS preempted
        def epoch(self, n):
            for i, batch in enumerate(super().epoch(n)):
                if i == 2:
                    time.sleep(0.3)
                yield batch

    x, y = _regression()
    model = nn.Linear(8, 1)
    step = seconds_per_step(model, OneSlowFetch((x,), y, 64), nn.MSELoss(), torch.optim.SGD(model.parameters(), lr=0.01))
    assert step < 0.05  # a mean of the timed steps would be >= 0.06


def test_a_time_limited_fit_trains_with_the_range_tests_rate(tmp_path):
    frame = load_breast_cancer(as_frame=True).frame
    run = fit(frame, "target", out=tmp_path / "run", time_limit=60, model="mlp")  # 3 s for the test: room on a busy machine
    notes = [n for n in run.metrics["notes"] if n.startswith("learning-rate range test")]
    assert len(notes) == 1
    assert f"lr {run.config.train.lr:.3g} " in notes[0]  # the rate written to config.yaml is the one found
    assert run.metrics["test"]["accuracy"] > 0.9
    # ended in seconds of its minute: the notes say why the rest was not used
    assert any(n.startswith("the run took") and "of its 60s limit" in n and "mlp " in n for n in run.metrics["notes"])


def test_a_conv_net_is_narrowed_until_enough_epochs_fit_the_budget(monkeypatch):
    class Prepared:
        n_train, kind, notes = 6400, "image", []

        @classmethod
        def note(cls, text):
            cls.notes.append(text)

    def fake_step(cfg, prepared):  # conv compute grows with width²
        return 1e-3 * (cfg.model.width / 8) ** 2

    monkeypatch.setattr(sizing, "step_seconds", fake_step)
    config = resolve(Config(), ImageFacts("image", "multiclass", 6400, 10, image_shape=(1, 28, 28)))
    assert config.model.width == 32 and config.train.batch_size == 64  # 100 steps an epoch
    # width 32: 16 ms a step, 1.6 s an epoch; 10 epochs need 16 s of training
    assert sizing.size_for_budget(config, Prepared, Budget(16 / TRAINING_SHARE + 1)).model.width == 32
    assert sizing.size_for_budget(config, Prepared, Budget(4 / TRAINING_SHARE + 0.1)).model.width == 16
    assert sizing.size_for_budget(config, Prepared, Budget(1.0)).model.width == sizing.NARROWEST
    assert any("width 8 instead of 32" in n for n in Prepared.notes)
    tables = resolve(Config(), TableFacts("table", "binary", 6400, 2, n_features=4))
    assert sizing.size_for_budget(tables, Prepared, Budget(0.1)).model.width == tables.model.width  # MLPs are not narrowed
    # bf16 on AMX tiles: width 8 steps slower than 16 (channels not a multiple of the tiles); never narrowed into it
    monkeypatch.setattr(sizing, "step_seconds", lambda cfg, prepared: {32: 16e-3, 16: 6e-3, 8: 9e-3}[cfg.model.width])
    assert sizing.size_for_budget(config, Prepared, Budget(1.0)).model.width == 16
    assert "width 16 instead of 32" in Prepared.notes[-1] and "width 8 is no faster here (9 against 6 ms" in Prepared.notes[-1]


def test_a_step_is_timed_in_the_precision_it_trains_in(monkeypatch):
    seen = []
    monkeypatch.setattr(sizing, "seconds_per_step", lambda *a: seen.append(torch.is_autocast_enabled('cpu')) or 1.0)
    monkeypatch.setattr(sizing, "placed_model", lambda cfg, prepared: (nn.Linear(2, 2), None))
    monkeypatch.setattr(sizing, "training_batches", lambda cfg, prepared: None)
    monkeypatch.setattr(sizing, "loss_for", lambda t, prepared: None)
    monkeypatch.setattr(sizing, "build_optimizer", lambda *a: None)
    for precision in ("bf16", "fp32"):
        sizing.step_seconds(Config().with_values({"train.precision": precision, "train.lr": 0.1}), None)
    assert seen == [True, False]


def test_a_budget_shares_what_is_left_among_the_runs_still_to_go():
    budget = Budget(60.0, spent_before=10.0)
    first = budget.rest(2)
    assert 24.5 < first.limit <= 25 and first.spent_before == 0
    budget.spent_before += 20.0  # the first run ended early, 5 s into its 25: the second gets the rest
    assert 29.5 < budget.rest(1).limit <= 30
    assert Budget(None).rest(2).limited is False
    spent = Budget(5.0, spent_before=9.0).rest(1)  # nothing left: still a limit, never "no limit"
    assert spent.limited and 0 < spent.limit <= 1e-3 and 0 < spent.training_limit() <= 1e-3
    assert Budget(5.0, spent_before=9.0).left() == 0.0  # overspent: nothing left, not a negative share
    reserve, per_trial = Budget(100.0).search_plan(trials=4, ends_on_time=True)
    assert reserve == 40.0 and per_trial == 60.0 / 5  # 4 trials + the default share what the retrain leaves
    assert Budget(100.0).after_training(measured_seconds=0.1, report_seconds=0.0) == 3.0  # never below 3%


def test_the_note_on_an_early_end_names_only_candidates_that_finished_by_themselves():
    """A run that used under half its limit says why only when every candidate finished by
    itself; one ended by its time share (the rest kept for the final evaluation) did not."""
    import time
    from types import SimpleNamespace

    from scaletrain.fitting.pipeline import budget_note
    from scaletrain.train.budget import Budget

    def candidate(epochs_run: int, time_limit: float | None, elapsed: float):
        config = SimpleNamespace(model=SimpleNamespace(name="resnet", inputs="all"),
                                 train=SimpleNamespace(optimizer="sgd", epochs=1000))
        return SimpleNamespace(run=SimpleNamespace(config=config, history=[{}] * epochs_run),
                               state=SimpleNamespace(time_limit=time_limit, elapsed=elapsed))

    budget = Budget(30.0, started=time.perf_counter() - 14.0)  # 14 s of 30 s used
    assert budget_note([candidate(1, 11.0, 11.2)], budget) is None  # stopped by its share of the limit
    note = budget_note([candidate(5, None, 6.0)], budget)
    assert "took 14s of its 30s limit" in note and "stopped early at epoch 5 of 1000" in note


def test_a_budget_times_its_phases_and_adds_up_a_phase_entered_again():
    import time

    budget = Budget(None)
    with budget.phase("read"):
        time.sleep(0.02)
    with budget.phase("train"):
        time.sleep(0.01)
    with budget.phase("read"):
        time.sleep(0.02)
    assert list(budget.phases) == ["read", "train"] and budget.phases["read"] >= 0.04
    assert 0.01 <= budget.phases["train"] < budget.phases["read"]


def test_a_command_line_fit_counts_its_time_limit_from_the_process_start(monkeypatch, tmp_path):
    """`train --time-limit` hands the fit its process's start: the seconds before the fit
    (imports) are spent from the limit, not added to it."""
    import time

    from scaletrain.cli import main

    seen = {}

    def fake_fit_run(cfg, data, **kwargs):
        seen["elapsed"] = kwargs["budget"].elapsed()
        raise SystemExit(0)

    monkeypatch.setattr("scaletrain.runtime.process_started", lambda: time.perf_counter() - 7.0)
    monkeypatch.setattr("scaletrain.fitting.pipeline.fit_run", fake_fit_run)
    x, y = load_breast_cancer(return_X_y=True, as_frame=True)
    x.assign(target=y).to_csv(tmp_path / "data.csv", index=False)
    monkeypatch.setattr("sys.argv", ["scaletrain", "train", str(tmp_path / "data.csv"), "--time-limit", "30s",
                                     "--out", str(tmp_path / "run")])
    try:
        main()
    except SystemExit:
        pass
    assert seen["elapsed"] >= 7.0


def test_a_conv_nets_batch_grows_only_where_this_device_runs_a_larger_one_much_faster(monkeypatch):
    """A launch-bound device (a GPU: a step costs about the same whatever its batch) gets a 4x
    batch and learning rate; a compute-bound one (a CPU: a step costs its batch) keeps both and
    never times the larger batch; a batch the user named, or one that would leave under 50
    steps an epoch, is kept."""
    class Prepared:
        n_train, kind, notes = 60000, "image", []

        @classmethod
        def note(cls, text):
            cls.notes.append(text)

    timed = []
    config = resolve(Config(), ImageFacts("image", "multiclass", 60000, 10, image_shape=(1, 28, 28)))
    assert (config.train.batch_size, config.train.lr) == (256, 0.1)

    def sized(step, n_train=60000, may_grow=True):
        timed.clear()
        monkeypatch.setattr(sizing, "step_seconds", lambda cfg, prepared: timed.append(cfg.train.batch_size) or step(
            cfg.train.batch_size))
        Prepared.n_train = n_train
        return sizing.size_for_budget(config, Prepared, Budget(600.0), batch_may_grow=may_grow)

    gpu = sized(lambda batch: 4.5e-3 + batch * 1e-6)
    assert (gpu.train.batch_size, gpu.train.lr) == (1024, 0.4) and gpu.model.width == config.model.width
    assert any(n.startswith("batch 1024 instead of 256 (lr 0.4 instead of 0.1)") for n in Prepared.notes)
    cpu = sized(lambda batch: batch * 3e-4)
    assert (cpu.train.batch_size, cpu.train.lr) == (256, 0.1) and 1024 not in timed and 64 in timed
    assert sized(lambda batch: 4.5e-3 + batch * 1e-6, may_grow=False).train.batch_size == 256 and timed == [256]
    small = sized(lambda batch: 4.5e-3 + batch * 1e-6, n_train=40000)  # 1,024 x 50 steps > 40,000 rows
    assert small.train.batch_size == 256 and timed == [256]
    slower = sized(lambda batch: 4.5e-3 if batch < 1024 else 20e-3)  # the larger batch is not 2x the images a second
    assert slower.train.batch_size == 256 and 1024 in timed
