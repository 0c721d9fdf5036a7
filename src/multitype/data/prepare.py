"""``multitype prepare``: raw input -> audited, stratified train/val/test splits.

Reads top to bottom: read the input, check it against the immutable raw copy,
clean, audit for leakage, apply the policy, split, check the split, then write
everything. Every check runs before the first write, so a bad input leaves
``data/``, ``results/`` and the rest of the root exactly as they were; the data
set itself (raw copy, splits, labels, audit) is replaced as one
(:mod:`multitype.data.publish`), so a run that dies while writing leaves readers
the old set or the new one, never a mix.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
from rich.console import Console
from rich.table import Table

from multitype import layout
from multitype.config import DataConfig, SplitConfig
from multitype.data import audit as leakage
from multitype.data import neardup, sources
from multitype.data.publish import publish, read_current
from multitype.errors import DataError
from multitype.progress import stages, ticking
from multitype.project import Project
from multitype.storage import Storage

SPLITS = leakage.SPLIT_NAMES


# --- steps --------------------------------------------------------------------------
def read_raw(project: Project, input: str | None,
             progress: Callable[[int, int], None] | None = None) -> sources.RawData:
    """The raw input: ``input``, else ``input`` in data_config.yaml, else embedded BBC News."""
    cfg = project.configs.data
    location = input or cfg.input
    if location is None:
        return sources.read_bbc_news(progress=progress)
    return sources.read_input(location, cfg.format, cfg.text_field, cfg.label_field,
                              endpoint_url=project.storage.endpoint_url,
                              profile=getattr(project.storage, "profile", None), progress=progress,
                              encoding=cfg.encoding)


def raw_state(storage: Storage, records: list[dict[str, str]]) -> str:
    """``new`` (no raw copy yet), ``same`` (identical records) or ``differs``."""
    data = read_current(storage, layout.RAW_DATA)
    if data is None:
        return "new"
    text = data.decode("utf-8", errors="replace")
    try:
        existing = json.loads(text)
    except json.JSONDecodeError:
        try:  # DESIGN allows JSON Lines for the raw copy too
            existing = [json.loads(line) for line in text.splitlines() if line.strip()]
        except json.JSONDecodeError:
            return "differs"
    return "same" if existing == records else "differs"


@dataclass
class Cleaned:
    """Records left after the label filter and the empty-text rule.

    ``records`` carry ``row``, their 1-based row in the input.
    """

    records: list[dict[str, Any]]
    excluded_labels: dict[str, int] = field(default_factory=dict)
    empty_rows: list[int] = field(default_factory=list)
    empty_examples: list[dict[str, Any]] = field(default_factory=list)


def clean(raw: sources.RawData, cfg: DataConfig) -> Cleaned:
    """Keep the configured labels, strip texts, and drop (or refuse) empty ones.

    Raises
    ------
    DataError
        A configured label that is not in the input, or an empty text when
        ``empty_texts: error``.
    """
    present = Counter(r["label"] for r in raw.records)
    excluded: dict[str, int] = {}
    if cfg.labels is not None:
        repeated = sorted({name for name in cfg.labels if cfg.labels.count(name) > 1})
        if repeated:
            raise DataError(f"data_config.yaml: labels lists {repeated[0]!r} twice; list each class once")
        missing = [name for name in cfg.labels if name not in present]
        if missing:
            raise DataError(f"data_config.yaml: label {missing[0]!r} is not in {raw.source} (its labels: "
                            f"{', '.join(sorted(present))}); fix 'labels' or the input")
        excluded = {name: n for name, n in sorted(present.items()) if name not in cfg.labels}
    keep = set(cfg.labels) if cfg.labels is not None else None
    records, empty_rows, examples = [], [], []
    for i, record in enumerate(raw.records):
        if keep is not None and record["label"] not in keep:
            continue
        text = record["text"].strip()
        if len(text) < cfg.min_chars:
            if cfg.empty_texts == "error":
                raise DataError(f"{raw.source} row {i + 1}: text is empty or shorter than min_chars={cfg.min_chars}; "
                                "remove the row or set empty_texts: drop in data_config.yaml")
            empty_rows.append(i + 1)
            if len(examples) < leakage.N_EXAMPLES:
                examples.append({"row": i + 1, "label": record["label"], "text": leakage.snippet(text)})
            continue
        records.append({"text": text, "label": record["label"], "row": i + 1})
    return Cleaned(records, excluded, empty_rows, examples)


def label_order(cfg: DataConfig, records: Sequence[dict[str, Any]]) -> list[str]:
    """Class names in id order: the configured ``labels``, else sorted."""
    return list(cfg.labels) if cfg.labels is not None else sorted({r["label"] for r in records})


def check_classes(labels: list[str], counts: Counter, cfg: DataConfig, source: str) -> None:
    """At least two classes, each with at least ``min_per_class`` examples."""
    if len(labels) < 2:
        only = f" ({labels[0]!r})" if labels else ""
        raise DataError(f"{source}: only one class{only} is left after cleaning; a classifier needs at least two")
    small = [(name, counts.get(name, 0)) for name in labels if counts.get(name, 0) < cfg.min_per_class]
    if small:
        listed = ", ".join(f"{name!r} has {n}" for name, n in small)
        raise DataError(f"{source}: class {listed} example(s) after cleaning and de-duplication, fewer than "
                        f"min_per_class={cfg.min_per_class}; add examples, or leave the class out with "
                        "labels: [...] in data_config.yaml")


def stratified_split(group_labels: Sequence[str], cfg: SplitConfig) -> np.ndarray:
    """Split index (0 train, 1 val, 2 test) of each group, stratified by label.

    ``train_test_split`` twice: test off the whole, then val off the rest.
    """
    from sklearn.model_selection import train_test_split

    y = np.asarray(group_labels)
    index = np.arange(len(y))
    split_of = np.zeros(len(y), np.int64)
    try:
        rest, test = train_test_split(index, test_size=cfg.test, stratify=y, random_state=cfg.seed)
        split_of[test] = 2
        if cfg.val > 0:
            _, val = train_test_split(rest, test_size=cfg.val / (cfg.train + cfg.val), stratify=y[rest],
                                      random_state=cfg.seed)
            split_of[val] = 1
    except ValueError as exc:
        raise DataError(f"cannot split {len(y)} examples of {len(set(group_labels))} classes with "
                        f"train/val/test = {cfg.train:g}/{cfg.val:g}/{cfg.test:g} ({' '.join(str(exc).split())}); "
                        "add examples, raise min_per_class or leave small classes out with labels: [...]") from None
    return split_of


def assign_splits(plan: leakage.Plan, records: Sequence[dict[str, Any]],
                  cfg: SplitConfig) -> tuple[np.ndarray, dict[str, list[dict[str, Any]]]]:
    """Split the plan's groups; return each record's split index (-1: dropped) and the split records.

    Groups are visited in a seeded random order, so the files are not sorted by class.
    """
    group_split = stratified_split(plan.group_labels, cfg)
    split_of = np.full(len(records), -1, np.int64)
    rows: dict[int, list[int]] = {k: [] for k in range(len(SPLITS))}
    for g in np.random.default_rng(cfg.seed).permutation(len(plan.groups)):
        split_of[plan.groups[g]] = group_split[g]
        rows[int(group_split[g])].extend(plan.groups[g])
    return split_of, {name: [records[r] for r in rows[k]] for k, name in enumerate(SPLITS)}


def check_train_covers(per_split: dict[str, list[dict[str, Any]]], source: str) -> None:
    """Every label of val and test must also be in train (stratification should ensure it)."""
    train_labels = {r["label"] for r in per_split["train"]}
    for name in ("val", "test"):
        unseen = sorted({r["label"] for r in per_split[name]} - train_labels)
        if unseen:
            raise DataError(f"{source}: label(s) {unseen} are in the {name} split but not in train; "
                            "add examples of them or leave them out with labels: [...]")


def split_sizes(per_split: dict[str, list[dict[str, Any]]], labels: list[str]) -> dict[str, Any]:
    """Size, share and examples per class of each split."""
    total = max(1, sum(len(rows) for rows in per_split.values()))
    out = {}
    for name, rows in per_split.items():
        counts = Counter(r["label"] for r in rows)
        out[name] = {"size": len(rows), "fraction": round(len(rows) / total, 4),
                     "classes": {label: counts[label] for label in labels if counts[label]}}
    return out


# --- terminal ----------------------------------------------------------------------
def audit_table(report: dict[str, Any]) -> Table:
    """The leakage findings and what the policy did with them."""
    policy = report["policy"]
    table = Table(title=f"Leakage audit (policy: {policy})", title_justify="left")
    table.add_column("finding")
    table.add_column("count", justify="right")
    table.add_column("action")
    exact, conflicts, near = report["exact_duplicates"], report["label_conflicts"], report["near_duplicates"]
    dropped = report["dropped"]
    act = policy == "drop"
    table.add_row("records read", str(report["records_read"]), "")
    if report["excluded_labels"]:
        table.add_row("records of unlisted labels", str(sum(report["excluded_labels"].values())),
                      "left out (labels: in data_config.yaml)")
    table.add_row(f"empty texts (min_chars: {report['empty_texts']['min_chars']})", str(report["empty_texts"]["count"]),
                  "dropped" if report["empty_texts"]["count"] else "")
    if report["decoding"]["rows"]:
        table.add_row("files not UTF-8 (decoded with U+FFFD)", str(len(report["decoding"]["rows"])), "kept")
    table.add_row("exact duplicates (extra rows / groups)", f"{exact['extra_rows']} / {exact['groups']}",
                  f"dropped {dropped.get('exact_duplicates', 0)}, kept one each" if act and exact["groups"] else "")
    table.add_row("conflicting labels (groups / rows)", f"{conflicts['groups']} / {conflicts['rows']}",
                  f"dropped {dropped.get('label_conflicts', 0)}" if act and conflicts["groups"] else "")
    table.add_row(f"near-duplicate pairs (cosine >= {near['threshold']:g})", str(near["pairs"]),
                  (f"{near['clusters']} clusters kept within one split"
                   + (f", dropped {dropped.get('near_duplicate_conflicts', 0)} with mixed labels"
                      if dropped.get("near_duplicate_conflicts") else "")) if act and near["pairs"] else "")
    cross = report.get("cross_split")
    if cross is not None:
        style = "" if cross["exact_duplicates"] + cross["near_duplicates"] == 0 else "[yellow]"
        table.add_row("cross-split exact duplicates", f"{style}{cross['exact_duplicates']}", "")
        table.add_row("cross-split near-duplicates", f"{style}{cross['near_duplicates']}", "")
    return table


def split_table(splits: dict[str, Any], labels: list[str]) -> Table:
    """Examples per class in each split."""
    table = Table(title="Splits", title_justify="left")
    table.add_column("split")
    for name in labels:
        table.add_column(name, justify="right")
    table.add_column("total", justify="right")
    for split, info in splits.items():
        table.add_row(split, *(str(info["classes"].get(name, 0)) for name in labels), str(info["size"]))
    return table


# --- the command ---------------------------------------------------------------------
def _json_bytes(obj: Any) -> bytes:
    """As :meth:`Storage.write_json` writes it."""
    return (json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n").encode("utf-8")


def _json_lines_array(rows: Sequence[Any]) -> bytes:
    """A JSON array with one element per line: the C encoder (``indent`` would take the slow Python one)."""
    body = ",\n".join(json.dumps(row, ensure_ascii=False) for row in rows)
    return f"[\n{body}\n]\n".encode("utf-8")


def _csv_bytes(records: Sequence[dict[str, Any]]) -> bytes:
    import pandas as pd

    frame = pd.DataFrame({"text": [r["text"] for r in records], "label": [r["label"] for r in records]},
                         columns=["text", "label"])
    return frame.to_csv(index=False).encode("utf-8")


def prepare(project: Project, input: str | None = None, force: bool = False) -> dict[str, Any]:
    """Read, audit, split and write the data of one project.

    Parameters
    ----------
    project : Project
        Root and configs (``data_config.yaml`` drives every step).
    input : str, optional
        File, folder or ``s3://`` URL; default: ``input`` in data_config.yaml,
        else the embedded BBC News 4-class data.
    force : bool, default=False
        Replace ``data/raw/raw_data.json`` when it differs from this input.

    Returns
    -------
    dict
        ``counts`` per split and class, ``audit`` finding counts, ``outputs``
        (keys written), ``manifest`` key, ``labels`` and ``seconds``.

    Raises
    ------
    DataError
        Any input problem, before anything is written.
    """
    started = time.perf_counter()
    cfg = project.configs.data
    storage = project.storage
    console = Console(stderr=True, soft_wrap=True)  # long paths stay on one line

    with stages(console) as task:
        raw = read_raw(project, input, progress=task("reading input"))
        state = raw_state(storage, raw.records)
        if state == "differs" and not force:
            raise DataError(f"{storage.url(layout.RAW_DATA)} exists and differs from this input ({raw.source}); "
                            "pass --force to replace it")
        cleaned = clean(raw, cfg)
        records = cleaned.records
        if not records:
            raise DataError(f"{raw.source}: no texts left after cleaning ({len(cleaned.empty_rows)} empty); "
                            "check text_field and min_chars in data_config.yaml")
        lsh = cfg.leakage.lsh
        found = leakage.run_audit(records, cfg.leakage.near_duplicate_threshold, stage=task,
                                  method=cfg.leakage.method, auto_lsh_from=cfg.leakage.auto_lsh_from,
                                  lsh=neardup.LshParams(lsh.num_perm, lsh.bands, lsh.max_df, lsh.seed),
                                  n_workers=neardup.workers(cfg.n_jobs))

    report: dict[str, Any] = {
        "input": raw.source, "format": raw.format, "input_sha256": raw.sha256,
        "records_read": len(raw.records), "records_audited": len(records),
        "policy": cfg.leakage.policy,
        "excluded_labels": cleaned.excluded_labels,
        "empty_texts": {"count": len(cleaned.empty_rows), "min_chars": cfg.min_chars, "action": cfg.empty_texts,
                        "examples": cleaned.empty_examples},
        "decoding": {"rows": [i + 1 for i in raw.replaced],
                     "note": ("not valid UTF-8; decoded with replacement characters (set encoding: in "
                              "data_config.yaml if the files share another encoding)") if raw.replaced else ""},
        **leakage.findings(found, records),
        "dropped": {},
    }
    exact, conflicts, near = report["exact_duplicates"], report["label_conflicts"], report["near_duplicates"]
    if cfg.leakage.policy == "fail" and (exact["groups"] or conflicts["groups"] or near["pairs"]):
        raise DataError(f"leakage audit failed (policy: fail) on {raw.source}: {exact['extra_rows']} exact duplicate "
                        f"row(s) in {exact['groups']} group(s){_eg(exact)}, {conflicts['groups']} conflicting-label "
                        f"group(s){_eg(conflicts)}, {near['pairs']} near-duplicate pair(s) with cosine >= "
                        f"{near['threshold']:g}{_eg(near)}; clean the data or set leakage.policy to drop or warn "
                        "in data_config.yaml")

    plan = leakage.plan_groups(found, records, cfg.leakage.policy)
    report["dropped"] = {reason: len(rows) for reason, rows in plan.dropped.items()}
    labels = label_order(cfg, records)
    counts: Counter[str] = Counter()
    for group, label in zip(plan.groups, plan.group_labels):
        counts[label] += len(group)
    check_classes(labels, counts, cfg, raw.source)

    split_of, per_split = assign_splits(plan, records, cfg.split)
    check_train_covers(per_split, raw.source)
    cross = leakage.cross_split(found, records, split_of)
    report["cross_split"] = cross
    if cfg.leakage.policy == "drop" and (cross["exact_duplicates"] or cross["near_duplicates"]):
        raise RuntimeError(f"leakage remains across splits after de-duplication: {cross}")
    report["near_duplicate_groups_kept_together"] = sum(1 for g in plan.groups if len(g) > 1)
    report["splits"] = split_sizes(per_split, labels)
    report["labels"] = labels

    # every check has passed: build the artifacts, then write them
    from multitype.data import plots
    from multitype.figures import save_figure

    with stages(console) as task, ticking(task("writing the data set")):
        files: dict[str, bytes] = {layout.processed_split(name, len(labels)): _csv_bytes(rows)
                                   for name, rows in per_split.items()}
        files[layout.LABELS] = (json.dumps({name: i for i, name in enumerate(labels)}, indent=2) + "\n").encode()
        words_per_label: dict[str, list[int]] = {label: [] for label in labels}
        for r in np.flatnonzero(split_of >= 0).tolist():
            words_per_label[records[r]["label"]].append(int(found.words[r]))
        figures = {
            layout.figure_data("class_balance"): plots.class_balance(
                {name: info["classes"] for name, info in report["splits"].items()}, labels),
            layout.figure_data("text_length"): plots.text_lengths(words_per_label),
        }
        report["seconds"] = round(time.perf_counter() - started, 3)

        # the data set is replaced as one (multitype.data.publish): readers see all old or all new files
        files[layout.AUDIT] = _json_bytes(report)
        if state != "same":
            files = {layout.RAW_DATA: _json_lines_array(raw.records), **files}
        publish(storage, files, project.run_id)
        for key, fig in figures.items():
            save_figure(storage, key, fig)
    outputs = [key for key in files if key != layout.RAW_DATA] + list(figures)
    summary = _summary(project, raw.source, state, labels, report, [layout.RAW_DATA, *outputs])
    summary["manifest"] = _write_manifest(project, raw, outputs, summary)
    summary["seconds"] = round(time.perf_counter() - started, 3)

    console.print(audit_table(report))
    console.print(split_table(report["splits"], labels))
    if cfg.leakage.policy == "warn" and (cross["exact_duplicates"] or cross["near_duplicates"]):
        console.print(f"[yellow]warning:[/] {cross['exact_duplicates']} exact and {cross['near_duplicates']} near "
                      "duplicate(s) sit in two splits (leakage.policy: warn); evaluation scores may be optimistic")
    _print_locations(console, storage, summary, [layout.processed_split(s, len(labels)) for s in SPLITS],
                     list(figures))
    return summary


def _eg(finding: dict[str, Any]) -> str:
    """`` (e.g. rows 3, 17)`` from a finding's first example, or nothing."""
    examples = finding.get("examples") or []
    return f" (e.g. rows {', '.join(map(str, examples[0]['rows']))})" if examples else ""


