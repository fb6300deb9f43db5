"""Speed side by side (issue 5): scaletrain's loop vs a hand-written PyTorch loop on the same
model, data in memory, batch and optimizer; a peer (skorch) on the same MLP; predict
throughput vs a bare `model(x)` loop. Ratios are medians of alternated runs.

`python bench/overhead.py`
"""
from __future__ import annotations

import copy
import statistics
import time

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from scaletrain.config import ModelConfig
from scaletrain.data.batches import TensorBatches
from scaletrain.models.registry import ModelSpec, build_model
from scaletrain.train.callbacks import History
from scaletrain.train.loop import LoopSettings, train_loop

REPEATS = 4


def plain_loop(model, x, y, batch_size: int, optimizer, epochs: int) -> None:
    """What a PyTorch user writes: a seeded permutation, slicing, forward, backward, step."""
    n = len(y)
    for epoch in range(epochs):
        order = torch.randperm(n, generator=torch.Generator().manual_seed(epoch))
        model.train()
        for start in range(0, n, batch_size):
            index = order[start:start + batch_size]
            loss = F.cross_entropy(model(x[index]), y[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()


def scaletrain_loop(model, x, y, batch_size: int, optimizer, epochs: int, transform=None) -> None:
    batches = TensorBatches((x,), y, batch_size, shuffle=True, seed=0, transform=transform)
    settings = LoopSettings(epochs=epochs, lr=optimizer.param_groups[0]["lr"], schedule="constant", device=x.device.type)
    train_loop(model, batches, F.cross_entropy, optimizer, settings, lambda m: {}, [History()])


def timed(fn) -> float:
    started = time.perf_counter()
    fn()
    if torch.cuda.is_available():  # queued kernels count: wait for them
        torch.cuda.synchronize()
    return time.perf_counter() - started


def compare(name: str, model: torch.nn.Module, x, y, batch_size: int, make_optimizer, epochs: int,
            ours_transform=None) -> float:
    """Print samples/s of both loops (alternated, REPEATS times) and return the median ratio."""
    ratios, ours_rates, plain_rates = [], [], []
    warm = copy.deepcopy(model)  # first runs pay for allocator and kernel warm-up: not timed
    plain_loop(warm, x[:batch_size * 4], y[:batch_size * 4], batch_size, make_optimizer(warm), 1)
    scaletrain_loop(warm, x[:batch_size * 4], y[:batch_size * 4], batch_size, make_optimizer(warm), 1)
    for repeat in range(REPEATS):
        a, b = copy.deepcopy(model), copy.deepcopy(model)
        run_plain = lambda a=a: timed(lambda: plain_loop(a, x, y, batch_size, make_optimizer(a), epochs))  # noqa: E731
        run_ours = lambda b=b: timed(lambda: scaletrain_loop(b, x, y, batch_size, make_optimizer(b), epochs,  # noqa: E731
                                                         ours_transform))
        if repeat % 2:  # alternate who goes first
            ours, plain = run_ours(), run_plain()
        else:
            plain, ours = run_plain(), run_ours()
        plain_rates.append(epochs * len(y) / plain)
        ours_rates.append(epochs * len(y) / ours)
        ratios.append(plain / ours)
    ratio = statistics.median(ratios)
    if x.is_cuda:
        torch.cuda.synchronize()
    print(f"   {name:<34} scaletrain {statistics.median(ours_rates):>9,.0f}/s  plain {statistics.median(plain_rates):>9,.0f}/s"
          f"  ratio {ratio:.3f} (runs {', '.join(f'{r:.3f}' for r in ratios)}; goal ≥ 0.95)")
    return ratio


def loops(device: str = "cpu") -> None:
    torch.manual_seed(0)
    print(f"\n5. training throughput on {device}, scaletrain loop vs a hand-written PyTorch loop (same model, data, batch, optimizer)")
    x = torch.randn(60_000, 64, device=device)
    y = (x[:, :10].argmax(1)).long()
    mlp = build_model(ModelSpec("table", 10, n_dense=64), ModelConfig(name="mlp", hidden=[256, 256], dropout=0.1)).to(device)
    compare("MLP 64-256-256-10, batch 256, AdamW", mlp, x, y, 256,
            lambda m: torch.optim.AdamW(m.parameters(), lr=1e-3), epochs=2)
    images = torch.rand(6_000, 1, 28, 28, device=device)
    labels = torch.randint(0, 10, (6_000,), device=device)
    cnn = build_model(ModelSpec("image", 10, shape=(1, 28, 28), mean=(0.5,), std=(0.25,)),
                      ModelConfig(name="resnet", width=16, depth=0, dropout=0.0)).to(device)
    compare("ResNet w16 28x28, batch 256, Nesterov", cnn, images, labels, 256,
            lambda m: torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9, nesterov=True), epochs=1)


def peer() -> None:
    try:
        from skorch import NeuralNetClassifier
    except ImportError:
        print("\n6. peer skipped: skorch not installed (pip install skorch)")
        return
    print("\n6. the same MLP through skorch (PyPI) vs scaletrain's loop, 2 epochs, batch 256, AdamW")
    torch.manual_seed(0)
    x = torch.randn(60_000, 64)
    y = (x[:, :10].argmax(1)).long()
    mlp = build_model(ModelSpec("table", 10, n_dense=64), ModelConfig(name="mlp", hidden=[256, 256], dropout=0.1))
    ratios = []
    for _ in range(REPEATS):
        net = NeuralNetClassifier(copy.deepcopy(mlp), criterion=torch.nn.CrossEntropyLoss, optimizer=torch.optim.AdamW,
                                  lr=1e-3, batch_size=256, max_epochs=2, train_split=None, verbose=0)
        theirs = timed(lambda net=net: net.fit(x.numpy(), y.numpy()))
        b = copy.deepcopy(mlp)
        ours = timed(lambda b=b: scaletrain_loop(b, x, y, 256, torch.optim.AdamW(b.parameters(), lr=1e-3), 2))
        ratios.append(theirs / ours)
    print(f"   skorch / scaletrain time: median {statistics.median(ratios):.2f}x "
          f"(runs {', '.join(f'{r:.2f}' for r in ratios)}; > 1 means scaletrain is faster)")


def predict_throughput() -> None:
    import scaletrain

    print("\n7. predict throughput: Run.predict on raw input vs a bare model(x) loop on ready tensors")
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(20_000, 8)), columns=[f"x{i}" for i in range(8)])
    frame["colour"] = rng.choice(["red", "green", "blue"], len(frame))
    frame["y"] = np.where(frame["x0"] + (frame["colour"] == "red") > 0, "p", "n")
    run = scaletrain.fit(frame, "y", out=None, epochs=1, model="mlp")
    raw = frame.drop(columns="y")
    inputs, _ = run.encode(run.source(raw))
    rows = len(raw)
    ours = statistics.median(timed(lambda: run.predict(raw)) for _ in range(REPEATS))
    bare = statistics.median(timed(lambda: _bare(run.model, inputs, 1024)) for _ in range(REPEATS))
    print(f"   table rows: predict {rows / ours:,.0f} rows/s (raw rows in, preprocessing included) vs bare "
          f"{rows / bare:,.0f} rows/s (model only): ratio {bare / ours:.2f}")
    images = rng.integers(0, 255, size=(4_000, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, 4_000)
    run = scaletrain.fit(images, y=labels, out=None, epochs=1, model__width=16)
    inputs, _ = run.encode(run.source(images))
    ours = statistics.median(timed(lambda: run.predict(images)) for _ in range(REPEATS))
    floats = (inputs[0].float(),)  # the bare loop gets images already as floats
    bare = statistics.median(timed(lambda: _bare(run.model, floats, 1024)) for _ in range(REPEATS))
    print(f"   28x28 images: predict {len(images) / ours:,.0f} images/s vs bare {len(images) / bare:,.0f} images/s: "
          f"ratio {bare / ours:.2f}")


def _bare(model, inputs, batch: int) -> None:
    model.eval()
    with torch.inference_mode():
        for start in range(0, len(inputs[0]), batch):
            model(*(x[start:start + batch] for x in inputs))


if __name__ == "__main__":
    torch.set_num_threads(torch.get_num_threads())
    loops()
    peer()
    predict_throughput()
