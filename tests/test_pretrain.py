"""Masked-LM pretraining: BERT's masking, packed blocks that keep documents apart, the run
directory (tokenizer, weights Hugging Face loads with identical logits), exact resume after
SIGKILL, fine-tuning from it (model.init_from), and damaged corpora."""
import os
import signal
import time

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

import scaletrain
from scaletrain.cli import app
from scaletrain.models.transformer import Encoder, EncoderShape, MaskedLM
from scaletrain.pretraining.blocks import CLS, MASK, PAD, SEP, MaskedBlocks, mask_tokens, pack
from scaletrain.rundir import RunDir
from tests import warm_cli

TINY = ["model.depth=2", "model.width=32", "model.heads=2", "data.block_size=32", "train.batch_size=16"]
WORDS = {"sport": "match goal team coach league player win score".split(),
         "tech": "software chip phone cloud robot code data screen".split()}
FILLER = "the a of and to in is was for on with as by at it from that this".split()


def documents(n: int, seed: int = 0) -> tuple[list[str], list[str]]:
    rng = np.random.default_rng(seed)
    labels = list(rng.choice(list(WORDS), n))
    texts = [" ".join(rng.permutation(list(rng.choice(FILLER, 12)) + list(rng.choice(WORDS[t], 4)))) for t in labels]
    return texts, labels


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("corpus")
    texts, _ = documents(600)
    (folder / "a.txt").write_text("\n".join(texts[:300]) + "\n")
    import gzip

    with gzip.open(folder / "b.jsonl.gz", "wt") as fh:
        fh.writelines(f'{{"text": "{t}"}}\n' for t in texts[300:])
    return folder


