"""Saving matplotlib figures through storage (Agg backend, PNG)."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from multitype.storage import Storage  # noqa: E402


def save_figure(storage: Storage, key: str, fig: "plt.Figure") -> str:
    """Write ``fig`` as a PNG to ``key`` (atomically) and close it."""
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    storage.write_bytes(key, buf.getvalue())
    return key
