"""Masked-LM pretraining of a Transformer encoder on unlabeled text (`scaletrain pretrain`)."""
