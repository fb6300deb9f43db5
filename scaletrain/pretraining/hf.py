"""Hugging Face interop: a pretraining run's encoder and tokenizer written to `DIR/hf` so that
`AutoModelForMaskedLM.from_pretrained(DIR/hf)` and `AutoTokenizer.from_pretrained(DIR/hf)`
load them (as BertForMaskedLM and a fast BERT tokenizer) and give the same logits. Plain files
(config.json, model.safetensors, tokenizer.json, tokenizer_config.json): `transformers` is not
needed to write them."""
from __future__ import annotations

import torch

from scaletrain.errors import ConfigError
from scaletrain.models.transformer import EncoderShape, MaskedLM


def bert_config(s: EncoderShape) -> dict:
    return {"architectures": ["BertForMaskedLM"], "model_type": "bert", "vocab_size": s.vocab_size,
            "hidden_size": s.width, "num_hidden_layers": s.layers, "num_attention_heads": s.heads,
            "intermediate_size": s.ff, "hidden_act": "gelu", "hidden_dropout_prob": s.dropout,
            "attention_probs_dropout_prob": s.dropout, "max_position_embeddings": s.max_positions,
            "type_vocab_size": 1, "layer_norm_eps": s.eps, "pad_token_id": 0, "tie_word_embeddings": True,
            "position_embedding_type": "absolute", "initializer_range": 0.02}


def bert_tensors(model: MaskedLM) -> dict[str, torch.Tensor]:
    """Our tensors under BertForMaskedLM's names (the fused q/k/v projection split in three)."""
    e, s = model.encoder, model.encoder.shape
    out = {"bert.embeddings.word_embeddings.weight": e.tokens.weight,
           "bert.embeddings.position_embeddings.weight": e.positions.weight,
           "bert.embeddings.token_type_embeddings.weight": torch.zeros(1, s.width),  # one type, adding nothing
           "bert.embeddings.LayerNorm.weight": e.embedding_norm.weight,
           "bert.embeddings.LayerNorm.bias": e.embedding_norm.bias,
           "cls.predictions.transform.dense.weight": model.head_dense.weight,
           "cls.predictions.transform.dense.bias": model.head_dense.bias,
           "cls.predictions.transform.LayerNorm.weight": model.head_norm.weight,
           "cls.predictions.transform.LayerNorm.bias": model.head_norm.bias,
           "cls.predictions.bias": model.head_bias,
           "cls.predictions.decoder.weight": e.tokens.weight,
           "cls.predictions.decoder.bias": model.head_bias}
    for i, block in enumerate(e.blocks):
        at = f"bert.encoder.layer.{i}."
        for name, w, b in zip(("query", "key", "value"), block.qkv.weight.chunk(3), block.qkv.bias.chunk(3)):
            out[f"{at}attention.self.{name}.weight"], out[f"{at}attention.self.{name}.bias"] = w, b
        pairs = {"attention.output.dense": block.attention_out, "attention.output.LayerNorm": block.attention_norm,
                 "intermediate.dense": block.ff_in, "output.dense": block.ff_out, "output.LayerNorm": block.ff_norm}
        for name, module in pairs.items():
            out[f"{at}{name}.weight"], out[f"{at}{name}.bias"] = module.weight, module.bias
    return {k: v.detach().to("cpu", torch.float32).contiguous().clone() for k, v in out.items()}


def hf_files(model: MaskedLM) -> tuple[dict[str, torch.Tensor], dict, dict]:
    """The Hugging Face folder's tensors, config.json and tokenizer_config.json (RunDir writes them)."""
    s = model.encoder.shape
    if s.pre_norm:
        raise ConfigError("the Hugging Face export reproduces BERT, which is post-norm; pretrain with "
                          "model.pre_norm=false to get DIR/hf")
    tokenizer_config = {"tokenizer_class": "BertTokenizerFast", "do_lower_case": True,
                        "model_max_length": s.max_positions, "pad_token": "[PAD]", "unk_token": "[UNK]",
                        "cls_token": "[CLS]", "sep_token": "[SEP]", "mask_token": "[MASK]"}
    return bert_tensors(model), bert_config(s), tokenizer_config
