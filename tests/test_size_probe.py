"""The scaling probe that sizes a time-limited conv net: its decision follows the law it fits,
a rough law does not overrule the default, and a real probe runs, is applied and recorded."""
import numpy as np
import pytest
import torch

import scaletrain
from scaletrain.fitting import size_probe
from scaletrain.fitting.scaling_law import Law
from tests.test_explain_media import patch_images

PARAMETERS = {8: 1e4, 16: 4e4, 32: 1.6e5}
SEEN = {8: 4e5, 16: 2e5, 32: 1e5}  # the narrower net sees more rows in the same time


def test_the_probe_picks_the_width_its_law_predicts_best():
    hungry = Law(E=0.2, A=3e3, alpha=0.8, B=1.0, beta=0.3)     # size matters most: the widest wins
    data_bound = Law(E=0.2, A=1.0, alpha=0.3, B=3e3, beta=0.8)  # rows matter most: the narrowest wins
    assert size_probe.decide(hungry, [hungry] * 10, PARAMETERS, SEEN, 16)[2] == 32
    assert size_probe.decide(data_bound, [data_bound] * 10, PARAMETERS, SEEN, 16)[2] == 8


def test_a_law_its_bootstrap_disputes_keeps_the_default():
    hungry = Law(E=0.2, A=3e3, alpha=0.8, B=1.0, beta=0.3)
    data_bound = Law(E=0.2, A=1.0, alpha=0.3, B=3e3, beta=0.8)
    best, wins, chosen = size_probe.decide(hungry, [hungry] * 6 + [data_bound] * 4, PARAMETERS, SEEN, 16)
    assert best == 32 and wins == 0.6 and chosen == 16
    close = Law(E=0.2, A=3e3, alpha=0.8, B=1.0, beta=0.3)
    tiny = {8: 1e4, 16: 4e4, 32: 4.1e4}  # barely larger: a predicted gain under the margin
    assert size_probe.decide(close, [close] * 10, tiny, {8: 4e5, 16: 2e5, 32: 2e5}, 16)[2] == 16


def test_precise_batch_norm_holds_the_final_weights_statistics():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.BatchNorm1d(3))
    model[0].running_mean.fill_(50.0)  # what a few early steps leave behind
    chunks = [(torch.randn(64, 3) * 2 + 5,) for _ in range(4)]
    size_probe.precise_batch_norm(model, chunks)
    rows = torch.cat([c[0] for c in chunks])
    assert torch.allclose(model[0].running_mean, rows.mean(0), atol=1e-4)
    assert model[0].momentum == 0.1 and not model.training


def test_a_time_limited_run_is_sized_by_its_probe(tmp_path, monkeypatch):
    monkeypatch.setattr(size_probe, "PROBE_STEPS", (3, 6, 12))
    monkeypatch.setattr(size_probe, "MIN_PROBE_STEPS", 2)
    monkeypatch.setattr(size_probe, "PROBE_SHARE", 0.6)
    real_cell, law = size_probe._cell, Law(E=0.3, A=40.0, alpha=0.45, B=25.0, beta=0.35)

    def cell(cfg, prepared, width, steps):  # trained for real; its loss from a known law (a few steps measure noise)
        found = real_cell(cfg, prepared, width, steps)
        assert np.isfinite(found["loss"]) and found["loss"] >= 0 and found["rows"] == steps * 64
        return found | {"loss": float(law.loss(found["parameters"], found["rows"]))}

    monkeypatch.setattr(size_probe, "_cell", cell)
    x, y = patch_images(1500)
    run = scaletrain.fit(x, y=y, out=tmp_path / "run", model="resnet", train__time_limit=15, train__sizing="probe")
    found = run.metrics["size_probe"]
    assert found["ran"] and found["fitted"] and len(found["cells"]) == 9
    assert {c["width"] for c in found["cells"]} == {found["default"] // 2, found["default"], 2 * found["default"]}
    assert all(np.isfinite(c["loss"]) and c["loss"] > 0 for c in found["cells"])
    assert found["law"]["alpha"] == pytest.approx(law.alpha, rel=0.05)
    assert run.config.model.width == found["chosen"] and found["chosen"] in found["predicted_by_width"]
    assert any(n.startswith("scaling probe") for n in run.metrics["notes"])
    # a limit with no room for the probe falls back to the epochs rule, saying so
    monkeypatch.setattr(size_probe, "PROBE_SHARE", 1e-4)
    quick = scaletrain.fit(x, y=y, out=None, model="resnet", train__time_limit=4, train__sizing="probe")
    assert not quick.metrics["size_probe"]["ran"] and any("no scaling probe" in n for n in quick.metrics["notes"])


def test_cells_no_law_fits_keep_the_default_and_the_run_is_written(tmp_path, monkeypatch):
    monkeypatch.setattr(size_probe, "_cell_steps", lambda *args: [1, 2, 3])
    monkeypatch.setattr(size_probe, "_cell", lambda cfg, prepared, width, steps: {  # an easy task learnt to a loss of 0
        "width": width, "parameters": width * 100, "rows": steps * 64, "loss": 0.0, "seconds": 0.1})
    x, y = patch_images(600)
    run = scaletrain.fit(x, y=y, out=tmp_path / "run", model="resnet", train__time_limit=4, train__sizing="probe")
    found = scaletrain.load(tmp_path / "run").metrics["size_probe"]
    assert found["ran"] and not found["fitted"] and found["chosen"] == found["default"] == run.config.model.width
    assert any(n.startswith("scaling probe") and "no law could be fitted" in n for n in run.metrics["notes"])