def _summary(project: Project, source: str, state: str, labels: list[str], report: dict[str, Any],
             outputs: list[str]) -> dict[str, Any]:
    exact, near, cross = report["exact_duplicates"], report["near_duplicates"], report["cross_split"]
    return {
        "run_id": project.run_id,
        "input": source,
        "raw_data": {"new": "written", "same": "unchanged", "differs": "replaced"}[state],
        "labels": labels,
        "num_classes": len(labels),
        "counts": {name: {"total": info["size"], "classes": info["classes"]}
                   for name, info in report["splits"].items()},
        "audit": {
            "records_read": report["records_read"],
            "empty_texts": report["empty_texts"]["count"],
            "exact_duplicate_groups": exact["groups"],
            "exact_duplicate_rows": exact["extra_rows"],
            "label_conflict_groups": report["label_conflicts"]["groups"],
            "near_duplicate_pairs": near["pairs"],
            "dropped": report["dropped"],
            "cross_split_exact": cross["exact_duplicates"],
            "cross_split_near": cross["near_duplicates"],
        },
        "outputs": outputs,
    }


def _print_locations(console: Console, storage: Storage, summary: dict[str, Any], splits: list[str],
                     figures: list[str]) -> None:
    where = {
        "raw data": f"{storage.url(layout.RAW_DATA)} ({summary['raw_data']})",
        "splits": ", ".join(storage.url(k) for k in splits),
        "labels": storage.url(layout.LABELS),
        "audit": storage.url(layout.AUDIT),
        "figures": ", ".join(storage.url(k) for k in figures),
        "manifest": storage.url(summary["manifest"]),
    }
    for what, location in where.items():  # unwrapped, so paths can be copied
        console.print(f"{what:<10} {location}", soft_wrap=True, markup=False, highlight=False)


def _write_manifest(project: Project, raw: sources.RawData, outputs: list[str], summary: dict[str, Any]) -> str:
    from multitype.manifest import write_manifest

    brief = {k: summary[k] for k in ("input", "raw_data", "labels", "counts", "audit")}
    return write_manifest(project, inputs=[layout.RAW_DATA], outputs=outputs,
                          external_inputs={raw.source: raw.sha256}, extra={"prepare": brief})
