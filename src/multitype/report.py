"""``multitype report``: summary CSVs, figures, error lists, results/report.md and its HTML twin.

Everything is rebuilt from the ``*_metrics.json`` files present under
``results/baseline`` and ``results/transformer`` (same schema), so the report
always agrees with them: intervals and paired tests (:mod:`multitype.compare`),
misclassified texts (:mod:`multitype.error_analysis`, ``results/errors/``),
learning curves and reliability diagrams (:mod:`multitype.report_figures`), one "Tuning" block per
study under ``results/tuning`` (:mod:`multitype.tuning.report_section`),
and ``results/report.html`` with the figures embedded (:mod:`multitype.report_html`).
Figure links in the Markdown are relative, so the
report renders wherever the root is synced to.
"""

from __future__ import annotations

import json
import posixpath
import time
from typing import Any, Callable, Sequence

import numpy as np

from multitype import error_analysis, layout, report_figures
from multitype.calibration import reliability
from multitype.compare import Analysis, analyse, p_value, predictions, schema_version, tie_reason
from multitype.data.publish import read_current
from multitype.errors import UserError
from multitype.figures import plt, save_figure
from multitype.manifest import write_manifest
from multitype.project import Project
from multitype.report_html import render_html
from multitype.results import KINDS, load_records, metrics_keys, write_summary
from multitype.storage import Storage
from multitype.tuning.report_section import tuning_section

COMPARISON = "model_comparison"
OVERLAY = "learning_curves"  # one figure for every transformer


def confusion_name(model: str) -> str:
    """``figures/results/confusion_<model-slug>.png`` name for a model."""
    return f"confusion_{layout.model_slug(model)}"


def learning_name(model: str) -> str:
    """``figures/results/learning_<model-slug>.png``."""
    return f"learning_{layout.model_slug(model)}"


def calibration_name(model: str) -> str:
    """``figures/results/calibration_<model-slug>.png``."""
    return f"calibration_{layout.model_slug(model)}"


# --- figures ----------------------------------------------------------------------------
def comparison_figure(records: Sequence[dict[str, Any]],
                      intervals: dict[str, dict[str, Any] | None] | None = None) -> "plt.Figure":
    """Grouped bars of test accuracy and macro-F1 per model, values written on the bars.

    ``intervals`` (model -> :func:`multitype.stats.bootstrap_intervals`) adds them as error bars.
    """
    names = [r["model"] for r in records]
    keys = {"accuracy": "accuracy", "macro-F1": "macro_f1"}
    metrics = {label: [r[key] for r in records] for label, key in keys.items()}
    x = np.arange(len(names))
    width = 0.38
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(names) + 2), 4.5))
    lows = []
    for i, (metric, values) in enumerate(metrics.items()):
        spans = [(intervals or {}).get(n) or {} for n in names]
        bounds = [s.get(keys[metric]) or [v, v] for s, v in zip(spans, values)]
        err = np.array([[v - b[0] for v, b in zip(values, bounds)], [b[1] - v for v, b in zip(values, bounds)]])
        lows += [b[0] for b in bounds]
        bars = ax.bar(x + (i - 0.5) * width, values, width, label=metric,
                      yerr=np.clip(err, 0, None) if intervals else None, capsize=3)
        ax.bar_label(bars, labels=[f"{v:.3f}" for v in values], padding=2, fontsize=8, label_type="center")
    low = min(min(min(v) for v in metrics.values()), *lows)
    floor = max(0.0, np.floor((low - 0.05) * 10) / 10)  # zoom in, but say where the axis starts
    ax.set_ylim(floor, 1.02)
    crowded = len(names) > 4 or max(map(len, names)) > 14
    ax.set_xticks(x, names, rotation=20 if crowded else 0, ha="right" if crowded else "center")
    ax.set_ylabel(f"test score (axis from {floor:.1f})" if floor else "test score")
    ax.set_title("Model comparison on the test split" + (" (bars: bootstrap intervals)" if intervals else ""))
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


