"""Tables: CSV/TSV/Parquet/JSONL files, DataFrames and 2-d arrays.

Roles are inferred per column, preprocessing (imputation, clipping, scaling, category
lookups) is fitted on training rows only, and the models are linear or MLPs over dense
features plus embeddings of high-cardinality categories.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from scaletrain.config import Config, DataConfig, ModelConfig
from scaletrain.data.corpus import is_text_folder, read_text_folder
from scaletrain.data.input_check import table_warnings, with_absent_columns
from scaletrain.data.prepared import Prepared
from scaletrain.data.sounds import is_sound
from scaletrain.data.sources import Source
from scaletrain.data.state_schema import TableState
from scaletrain.errors import DataError
from scaletrain.modalities.base import DataFacts, ExportParts, Modality, Recipe, steps_to_epochs
from scaletrain.modalities.table.media import encoder_spec, media_example, media_input, resolve_image_paths
from scaletrain.modalities.table.prepare import prepare_table
from scaletrain.modalities.table.preprocess import transform_table
from scaletrain.modalities.table.shards import prepare_table_shards
from scaletrain.modalities.table.tables import frame_from_arrays, read_table
from scaletrain.tasks import task_of

# torch and scikit-learn are imported where training needs them: `scaletrain prepare` reads
# and shards tables through this module without either (2-3 s a process).

SMALL_TABLE = 2000  # training rows below which zero-config compares linear and MLP models
BACKGROUND_ROWS = 100  # training rows kept in the run for explanations (explain/attributions.py)


# with image columns: the fused model, then the table's other columns alone and the images alone
# (fitting/recipe.py reads "name:inputs"): a naive fusion often scores below its best single
# input on real data, so the fused model is kept only where validation says it helps
FUSED_CANDIDATES = ("mlp", "mlp:table", "mlp:images")
PAIRS_MAX_LENGTH = 256  # tokens kept per text up to which the linear TF-IDF part reads piece pairs
PAIRS_MIN_ROWS = 1000  # training texts from which it does


@dataclass
class TableFacts(DataFacts):
    n_features: int = 0
    max_cardinality: int = 0
    text_length: int = 0      # free text: the token ids kept per row (0: no text)
    image_columns: int = 0    # columns of images (paths, bytes)


class TableRecipe(Recipe):
    """An MLP (two hidden layers) with AdamW, a cosine schedule, dropout and early stopping on
    validation loss that restores the best epoch: on small tables the weight decay + early
    stopping pair is what keeps a net as good as a tuned linear model, and on large ones the
    MLP is what beats it."""

    model, dropout, optimizer, schedule, label_smoothing, early_stopping = "mlp", 0.1, "adamw", "cosine", 0.0, 20

    def batch_size(self, n_train: int) -> int:
        return int(min(512, max(32, 2 ** round(math.log2(max(n_train, 1) / 32)))))

    def lr(self, optimizer: str, n_train: int) -> float:
        if optimizer in ("sgd", "momentum", "nesterov"):
            return 0.05
        # tiny tables give few steps: a larger Adam step still converges within them
        return 1e-2 if n_train < SMALL_TABLE else 1e-3

    def epochs(self, steps_per_epoch: int, time_limit: float | None, n_train: int) -> int:
        # at least 20 passes over small tables; large (streamed) ones get the step budget alone
        return steps_to_epochs(4000, steps_per_epoch, 20 if steps_per_epoch < 200 else 1, 200)

    def fit_data(self, data: DataConfig, facts: TableFacts) -> None:
        from scaletrain.runtime import cores

        if data.loader_workers is None and facts.streamed and facts.text_length and cores() <= 2:
            # Streamed text is tokenized where it is read. The tokenizer runs on every core, but
            # on one in a forked loader process: a single such worker (what 2 cores get) tokenizes
            # slower than the training process itself does between its steps. Clothing reviews
            # from shards, 2 cores, 4 MLP epochs: 18.9 s of training with one worker, 11.3 s with none.
            data.loader_workers = 0

    def fit_model(self, model: ModelConfig, facts: TableFacts) -> None:
        m = model
        if m.name == "transformer" and m.max_positions is None and facts.text_length:
            m.max_positions = facts.text_length  # a pretrained encoder's own, where one is given
        if m.text_pairs is None:
            # Word order matters most in short texts (a review's "not good"; Wang & Manning 2012 found
            # bigrams help on snippets and sentiment more than on topical documents): measured, the pairs
            # lift clothing reviews → rating (136 tokens) from 0.411 to 0.489 macro F1 and cost BBC
            # News split 0 (512) 0.9874 → 0.9854 at 3x the time; with few rows they are mostly noise
            # seen once (120 synthetic texts: accuracy 0.97 → 0.77).
            m.text_pairs = 0 < facts.text_length <= PAIRS_MAX_LENGTH and facts.n_train >= PAIRS_MIN_ROWS
        if m.embedding_dim is None:
            # fastai's rule of thumb for embedding width, capped: 1.6 * cardinality ** 0.56
            m.embedding_dim = int(min(32, max(4, round(1.6 * max(facts.max_cardinality, 1) ** 0.56))))


class Table(Modality):
    name = "table"
    column_encoders = True
    state_schema = TableState
    recipe = TableRecipe()
    cross_validates = True
    parallel_trials = True
    # the MLP's step size, regularization and shape, the knobs that move validation scores most
    # on tabular data (the zero-config run, which also tries a linear model, is the first entry)
    search_space = {
        "model.name": ["mlp"],
        "train.lr": {"low": 3e-4, "high": 3e-2, "log": True, "grid": [1e-3, 3e-3, 1e-2]},
        "train.weight_decay": {"low": 1e-4, "high": 0.3, "log": True, "grid": [0.01, 0.1]},
        "model.dropout": {"low": 0.0, "high": 0.5, "grid": [0.0, 0.3]},
        "model.width": [64, 128, 256, 512],
        "model.depth": {"low": 1, "high": 3, "int": True, "grid": [1, 2]},
    }

    def recognizes(self, path: Path) -> bool:
        return True  # the registry asks it last: whatever no other modality claims is read as a table

    def read(self, path, size, channels) -> Source:
        folder = Path(path)
        frame = read_text_folder(folder) if is_text_folder(folder) else \
            resolve_image_paths(read_table(path), folder if folder.is_dir() else folder.parent)
        return Source(self.name, _name_of(path), frame=frame)

    def from_array(self, x, y, size, channels) -> Source | None:
        if isinstance(x, pd.DataFrame):
            return Source(self.name, "dataframe", frame=frame_from_arrays(x, y))
        return Source(self.name, "array", frame=frame_from_arrays(x, y)) if x.ndim < 3 else None

    def shards_from(self, sources: list[str]) -> bool:
        return True  # asked last, as for reading

    def prepare_shards(self, sources: list[str], out: str, options: dict) -> dict:
        keys = ("target", "task", "roles", "shard_size", "val_fraction", "test_fraction", "seed", "workers",
                "chunk_rows", "verbose", "backend")
        return prepare_table_shards(sources, out, **{k: v for k, v in options.items() if k in keys})

    def prepare(self, source: Source, test: Source | None, data_cfg: DataConfig, seed: int,
                starts: dict[str, str] | None = None) -> Prepared:
        return prepare_table(source, test, data_cfg, seed, starts or {})

    def prepare_streamed(self, source: Source, manifest, data_cfg: DataConfig) -> Prepared:
        from scaletrain.modalities.table.from_shards import prepare_from_table_shards

        return prepare_from_table_shards(source, manifest, data_cfg)

    def facts(self, prepared: Prepared) -> DataFacts:
        cards = [len(c["categories"]) for c in prepared.preprocess["embed"]]
        return TableFacts(self.name, prepared.task, prepared.n_train, prepared.n_classes, levels=prepared.scale_points,
                          imbalance=prepared.imbalance(), val_minority=prepared.val_minority(),
                          streamed=prepared.shard_url is not None, n_features=prepared.val_inputs[0].shape[1],
                          max_cardinality=max(cards, default=0),
                          text_length=prepared.preprocess.get("text", {}).get("length", 0),
                          image_columns=len(prepared.preprocess.get("images", [])))

    def candidates(self, config: Config, facts: DataFacts) -> list[str]:
        """Under SMALL_TABLE training rows zero-config trains a linear model and an MLP: which
        one generalises better there depends on the data, and both train in seconds. With free
        text the linear model (TF-IDF + logistic regression, the practitioner's strong baseline)
        is always a candidate, whatever the rows held in memory: on 22k clothing reviews it beat
        the bag-of-pieces MLP by 30 points of macro F1 (BENCHMARKS.md, text panel). From
        SMALL_TABLE texts a bidirectional GRU over the pieces joins them (models/recurrent.py): it
        reads the order a bag loses, and blended with the linear model it lifts clothing reviews →
        recommended from 0.956 to 0.96 ROC AUC. Given a pretrained text encoder
        (model.init_from), the fine-tuned Transformer takes the MLP's place."""
        pretrained = bool(config.model.init_from and facts.text_length)  # a pretrained text encoder is given
        in_memory_text = facts.text_length and not facts.streamed
        if config.model.name != "auto":
            return [config.model.name]
        if facts.image_columns and config.model.inputs == "all":
            # the fused model and each input alone, kept on evidence (a pretrained text encoder: a Transformer's)
            return [n.replace("mlp", "transformer") if pretrained and n != "mlp:images" else n for n in FUSED_CANDIDATES]
        if task_of(facts.task).models:  # click-through: its own models, and the trees beside them
            return list(task_of(facts.task).models) + (["boosted"] if config.train.boosting != "off" else [])
        if pretrained and not facts.n_train < SMALL_TABLE:
            return ["transformer"]
        if facts.streamed:
            return ["linear", "mlp"] if facts.n_train < SMALL_TABLE else ["mlp"]
        names = ["linear", "transformer" if pretrained else "mlp"] if facts.n_train < SMALL_TABLE or in_memory_text \
            else ["mlp"]
        if in_memory_text and not pretrained and not facts.n_train < SMALL_TABLE:
            names.append("rnn")  # a GRU that reads word order: blended with the linear model where they differ
        if in_memory_text and not pretrained and spends_time_on_text(config, facts):
            names.append("transformer")  # the encoder that reads word order, from scratch
        if not facts.text_length and config.train.boosting != "off":
            names.append("boosted")  # gradient-boosted trees: what a practitioner tries first on a table
        return names

    def model_spec(self, prepared: Prepared, n_out: int):
        from scaletrain.data.text import pair_buckets_for
        from scaletrain.models.registry import ModelSpec

        vocab = prepared.preprocess.get("text", {}).get("vocab_size", 0)
        rows = prepared.rows_in_memory()
        pictures = tuple(encoder_spec(c) for c in prepared.preprocess.get("images", []))
        return ModelSpec(self.name, n_out, n_dense=prepared.val_inputs[0].shape[1], pictures=pictures,
                         cardinalities=tuple(len(c["categories"]) for c in prepared.preprocess["embed"]),
                         vocab_size=vocab, pair_buckets=pair_buckets_for(rows[2] if rows and len(rows) > 2 else None)
                         if vocab else 0)

    def background(self, prepared: Prepared, seed: int):
        """Up to BACKGROUND_ROWS training rows (validation rows when training streams from
        shards), encoded: the dense block and the category codes."""
        import torch

        inputs = prepared.rows_in_memory()
        if not inputs:  # streamed from shards with no validation rows: explained from the zero input
            return None
        n = len(inputs[0])
        chosen = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:BACKGROUND_ROWS]
        categories = inputs[1] if len(inputs) > 1 else torch.zeros((n, 0), dtype=torch.long)
        return {"dense": inputs[0][chosen].float().contiguous(), "categories": categories[chosen].long().contiguous()}

    def check_background(self, background: dict, spec) -> str | None:
        dense, categories = background.get("dense"), background.get("categories")
        if dense is None or categories is None or dense.ndim != 2 or categories.ndim != 2:
            return "it needs 2-d 'dense' and 'categories' tensors"
        if dense.shape[1] != spec.n_dense or categories.shape[1] != len(spec.cardinalities) or len(dense) != len(categories):
            return f"its shapes {tuple(dense.shape)}, {tuple(categories.shape)} do not fit the model's inputs"
        if not dense.is_floating_point() or not bool(dense.isfinite().all()):
            return "its dense block is not finite floats"
        import torch

        limits = torch.tensor(spec.cardinalities or [0]).reshape(1, -1)[:, :categories.shape[1]]
        if categories.is_floating_point() or bool((categories < 0).any()) or bool((categories > limits).any()):
            return "a category code lies outside the model's embedding tables"
        return None

    def check_run(self, state: dict, spec, tokenizer_size: int | None) -> str | None:
        tables = tuple(len(c["categories"]) for c in state["embed"])
        if tables != tuple(spec.cardinalities):
            return f"the embedded columns' categories ({tables}) do not match the model's tables ({spec.cardinalities})"
        channels = [_channels_and_backbone(encoder_spec(c)) for c in state.get("images", [])]
        encoders = [_channels_and_backbone(p) if isinstance(p, (list, tuple)) and p else None for p in spec.pictures]
        if channels != encoders:
            return f"the media columns' channels ({channels}) do not match the model's media encoders ({encoders})"
        text = state.get("text")
        if text is None:
            return None if not spec.vocab_size else "the model reads text but no text state is stored"
        if not tokenizer_size or tokenizer_size > spec.vocab_size or len(text["idf"]) < tokenizer_size:
            return (f"tokenizer.json has {tokenizer_size:,} pieces, the model's table {spec.vocab_size:,} and the idf "
                    f"{len(text['idf']):,}: ids beyond them cannot be read")
        return None

    def probe_source(self, state: dict) -> Source:
        missing = {"number": float("nan"), "text": "", "image_cell": "", "sound_cell": ""}
        fields = self.input_fields(state)
        return Source("table", "probe", frame=pd.DataFrame({f["name"]: [missing.get(f["type"])] for f in fields}))

    def stream_tensors(self, state: dict, where: str):
        from scaletrain.modalities.table.preprocess import table_tensors

        return table_tensors(state, where)

    def encode(self, state: dict, source: Source):
        if source.frame is None:
            raise DataError("this model was trained on a table; give CSV, TSV, Parquet or JSONL rows")
        target = state.get("target_column")
        frame = with_absent_columns(state, source.frame)  # said by input_warnings; refused by --strict
        labels = frame[target].to_numpy() if target in frame.columns else None
        return transform_table(state, frame, source.name).tensors(), labels

    def prediction_frame(self, source: Source) -> pd.DataFrame:
        return source.frame.copy()

    def input_fields(self, state: dict) -> list[dict]:
        from scaletrain.data.values import MISSING

        c = state["columns"]
        known = {col["name"]: [v for v in col["categories"] if v != MISSING] for col in state["onehot"] + state["embed"]}
        return ([{"name": n, "type": "number"} for n in c["numeric_raw"]] + [{"name": n, "type": "boolean"} for n in c["boolean"]]
                + [{"name": n, "type": "date"} for n in c["datetime"]]
                + [{"name": n, "type": "category", "values": known[n]} for n in c["categorical"]]
                + [{"name": n, "type": "text"} for n in state.get("text", {}).get("columns", [])]
                + [{"name": c["name"], "type": "sound_cell" if is_sound(c) else "image_cell"} for c in state.get("images", [])])

    def input_warnings(self, state: dict, source: Source) -> list[dict]:
        return table_warnings(state, source.frame) if source.frame is not None else []

    def onnx_feeds(self, state: dict, source: Source) -> dict:
        """Each raw column a graph input of its own (numbers as float64, the rest as the strings
        predict looks up), and the text's ids from the tokenizer that pads them."""
        from scaletrain.modalities.table.preprocess import column_feeds

        return column_feeds(state, source.frame)

    def record_feeds(self, state: dict, records: list[dict]) -> dict | None:
        from scaletrain.modalities.table.preprocess import record_feeds

        return None if state.get("images") else record_feeds(state, records)

    def export_parts(self, state: dict, opset: int) -> ExportParts:
        import torch

        from scaletrain.data.onnx_graph import table_graph
        from scaletrain.modalities.table.preprocess import table_feature_names
        from scaletrain.models.fronts import TableFront

        graph, names, described = table_graph(state, opset)
        widths = {"dense": len(table_feature_names(state)), "categories": len(state["embed"])}
        example = [torch.zeros((2, widths["dense"])), torch.ones((2, widths["categories"]), dtype=torch.long)]
        example = [x for x, n in zip(example, ("dense", "categories")) if n in names]
        text = state.get("text")
        if text:
            example.append(torch.ones((2, text["length"]), dtype=torch.long))
            described.append({"name": "tokens", "type": "int64", "shape": ["batch", text["length"]],
                              "what": f"the ids of column(s) {text['columns']} joined by ' [SEP] ', from the "
                                      "<model>.tokenizer.json beside the model (it pads and cuts them to this length)"})
        images = state.get("images", [])
        for column in images:  # each media column: its missing flag, then (below) its pixels or samples
            example.append(torch.zeros((2, 1)))
            described.append({"name": f"{column['name']}.missing", "type": "float32", "shape": ["batch", 1],
                              "what": f"1 where the row has no readable {'clip' if is_sound(column) else 'image'} in "
                                      f"'{column['name']}', else 0"})
        for column in images:
            example.append(media_example(column))
            described.append(media_input(column))
        pictures = [f"{c['name']}.missing" for c in images] + [c["name"] for c in images]
        front = TableFront("dense" in names, "categories" in names, text["idf"] if text else None, len(images))
        return ExportParts(front, tuple(example), names + (["tokens"] if text else []) + pictures,
                           graph if names else None, described)


def _channels_and_backbone(entry) -> tuple:
    return entry[0], entry[3] if len(entry) > 3 else None


TRANSFORMER_SECONDS = 120  # a time limit from which a from-scratch Transformer joins the text candidates


def spends_time_on_text(config: Config, facts: DataFacts) -> bool:
    """Whether a time limit leaves room for a from-scratch Transformer beside the linear model
    and the bag-of-pieces MLP (both take seconds to a minute): given minutes and thousands of
    texts, the time is spent on the one candidate that reads word order. Without a limit zero-config
    stays fast and the same on every run."""
    limit = config.train.time_limit
    return bool(limit) and limit >= TRANSFORMER_SECONDS and facts.n_train >= SMALL_TABLE


def _name_of(data) -> str:
    path = Path(data)
    return path.stem.split(".")[0] if path.is_file() else path.name or "data"


TABLE = Table()
