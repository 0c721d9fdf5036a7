"""Experiment bookkeeping beside training: MLflow tracking (tune and registry come later)."""