def _with_interval(value: float, interval: Sequence[float] | None) -> str:
    """``0.983 [0.960, 0.994]``, or ``0.983 [n/a]`` without an interval."""
    if interval is None:
        return f"{value:.3f} [n/a]"
    return f"{value:.3f} [{interval[0]:.3f}, {interval[1]:.3f}]"


def _verdict(analysis: Analysis, records: list[dict[str, Any]]) -> list[str]:
    best = next(r for r in records if r["model"] == analysis.best)
    alpha = analysis.settings.alpha
    if len(records) == 1:
        return [f"One model, `{best['model']}` (test macro-F1 {best['macro_f1']:.4f}): nothing to compare it with."]
    if analysis.single_best:
        return [f"**Best: `{best['model']}`** (test macro-F1 {best['macro_f1']:.4f}), significantly better than every "
                f"other model at level {alpha:g} (McNemar's exact test and the paired bootstrap of the macro-F1 "
                "difference both reject a tie)."]
    lines = []
    if analysis.tied:
        names = ", ".join(f"`{m}`" for m in [best["model"], *analysis.tied])
        lines.append(f"**No single best model: {names} are statistically tied** at level {alpha:g} "
                     f"(highest macro-F1: `{best['model']}`, {best['macro_f1']:.4f}).")
        lines += [f"- `{m}` tied: {tie_reason(analysis.comparisons[m])}" for m in analysis.tied]
    else:
        lines.append(f"Highest test macro-F1: `{best['model']}` ({best['macro_f1']:.4f}); not named the single "
                     "best, since some models could not be compared with it.")
    lines += [f"- `{m}` not compared: {why}" for m, why in analysis.not_compared.items()]
    return lines


def _results_section(records: list[dict[str, Any]], analysis: Analysis) -> list[str]:
    rows = []
    for r in records:
        val = r.get("splits", {}).get("val", {})
        test = r.get("splits", {}).get("test", {})
        ci = analysis.intervals[r["model"]] or {}
        rows.append([f"`{r['model']}`", r.get("kind", "-"),
                     *(_with_interval(r[m], ci.get(m)) for m in ("accuracy", "macro_f1", "weighted_f1")),
                     val.get("accuracy"), val.get("macro_f1"), _fmt(r.get("training_seconds"), 1),
                     _fmt(r.get("inference_samples_per_s"), 1), _fmt(test.get("num_samples"))])
    settings = analysis.settings
    lines = ["## Results", "", *_verdict(analysis, records), "",
             f"Test split; in brackets the {settings.confidence:.0%} bootstrap interval ({settings.resamples:,} "
             "resamples of the test texts, stratified by class, seeded).", ""]
    lines += _table(["model", "kind", "accuracy", "macro-F1", "weighted-F1", "val accuracy", "val macro-F1",
                     "training s", "inference samples/s", "test samples"], rows)
    if analysis.notes:
        lines += ["", *(f"- `{m}` intervals: {note}." if analysis.intervals[m] else f"- `{m}` intervals: n/a, {note}."
                        for m, note in analysis.notes.items())]
    lines += ["", f"![Model comparison]({_link(layout.figure_results(COMPARISON))})", ""]
    lines += _comparison_section(analysis)
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


def _comparison_section(analysis: Analysis) -> list[str]:
    if not analysis.comparisons and not analysis.not_compared:
        return []
    alpha = analysis.settings.alpha
    lines = [f"### Paired comparisons against `{analysis.best}`", "",
             "On the same test texts: McNemar's exact test on the texts exactly one of the two models gets right, "
             f"and the paired bootstrap {1 - alpha:.0%} interval of the macro-F1 difference (best minus model). "
             f"A model is significantly worse when both reject a tie at level {alpha:g}.", ""]
    rows = []
    for model, row in analysis.comparisons.items():
        low, high = row["difference_interval"]
        rows.append([f"`{model}`", f"{row['differ']} of {row['num_samples']}", str(row["best_only_correct"]),
                     str(row["other_only_correct"]), p_value(row["mcnemar_p"]),
                     f"{row['macro_f1_difference']:.4f} [{low:.4f}, {high:.4f}]",
                     "worse" if row["significant"] else "tied"])
    for model, why in analysis.not_compared.items():
        rows.append([f"`{model}`", "-", "-", "-", "-", "-", f"not compared: {why}"])
    lines += _table(["model", "texts that differ", "only best right", "only model right", "McNemar p",
                     "macro-F1 difference", "verdict"], rows)
    return [*lines, ""]


