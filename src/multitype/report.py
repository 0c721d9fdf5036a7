"""``multitype report``: summary CSVs, comparison and confusion-matrix plots, results/report.md.

Everything is rebuilt from the ``*_metrics.json`` files present under
``results/baseline`` and ``results/transformer`` (same schema), so the report
always agrees with them. Figure links in the Markdown are relative, so the
report renders wherever the root is synced to.
"""

from __future__ import annotations

import json
import posixpath
import time
from typing import Any, Sequence

import numpy as np

from multitype import layout
from multitype.data.publish import read_current
from multitype.errors import UserError
from multitype.figures import plt, save_figure
from multitype.manifest import write_manifest
from multitype.project import Project
from multitype.results import KINDS, load_records, metrics_keys, write_summary
from multitype.storage import Storage

COMPARISON = "model_comparison"


def confusion_name(model: str) -> str:
    """``figures/results/confusion_<model-slug>.png`` name for a model."""
    return f"confusion_{layout.model_slug(model)}"


# --- figures ----------------------------------------------------------------------------
def comparison_figure(records: Sequence[dict[str, Any]]) -> "plt.Figure":
    """Grouped bars of test accuracy and macro-F1 per model, values written on the bars."""
    names = [r["model"] for r in records]
    metrics = {"accuracy": [r["accuracy"] for r in records], "macro-F1": [r["macro_f1"] for r in records]}
    x = np.arange(len(names))
    width = 0.38
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(names) + 2), 4.5))
    for i, (metric, values) in enumerate(metrics.items()):
        bars = ax.bar(x + (i - 0.5) * width, values, width, label=metric)
        ax.bar_label(bars, labels=[f"{v:.3f}" for v in values], padding=2, fontsize=8)
    low = min(min(v) for v in metrics.values())
    floor = max(0.0, np.floor((low - 0.05) * 10) / 10)  # zoom in, but say where the axis starts
    ax.set_ylim(floor, 1.02)
    crowded = len(names) > 4 or max(map(len, names)) > 14
    ax.set_xticks(x, names, rotation=20 if crowded else 0, ha="right" if crowded else "center")
    ax.set_ylabel(f"test score (axis from {floor:.1f})" if floor else "test score")
    ax.set_title("Model comparison on the test split")
    ax.legend(loc="lower right")
    ax.grid(axis="y", alpha=0.3)
    return fig