@pytest.fixture(scope="module")
def pretrained(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("pt") / "run"
    metrics = scaletrain.pretrain(corpus, out, sets=TINY + ["train.epochs=8", "train.lr=0.002"])
    return out, metrics


def test_masking_rates_are_berts():
    ids = torch.randint(5, 1000, (256, 512))
    ids[:, 0], ids[:, -1] = CLS, SEP
    inputs, labels = mask_tokens(ids, 1000, 0.15, torch.Generator().manual_seed(0))
    chosen = labels >= 0
    assert abs(chosen[:, 1:-1].float().mean().item() - 0.15) < 0.003
    assert not chosen[:, 0].any() and not chosen[:, -1].any()  # special tokens are never predicted
    assert torch.equal(labels[chosen], ids[chosen]) and torch.equal(inputs[~chosen], ids[~chosen])
    masked = (inputs[chosen] == MASK).float().mean().item()
    kept = (inputs[chosen] == ids[chosen]).float().mean().item()
    assert abs(masked - 0.8) < 0.01 and abs(kept - 0.1) < 0.01 and abs(1 - masked - kept - 0.1) < 0.01


def test_masks_are_drawn_anew_each_epoch_and_repeat_on_a_resume():
    blocks = np.random.default_rng(0).integers(5, 100, (40, 16)).astype(np.int32)
    batches = MaskedBlocks(blocks, np.ones_like(blocks, dtype=np.int16), 8, 100, 0.15, seed=3)
    first = [labels for _, labels in batches.epoch(0)]
    again = [labels for _, labels in batches.epoch(0)]
    resumed = [labels for _, labels in batches.epoch(0, start=2)]
    second = [labels for _, labels in batches.epoch(1)]
    assert all(torch.equal(a, b) for a, b in zip(first, again)) and all(
        torch.equal(a, b) for a, b in zip(first[2:], resumed))
    assert not all(a.shape == b.shape and torch.equal(a, b) for a, b in zip(first, second))


def test_packed_blocks_keep_documents_apart():
    ids, segments = pack([[10, 11, 12], [20, 21], [30] * 10], 8)
    assert ids[0].tolist() == [CLS, 10, 11, 12, SEP, 20, 21, SEP]
    assert segments[0].tolist() == [1, 1, 1, 1, 1, 2, 2, 2]
    assert ids[1][0] == CLS and ids[1].tolist().count(30) == 7 and ids[2].tolist()[:5] == [CLS, 30, 30, 30, SEP]
    assert ids[2][-1] == PAD and segments[2][-1] == 0  # the last block padded
    torch.manual_seed(0)
    encoder = Encoder(EncoderShape(vocab_size=50, max_positions=8, layers=2, width=16, heads=2, ff=32)).eval()
    block, seg = torch.from_numpy(ids[:1]).long(), torch.from_numpy(segments[:1]).long()
    changed = block.clone()
    changed[0, 1:4] = torch.tensor([40, 41, 42])  # another first document
    with torch.no_grad():
        a, b = encoder(block, seg), encoder(changed, seg)
    assert torch.allclose(a[0, 5:], b[0, 5:], atol=1e-6)  # the second document does not see the first
    assert not torch.allclose(a[0, 1:4], b[0, 1:4])


def test_pretraining_learns_and_writes_its_run(pretrained):
    out, metrics = pretrained
    history = pd.read_csv(out / "history.csv")
    assert history["val_loss"].iloc[-1] < history["val_loss"].iloc[0] - 0.5  # the masked words get predicted
    assert metrics["validation"]["val_perplexity"] == pytest.approx(np.exp(metrics["validation"]["val_loss"]))
    for name in ("config.yaml", "model.safetensors", "tokenizer.json", "metrics.json", "report.html",
                 "hf/config.json", "hf/model.safetensors", "hf/tokenizer.json"):
        assert (out / name).is_file(), name
    assert "masked-token accuracy" in (out / "report.html").read_text()
    assert metrics["documents"] == 600


def test_the_tokenizer_round_trips_through_the_run_directory(pretrained, corpus):
    from tokenizers import Tokenizer

    out, _ = pretrained
    text = (corpus / "a.txt").read_text().splitlines()[0]
    stored = Tokenizer.from_str(RunDir(out).read_tokenizer())
    assert stored.encode(text).ids[0] == CLS and stored.get_vocab_size() == RunDir(out).read_spec()["encoder"]["vocab_size"]
    assert Tokenizer.from_file(str(out / "hf" / "tokenizer.json")).encode(text).ids == stored.encode(text).ids


def test_hugging_face_loads_the_encoder_with_identical_logits(pretrained, corpus):
    transformers = pytest.importorskip("transformers")
    out, _ = pretrained
    spec = RunDir(out).read_spec()["encoder"]
    ours = MaskedLM(EncoderShape(**spec)).eval()
    ours.load_state_dict(RunDir(out).read_weights())
    theirs = transformers.AutoModelForMaskedLM.from_pretrained(out / "hf").eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(out / "hf")
    texts = (corpus / "a.txt").read_text().splitlines()[:4]
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        mine, hf = ours(batch["input_ids"]), theirs(**batch).logits
    real = batch["attention_mask"].bool()
    assert torch.allclose(mine[real], hf[real], atol=1e-4)


def test_init_from_loads_every_encoder_tensor_and_only_the_head_is_new(pretrained, tmp_path):
    out, _ = pretrained
    texts, labels = documents(160, seed=5)
    frame = pd.DataFrame({"text": texts, "topic": labels})
    run = scaletrain.fit(frame, "topic", out=tmp_path / "ft", sets=["model.name=transformer",
                                                                      f"model.init_from={out}", "train.epochs=3",
                                                                      "train.freeze=0"])  # fine-tuned whole
    encoder_tensors = sum(name.startswith("encoder.") for name in RunDir(out).read_weights())
    note = next(n for n in run.metrics["notes"] if "model.init_from" in n)
    assert f"{encoder_tensors} tensors loaded, 2 new (body.0.weight, body.0.bias)" in note
    assert run.preprocess["text"]["tokenizer"] == RunDir(out).read_tokenizer()  # its tokenizer reused
    assert run.config.model.depth == 2 and run.config.model.width == 32  # the pretrained shape
    loaded = scaletrain.load(tmp_path / "ft")  # self-contained: predicts without the pretraining run
    assert len(loaded.predict(frame.drop(columns="topic").head(5))) == 5


@pytest.mark.parametrize("share", [1.0, 0.5])
def test_freeze_holds_the_pretrained_tensors_fixed_for_its_share_of_training(pretrained, tmp_path, share):
    from scaletrain.train.callbacks import Freeze

    out, _ = pretrained
    frame = pd.DataFrame(dict(zip(("text", "topic"), documents(120, seed=6))))
    seen = []

    class Watch(Freeze):  # what the callback leaves trainable after each step
        def on_step_end(self, state, loss):
            super().on_step_end(state, loss)
            seen.append(all(p.requires_grad for p in self.params))

    import scaletrain.train.trainer as trainer

    original, trainer.Freeze = trainer.Freeze, Watch
    try:
        run = scaletrain.fit(frame, "topic", out=None, sets=["model.name=transformer", f"model.init_from={out}",
                                                             "train.epochs=4", f"train.freeze={share}",
                                                             "train.optimizer=adamw"])
    finally:
        trainer.Freeze = original
    before, after = RunDir(out).read_weights(), run.model.state_dict()
    same = [torch.equal(before[k], after["text." + k]) for k in before if k.startswith("encoder.")]
    if share == 1.0:  # a linear probe: every encoder tensor as pretrained, the head trained
        assert all(same) and seen and not any(seen)
    else:  # frozen for the first half of the steps, then learning
        assert not all(same) and not any(seen[: len(seen) // 2 - 1]) and all(seen[len(seen) // 2 + 1:])


def test_with_few_labels_a_pretrained_encoder_is_probed_by_lbfgs_and_refit_on_every_row(pretrained):
    out, _ = pretrained
    train, test = (pd.DataFrame(dict(zip(("text", "topic"), documents(n, seed=s)))) for n, s in ((60, 7), (200, 8)))
    named = scaletrain.fit(train, "topic", test=test, out=None, sets=["model.name=transformer", f"model.init_from={out}"])
    t = named.config.train
    assert (t.optimizer, t.freeze, named.config.model.text_tfidf) == ("lbfgs", 1.0, True) and t.weight_decay > 0
    note = next(n for n in named.metrics["notes"] if "model.init_from" in n)
    assert "3 new (text_linear.weight, body.0.weight, body.0.bias)" in note  # the head: pooled state + TF-IDF
    assert any("transformer model was refit" in n for n in named.metrics["notes"])  # convex: every row counts
    before, after = RunDir(out).read_weights(), named.model.state_dict()
    assert all(torch.equal(before[k], after["text." + k]) for k in before if k.startswith("encoder."))
    assert named.metrics["test"]["accuracy"] > 0.9  # the topic words, read through the frozen encoder


def test_long_texts_are_read_in_windows_and_pooled_by_their_weights():
    from scaletrain.models.transformer import PooledText

    torch.manual_seed(0)
    model = PooledText(EncoderShape(vocab_size=50, max_positions=8, layers=1, width=16, heads=2, ff=32, dropout=0.0))
    tokens, weights = torch.randint(5, 50, (3, 20)), torch.rand(3, 20)
    tokens[1, 6:] = 0
    tokens[2] = 0  # an empty text: no window encoded, a zero vector, no NaN
    pooled = model.eval()(tokens, weights)
    window = [model.encoder(tokens[:1, i:i + 8])[0] for i in (0, 8)] + [model.encoder(tokens[:1, 16:])[0]]
    by_hand = (torch.cat(window) * weights[0, :, None]).sum(0) / weights[0].sum()
    assert torch.allclose(pooled[0], by_hand, atol=1e-5)  # three windows, each encoded alone
    assert torch.allclose(pooled[1], model(tokens[1:2, :6], weights[1:2, :6])[0], atol=1e-6)  # padding ignored
    assert torch.equal(pooled[2], torch.zeros(16))
    assert torch.allclose(model(tokens[:1, :8]), model(tokens[:1, :8], torch.ones(1, 8)), atol=1e-6)  # plain mean


def test_layer_decay_slows_the_lower_layers():
    from scaletrain.train.optim import param_groups

    model = MaskedLM(EncoderShape(vocab_size=50, max_positions=8, layers=2, width=16, heads=2, ff=32))
    groups = param_groups(model, 0.01, layer_decay=0.5)
    scale = {id(p): g["lr_scale"] for g in groups for p in g["params"]}
    assert scale[id(model.encoder.tokens.weight)] == 0.125 and scale[id(model.encoder.blocks[0].qkv.weight)] == 0.25
    assert scale[id(model.encoder.blocks[1].qkv.weight)] == 0.5 and scale[id(model.head_dense.weight)] == 1.0


def _cli(*args) -> list[str]:
    """The arguments of `scaletrain pretrain`."""
    return ["pretrain", *map(str, args)]


def test_pretraining_resumes_bit_exactly_after_sigkill(corpus, tmp_path):
    from tests.train.test_resume import train_here

    sets = [a for s in TINY + ["train.epochs=3", "checkpoint.every_steps=4", "train.threads=1"] for a in ("--set", s)]
    train_here(_cli(corpus, "--out", tmp_path / "whole", *sets, "--quiet"))  # the reference: in this process
    process = warm_cli.start(*_cli(corpus, "--out", tmp_path / "cut", *sets, "--quiet"), stdout=warm_cli.DEVNULL,
                             stderr=warm_cli.DEVNULL)
    deadline = time.time() + 120
    while not list((tmp_path / "cut" / "checkpoints").glob("step-*.safetensors")) and time.time() < deadline:
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert not (tmp_path / "cut" / "metrics.json").exists()  # killed mid-run
    train_here(_cli(corpus, "--out", tmp_path / "cut", *sets, "--resume", "--quiet"))
    a, b = RunDir(tmp_path / "whole").read_weights(), RunDir(tmp_path / "cut").read_weights()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_damaged_corpora_are_skipped_with_notes_or_refused(tmp_path):
    from scaletrain.data.corpus import MAX_DOCUMENT_CHARS, Corpus, corpus_files
    from scaletrain.errors import DataError

    (tmp_path / "binary.txt").write_bytes(bytes(range(256)) * 40)
    (tmp_path / "latin1.txt").write_bytes("caf\xe9 au lait\n\n\nplain line\n".encode("latin-1"))
    (tmp_path / "long.txt").write_text(("word " * (10 * 1024 * 1024 // 5)).strip())
    (tmp_path / "bad.jsonl").write_text('{"text": "fine"}\nnot json\n{"other": 1}\n')
    corpus = Corpus(corpus_files([tmp_path]))
    docs = list(corpus)
    notes = " | ".join(corpus.notes())
    assert "binary files (binary.txt)" in notes and "not valid UTF-8" in notes and "empty documents" in notes
    assert "cut into pieces" in notes and "do not parse" in notes and "without a text 'text' field" in notes
    assert max(map(len, docs)) <= MAX_DOCUMENT_CHARS and "caf\ufffd au lait" in docs and "fine" in docs
    (tmp_path / "only").mkdir()
    (tmp_path / "only" / "garbage.txt").write_bytes(b"\x00\x01\x02" * 100)
    with pytest.raises(DataError, match="holds no text"):
        scaletrain.pretrain(tmp_path / "only", tmp_path / "out", sets=TINY)
    result = CliRunner().invoke(app, _cli(tmp_path / "nothing*.txt", "--out", tmp_path / "o2"))
    assert result.exit_code == 2 and "no files match" in result.stderr and result.exception is not None  # SystemExit(2)
    assert isinstance(result.exception, SystemExit)  # a one-line error, not an exception's traceback


def test_a_folder_of_text_files_per_class_trains_and_predicts(tmp_path):
    texts, labels = documents(120, seed=2)
    for i, (text, label) in enumerate(zip(texts, labels)):
        (tmp_path / "data" / label).mkdir(parents=True, exist_ok=True)
        (tmp_path / "data" / label / f"{i:03d}.txt").write_text(text)
    run = scaletrain.fit(tmp_path / "data", out=None, model="linear", epochs=30)
    assert run.metrics["test"]["accuracy"] > 0.9
    (tmp_path / "new").mkdir()
    (tmp_path / "new" / "x.txt").write_text("goal match team the a of")
    assert run.predict(tmp_path / "new")["prediction"].tolist() == ["sport"]


def test_info_describes_a_pretraining_run_and_predict_says_how_to_use_it(pretrained, tmp_path):
    out, _ = pretrained
    info = CliRunner().invoke(app, ["info", str(out)])
    assert info.exit_code == 0 and "masked language modelling" in info.stdout and "perplexity" in info.stdout
    (tmp_path / "x.csv").write_text("text\nhello\n")
    result = CliRunner().invoke(app, ["predict", str(out), str(tmp_path / "x.csv")])
    assert result.exit_code == 2 and "model.init_from" in result.stderr and isinstance(result.exception, SystemExit)


def test_prepared_corpus_shards_stream_every_block_once_an_epoch(corpus, tmp_path, monkeypatch):
    from scaletrain.pretraining import pieces, shards
    from scaletrain.pretraining.shards import ShardedBlocks, read_manifest

    monkeypatch.setattr(pieces, "SHARD_BLOCKS", 40)
    monkeypatch.setattr(pieces, "PIECE_BYTES", 2000)  # a.txt cut into byte ranges, ...
    monkeypatch.setattr(pieces, "IN_PROCESS_BYTES", 0)  # ... tokenized by 2 processes, small as it is
    from scaletrain.config import make_config
    from scaletrain.pretraining.run import corpus_tokenizer

    cfg = make_config(None, TINY)
    manifest = shards.prepare_corpus([corpus], tmp_path / "blocks", corpus_tokenizer([corpus], cfg), 32, workers=2)
    monkeypatch.undo()  # the same corpus in this process: the same documents
    whole = shards.prepare_corpus([corpus], tmp_path / "one", corpus_tokenizer([corpus], cfg), 32, workers=1)
    assert manifest["documents"] == 600 == whole["documents"] and len(manifest["shards"]) > 3
    batches = ShardedBlocks(tmp_path / "blocks", 16, 0.15, seed=0, held_out=5)
    seen = [row for (inputs, segments, labels), _ in batches.epoch(0) for row in labels.shape[:1]]
    assert sum(seen) == manifest["blocks"] - 5 == read_manifest(tmp_path / "blocks")["blocks"] - 5
    first, resumed = list(batches.epoch(1)), list(batches.epoch(1, start=3))
    assert all(torch.equal(a[0][0], b[0][0]) for a, b in zip(first[3:], resumed))
    metrics = scaletrain.pretrain(tmp_path / "blocks", tmp_path / "run", sets=TINY + ["train.epochs=1"])
    assert metrics["blocks"]["train"] == manifest["blocks"] - metrics["blocks"]["validation"]


def test_a_small_corpus_is_tokenized_without_starting_processes(corpus, tmp_path, monkeypatch):
    """Two files of a few kB: a spawned tokenizer would cost more to start than its share."""
    import subprocess as processes

    from scaletrain.config import make_config
    from scaletrain.pretraining import pieces
    from scaletrain.pretraining.run import corpus_tokenizer
    from scaletrain.pretraining.shards import prepare_corpus

    def refused(*args, **kwargs):
        raise AssertionError("a process started for a small corpus")

    monkeypatch.setattr(pieces, "ProcessPoolExecutor", refused)
    monkeypatch.setattr(processes.Popen, "__init__", refused)
    manifest = prepare_corpus([corpus], tmp_path / "blocks", corpus_tokenizer([corpus], make_config(None, TINY)), 32,
                              workers=2)
    assert manifest["documents"] == 600 and len(manifest["shards"]) == 2  # one a file
    # a compressed file holds several times its bytes of text: counted so, it tips this corpus over
    plain, packed = (corpus / "a.txt").stat().st_size, (corpus / "b.jsonl.gz").stat().st_size
    monkeypatch.setattr(pieces, "IN_PROCESS_BYTES", plain + 2 * packed)
    with pytest.raises(AssertionError, match="a process started"):
        prepare_corpus([corpus], tmp_path / "more", corpus_tokenizer([corpus], make_config(None, TINY)), 32, workers=2)


def test_each_rank_takes_its_share_of_the_batches_one_process_trains_on(corpus, tmp_path):
    from scaletrain.config import make_config
    from scaletrain.pretraining.run import corpus_tokenizer
    from scaletrain.pretraining.shards import ShardedBlocks, prepare_corpus

    prepare_corpus([corpus], tmp_path / "blocks", corpus_tokenizer([corpus], make_config(None, TINY)), 32, workers=1)
    one = list(ShardedBlocks(tmp_path / "blocks", 16, 0.15, seed=0, held_out=5).epoch(2))
    ranks = [list(ShardedBlocks(tmp_path / "blocks", 16, 0.15, seed=0, held_out=5, rank=r, world=2).epoch(2))
             for r in range(2)]
    assert len(ranks[0]) == len(ranks[1]) == len(one) - (len(one[-1][0][0]) < 16)  # a short last batch: left out
    for whole, a, b in zip(one, *ranks):
        for part in range(3):  # inputs, segments, labels: the two halves of the same masked batch
            assert torch.equal(torch.cat([a[0][part], b[0][part]]), whole[0][part])


def _metrics(run) -> dict:
    import json

    return json.loads((run / "metrics.json").read_text())


@pytest.fixture(scope="module")
def two_ranks(corpus, tmp_path_factory):
    """One process, and two data-parallel ranks under torchrun, on the same corpus and steps."""
    folder = tmp_path_factory.mktemp("dp")
    settings = TINY + ["train.epochs=1", "model.dropout=0"]
    sets = [a for s in settings for a in ("--set", s)]
    done = warm_cli.run(*_cli(corpus, "--out", folder / "two", *sets, "--nproc-per-node", "2", "--quiet"))
    assert done.returncode == 0, done.stderr
    scaletrain.pretrain(corpus, folder / "one", sets=settings)  # the one process: this one
    return folder, sets


def test_pretraining_runs_data_parallel_on_two_ranks(two_ranks):
    folder, _ = two_ranks
    one, two = _metrics(folder / "one"), _metrics(folder / "two")
    assert two["distributed"]["ranks"] == 2 and "distributed" not in one
    per_epoch = one["blocks"]["train"] // 16  # the global batch of 16 blocks: 8 per rank
    assert two["steps"] == per_epoch
    # the same batches and masks, gradients averaged over the ranks: the same model up to the
    # loss's weighting (each rank's mean over its own masked tokens)
    assert two["validation"]["val_loss"] == pytest.approx(one["validation"]["val_loss"], rel=0.03)
    assert (folder / "two" / "hf" / "config.json").is_file() and (folder / "two" / "tokenizer.json").is_file()


@pytest.mark.slow  # Ray Train's start alone takes about a minute here: in `make bench`
def test_pretraining_runs_on_a_ray_cluster_as_under_torchrun(ray_head, two_ranks, corpus):
    folder, sets = two_ranks
    done = warm_cli.run(*_cli(corpus, "--out", folder / "ray", *sets, "--backend", "ray", "--nproc-per-node", "2",
                              "--quiet"))
    assert done.returncode == 0, done.stderr
    ray, two = _metrics(folder / "ray"), _metrics(folder / "two")
    assert ray["distributed"]["ranks"] == 2 and ray["steps"] == two["steps"]
    assert ray["validation"]["val_loss"] == pytest.approx(two["validation"]["val_loss"], rel=1e-5)