def _cell(text: str, limit: int = 120) -> str:
    """A text as one Markdown table cell: one line, pipes escaped, cut at ``limit`` characters."""
    text = " ".join(text.split())
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    return text.replace("|", "\\|")


def _errors_section(records: list[dict[str, Any]], error_keys: dict[str, str]) -> list[str]:
    lines = ["## Error analysis", ""]
    rows = []
    for r in records:
        key = error_keys.get(r["model"])
        wrong = sum(sum(row) - row[i] for i, row in enumerate(r["confusion_matrix"]["matrix"]))
        total = sum(map(sum, r["confusion_matrix"]["matrix"]))
        rows.append([f"`{r['model']}`", f"{wrong} of {total}",
                     f"[{key}]({_link(key)})" if key else "n/a: no per-text predictions in its metrics file"])
    lines += _table(["model", "misclassified test texts", "list (first 200 characters, labels, probability)"], rows)
    pairs = error_analysis.confused_pairs(records)
    if pairs:
        lines += ["", "### Most confused class pairs (all models)", ""]
        lines += _table(["true label", "predicted label", "errors, all models", "per model"],
                        [[p["true"], p["predicted"], str(p["total"]),
                          ", ".join(f"`{m}` {n}" for m, n in p["models"].items())] for p in pairs])
    missed = error_analysis.missed_by_all(records)
    usable = sum(1 for r in records if predictions(r) is not None)
    if usable >= 2:
        lines += ["", f"### Test texts every model gets wrong ({len(missed)})", ""]
        if missed:
            lines += ["Texts that every model misses are often mislabelled or ambiguous (label noise) rather than "
                      "hard: read them before reading much into the last point of accuracy.", ""]
            lines += _table(["row", "true label", "predictions", "text (start)"],
                            [[str(m["index"]), m["true"], ", ".join(f"`{k}`: {v}" for k, v in m["predicted"].items()),
                              _cell(m["text"])] for m in missed])
    return [*lines, ""]


def _training_section(records: list[dict[str, Any]], figures: dict[str, str]) -> list[str]:
    curves = [r for r in records if report_figures.history(r)]
    if not curves:
        return []
    lines = ["## Training", "", "Per epoch, from each run's history: train loss, val loss and the validation "
             "metric the best epoch was chosen by (dotted line).", ""]
    if OVERLAY in figures:
        lines += [f"![Learning curves, all transformers]({_link(figures[OVERLAY])})", ""]
    for r in curves:
        lines += [f"#### `{r['model']}`", "", f"![Learning curve {r['model']}]({_link(figures[r['model']])})", ""]
    return lines


def _calibration_section(records: list[dict[str, Any]], bins: dict[str, dict[str, Any]],
                         figures: dict[str, str]) -> list[str]:
    lines = ["## Calibration", "",
             "How far the probability of the predicted class is from the share of such texts it gets right: the "
             "reliability diagram (10 equal-width confidence bins) and the expected calibration error (ECE, 0 is "
             "perfectly calibrated).", ""]
    rows = []
    for r in records:
        block = predictions(r)
        if r["model"] in bins:
            rows.append([f"`{r['model']}`", f"{bins[r['model']]['ece']:.4f}", "reliability diagram below"])
        elif block is None:
            rows.append([f"`{r['model']}`", "n/a", "no per-text predictions in its metrics file (schema "
                         f"{schema_version(r)}): no calibration figure"])
        else:
            why = block.get("no_probabilities") or "it stores no probabilities"
            rows.append([f"`{r['model']}`", "n/a", f"{why}: no calibration figure"])
    lines += _table(["model", "ECE", "note"], rows)
    lines.append("")
    for model in bins:
        lines += [f"#### `{model}`", "", f"![Reliability diagram {model}]({_link(figures[model])})", ""]
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