def confusion_figure(record: dict[str, Any]) -> "plt.Figure":
    """Heatmap coloured by row-normalised rate (recall), annotated with counts."""
    labels = record["confusion_matrix"]["labels"]
    counts = np.asarray(record["confusion_matrix"]["matrix"], dtype=np.int64)
    rows = counts.sum(axis=1, keepdims=True)
    rates = np.divide(counts, rows, out=np.zeros(counts.shape, dtype=float), where=rows > 0)
    size = max(4.5, 0.9 * len(labels) + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    image = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(j, i, f"{counts[i, j]}\n{rates[i, j]:.0%}", ha="center", va="center", fontsize=8,
                    color="white" if rates[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted label")
    ax.set_ylabel("true label")
    ax.set_title(f"{record['model']}: {record.get('split', 'test')} accuracy {record['accuracy']:.3f}")
    return fig


# --- markdown ---------------------------------------------------------------------------
def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_fmt(v) if not isinstance(v, str) else v for v in row) + " |" for row in rows]
    return lines


def _link(target_key: str) -> str:
    """Path of ``target_key`` relative to the report's folder."""
    return posixpath.relpath(target_key, posixpath.dirname(layout.REPORT))


def _results_section(records: list[dict[str, Any]]) -> list[str]:
    rows = []
    for r in records:
        val = r.get("splits", {}).get("val", {})
        test = r.get("splits", {}).get("test", {})
        rows.append([f"`{r['model']}`", r.get("kind", "-"), r["accuracy"], r["macro_f1"], r["weighted_f1"],
                     val.get("accuracy"), val.get("macro_f1"), _fmt(r.get("training_seconds"), 1),
                     _fmt(r.get("inference_samples_per_s"), 1), _fmt(test.get("num_samples"))])
    best = max(records, key=lambda r: r["macro_f1"])
    lines = ["## Results", "",
             f"Test split; best macro-F1: **`{best['model']}`** ({best['macro_f1']:.4f}).", ""]
    lines += _table(["model", "kind", "accuracy", "macro-F1", "weighted-F1", "val accuracy", "val macro-F1",
                     "training s", "inference samples/s", "test samples"], rows)
    lines += ["", f"![Model comparison]({_link(layout.figure_results(COMPARISON))})", ""]
    labels = records[0]["confusion_matrix"]["labels"]
    if all(r["confusion_matrix"]["labels"] == labels for r in records):
        lines += ["### Per-class F1 (test)", ""]
        lines += _table(["model", *labels], [[f"`{r['model']}`", *(r["per_class"][c]["f1"] for c in labels)]
                                             for r in records])
        lines.append("")
    lines += ["### Confusion matrices (test)", "",
              "Cells show counts and the share of the true class (rows sum to 100%).", ""]
    for r in records:
        lines += [f"#### `{r['model']}`", "",
                  f"![Confusion matrix {r['model']}]({_link(layout.figure_results(confusion_name(r['model'])))})", ""]
    return lines


def _audit_section(audit: dict[str, Any]) -> list[str]:
    lines = ["## Data", ""]
    if audit.get("input"):
        lines.append(f"- input: `{audit['input']}` ({audit.get('format', '?')}), "
                     f"{audit.get('records_read', '?')} records read, {audit.get('records_audited', '?')} audited")
    if "policy" in audit:
        lines.append(f"- leakage policy: `{audit['policy']}`")
    exact, conflicts = audit.get("exact_duplicates", {}), audit.get("label_conflicts", {})
    near, cross = audit.get("near_duplicates", {}), audit.get("cross_split", {})
    if exact:
        lines.append(f"- exact duplicates: {exact.get('groups', 0)} group(s), {exact.get('extra_rows', 0)} extra row(s)")
    if conflicts:
        lines.append(f"- conflicting labels: {conflicts.get('groups', 0)} group(s)")
    if near:
        lines.append(f"- near duplicates (cosine >= {near.get('threshold', '?')}): {near.get('pairs', 0)} pair(s)")
    dropped = audit.get("dropped") or {}
    if dropped:
        lines.append("- dropped: " + ", ".join(f"{reason} {n}" for reason, n in dropped.items()))
    if cross:
        lines.append(f"- across splits after the audit: {cross.get('exact_duplicates', 0)} exact, "
                     f"{cross.get('near_duplicates', 0)} near duplicate(s)")
    splits = audit.get("splits") or {}
    labels = audit.get("labels") or sorted({c for s in splits.values() for c in s.get("classes", {})})
    if splits:
        lines += ["", *_table(["split", "size", "fraction", *labels],
                              [[name, s.get("size"), s.get("fraction"), *(s.get("classes", {}).get(c, 0)
                                                                         for c in labels)]
                               for name, s in splits.items()])]
    lines.append("")
    return lines


def _data_figures(storage: Storage) -> list[str]:
    names = [n for n in storage.listdir(layout.FIGURES_DATA) if n.endswith(".png") and not n.startswith(".")]
    lines = []
    for name in names:
        title = name[:-4].replace("_", " ")
        lines += [f"![{title}]({_link(f'{layout.FIGURES_DATA}/{name}')})", ""]
    return lines


def build_report(project: Project) -> str:
    """Rebuild the summaries, draw the figures and write ``results/report.md``.

    Parameters
    ----------
    project : Project
        The root to read metrics from and write the report into.

    Returns
    -------
    str
        The key of the report (``results/report.md``).

    Raises
    ------
    UserError
        No ``*_metrics.json`` under results/ (train a model first).
    """
    storage = project.storage
    by_kind = {kind: load_records(storage, kind) for kind in KINDS}
    records = [rec for kind in KINDS for _, rec in sorted(by_kind[kind].items())]
    if not records:
        raise UserError(f"no results under {storage.url('results')} (no *_metrics.json); train a model first "
                        "with 'multitype train baseline' or 'multitype train transformer'")
    outputs = [key for kind in KINDS if (key := write_summary(storage, kind, by_kind[kind]))]
    outputs.append(save_figure(storage, layout.figure_results(COMPARISON), comparison_figure(records)))
    for record in records:
        outputs.append(save_figure(storage, layout.figure_results(confusion_name(record["model"])),
                                   confusion_figure(record)))

    lines = ["# multitype report", "",
             f"Generated {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} by run `{project.run_id}` "
             f"from {len(records)} model(s).", ""]
    lines += _results_section(records)
    audit = read_current(storage, layout.AUDIT)  # the committed set, even after a prepare cut short
    if audit is not None or storage.listdir(layout.FIGURES_DATA):
        lines += _audit_section(json.loads(audit)) if audit is not None else ["## Data", ""]
        lines += _data_figures(storage)
    lines += ["## Sources", ""]
    lines += [f"- [{key}]({_link(key)})" for kind in KINDS for key in [*metrics_keys(storage, kind), KINDS[kind][1]]
              if storage.exists(key)]
    storage.write_text(layout.REPORT, "\n".join(lines).rstrip() + "\n")
    outputs.append(layout.REPORT)
    inputs = [key for kind in KINDS for key in metrics_keys(storage, kind)]
    if audit is not None:
        inputs.append(layout.AUDIT)
    write_manifest(project, inputs=inputs, outputs=outputs, extra={"models": [r["model"] for r in records]})
    return layout.REPORT
