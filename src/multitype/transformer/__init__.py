"""Transformer fine-tuning: model names, batches, checkpoints, the training loop."""