def build_report(project: Project, warn: Callable[[str], None] | None = None) -> str:
    """Rebuild the summaries, draw the figures, write the error lists, ``results/report.md`` and ``report.html``.

    Parameters
    ----------
    project : Project
        The root to read metrics from and write the report into.
    warn : callable, optional
        Told each tuning study skipped because its files break the tuning contract (the report says so too).

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
    settings, seed = project.configs.project.report, project.configs.project.seed
    analysis = analyse(records, settings, seed)
    outputs = [key for kind in KINDS if (key := write_summary(storage, kind, by_kind[kind]))]
    outputs.append(save_figure(storage, layout.figure_results(COMPARISON),
                               comparison_figure(records, analysis.intervals)))
    for record in records:
        outputs.append(save_figure(storage, layout.figure_results(confusion_name(record["model"])),
                                   confusion_figure(record)))
    curves, calibration, bins = {}, {}, {}
    for record in records:
        if report_figures.history(record):
            curves[record["model"]] = save_figure(storage, layout.figure_results(learning_name(record["model"])),
                                                  report_figures.learning_curve_figure(record))
        block = predictions(record)
        if block is not None and block.get("probabilities") is not None:
            bins[record["model"]] = reliability(block["probabilities"], block["y_true"])
            calibration[record["model"]] = save_figure(
                storage, layout.figure_results(calibration_name(record["model"])),
                report_figures.reliability_figure(record["model"], bins[record["model"]]))
    if curves:
        curves[OVERLAY] = save_figure(storage, layout.figure_results(OVERLAY), report_figures.learning_overlay_figure(
            [r for r in records if r["model"] in curves]))
    error_keys = error_analysis.write_error_csvs(storage, records)
    outputs += [*curves.values(), *calibration.values(), *error_keys.values()]

    lines = ["# multitype report", "",
             f"Generated {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} by run `{project.run_id}` "
             f"from {len(records)} model(s).", ""]
    lines += _results_section(records, analysis)
    lines += _errors_section(records, error_keys)
    lines += _training_section(records, curves)
    lines += _calibration_section(records, bins, calibration)
    tuning = tuning_section(storage, seed, _link)
    lines += tuning.lines
    outputs += tuning.outputs
    if warn is not None:
        for problem in tuning.problems:
            warn(problem)
    audit = read_current(storage, layout.AUDIT)  # the committed set, even after a prepare cut short
    if audit is not None or storage.listdir(layout.FIGURES_DATA):
        lines += _audit_section(json.loads(audit)) if audit is not None else ["## Data", ""]
        lines += _data_figures(storage)
    lines += ["## Sources", ""]
    lines += [f"- [{key}]({_link(key)})" for kind in KINDS for key in [*metrics_keys(storage, kind), KINDS[kind][1]]
              if storage.exists(key)]
    lines += [f"- [{key}]({_link(key)})" for key in tuning.inputs]
    markdown = "\n".join(lines).rstrip() + "\n"
    storage.write_text(layout.REPORT, markdown)
    storage.write_text(layout.REPORT_HTML, render_html(markdown, storage))
    outputs += [layout.REPORT, layout.REPORT_HTML]
    inputs = [key for kind in KINDS for key in metrics_keys(storage, kind)]
    if audit is not None:
        inputs.append(layout.AUDIT)
    inputs += tuning.inputs
    write_manifest(project, inputs=inputs, outputs=outputs, extra={
        "models": [r["model"] for r in records], "best": analysis.best, "single_best": analysis.single_best,
        "tied": analysis.tied})
    return layout.REPORT
