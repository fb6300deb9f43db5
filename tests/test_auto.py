"""The zero-config recipe's time-budget decisions."""
import torch
from torch import nn

from scaletrain.config import Config
from scaletrain.data.batches import TensorBatches
from scaletrain.fitting.recipe import resolve
from scaletrain.modalities.audio.modality import AudioFacts
from scaletrain.modalities.image.modality import MAX_EPOCHS, ImageFacts
from scaletrain.modalities.table.modality import TableFacts
from scaletrain.train.assembly import LoopPlan
from scaletrain.train.budget import Budget
from scaletrain.train.trainer import EPOCH_VAL_ROWS, LossChoice, ValidationSet, fit_model

FASHION = ImageFacts("image", "multiclass", 51_000, 10, image_shape=(1, 28, 28))


def test_a_time_limited_image_run_is_ended_by_its_limit_not_an_epoch_count():
    config = Config()
    untimed = resolve(config, FASHION).train
    config.train.time_limit = 600.0
    timed = resolve(config, FASHION).train
    assert untimed.epochs < 50 and timed.epochs == MAX_EPOCHS and timed.schedule == "onecycle"


def test_auto_precision_is_bf16_only_for_conv_nets_on_a_cpu_that_computes_it_natively(monkeypatch):
    table = TableFacts("table", "binary", 5_000, 2, n_features=8)
    sound = AudioFacts("audio", "multiclass", 480, 10, feature_shape=(1, 64, 101))  # measured to lose accuracy in bf16
    for amx in (True, False):
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda amx=amx: amx)
        chosen = {facts.kind: resolve(Config(), facts).train.precision for facts in (FASHION, table, sound)}
        assert chosen == {"image": "bf16" if amx else "fp32", "table": "fp32", "audio": "fp32"}
        private = Config()
        private.train.privacy.epsilon = 8.0
        assert resolve(private, FASHION).train.precision == "fp32"  # DP-SGD's norms are fp32
        named = Config()
        named.model.name = "mlp"
        assert resolve(named, FASHION).train.precision == "fp32"
    given = Config()
    given.train.precision = "fp32"
    assert resolve(given, FASHION).train.precision == "fp32"


def scored_rows(early_stopping: int) -> list[int]:
    """Train 2 epochs of a small classifier; return how many validation rows each epoch scored."""
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(256, 4, generator=g), torch.randint(0, 3, (256,), generator=g)
    val_x, val_y = torch.randn(5000, 4, generator=g), torch.randint(0, 3, (5000,), generator=g)
    model, seen = nn.Linear(4, 3), []

    def outputs(inputs):
        seen.append(len(inputs[0]))
        with torch.no_grad():
            return model(*inputs)

    config = Config()
    t = config.train
    t.epochs, t.lr, t.optimizer, t.weight_decay, t.momentum = 2, 0.1, "sgd", 0.0, 0.0
    t.schedule, t.loss, t.label_smoothing, t.class_weight, t.early_stopping = "constant", "cross_entropy", 0.0, "none", early_stopping
    t.device = "cpu"
    fit_model(model, TensorBatches((x,), y, 64, shuffle=True, seed=0), t, LossChoice("multiclass"),
              ValidationSet(outputs, (val_x,), val_y), LoopPlan(Budget(None)))
    return seen


def test_per_epoch_validation_scores_a_subset_unless_early_stopping_needs_every_row():
    assert scored_rows(early_stopping=0) == [EPOCH_VAL_ROWS] * 2
    assert scored_rows(early_stopping=5) == [5000] * 2
