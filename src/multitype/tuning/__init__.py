"""Hyperparameter tuning: one search space (``space``) for local Optuna studies and SageMaker tuning jobs."""
