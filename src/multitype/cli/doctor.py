"""``multitype doctor``: the migration checklist as checks that pass, fail or are skipped."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add ``multitype doctor`` to ``app``."""
