"""The report's "Tuning" section: one block per ``results/tuning/<study>.json`` (local or SageMaker study).

Route through the file: :func:`load_study` reads the summary JSON and the per-trial CSV and checks both
against the tuning contract (column order, states, values inside the space), raising
:class:`StudyFileError` with one line naming the file and row; :func:`history_figure` draws the value
of every trial with the best-so-far line; :func:`param_importances` rebuilds an in-memory Optuna study
from the CSV's complete trials (``optuna.trial.create_trial`` with the distributions
:func:`multitype.tuning.space.suggest` samples from) and asks Optuna's fANOVA evaluator;
:func:`tuning_section` puts it together for :func:`multitype.report.build_report`. A study whose files
break the contract is skipped with one line in the report, never the whole report.
"""

from __future__ import annotations

import csv
import io
import json
import math
import posixpath
import re
from dataclasses import dataclass, field
from typing import Annotated, Any, Callable, Literal

from matplotlib.ticker import MaxNLocator
from pydantic import BaseModel, ConfigDict, Field, Strict, ValidationError

from multitype import layout
from multitype.errors import StorageError
from multitype.figures import plt, save_figure
from multitype.storage import Storage
from multitype.tuning.space import Choice, Distribution, IntRange, LogUniform, TuneConfig

STATES = ("COMPLETE", "PRUNED", "FAIL", "RUNNING")
COLUMNS = ("number", "slug", "state", "value", "seconds")
STUDY_NAME = re.compile(r"[A-Za-z0-9._-]+")
# fANOVA fits a random forest to (params -> value): below this many complete trials it says nothing
MIN_COMPLETE = 3
TOP_TRIALS = 5

Count = Annotated[int, Strict(), Field(ge=0)]


class StudyFileError(ValueError):
    """A tuning CSV/JSON that cannot be read or breaks the contract (the message names the file)."""


class _Counts(BaseModel):
    model_config = ConfigDict(extra="ignore")
    total: Count
    complete: Count
    pruned: Count
    failed: Count
    running: Count


class _Best(BaseModel):
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)
    number: Count
    slug: str
    value: float
    params: dict[str, Any]
    test_metrics: dict[str, Any] | None = None


class Summary(BaseModel):
    """``results/tuning/<study>.json`` (schema 1 of the tuning contract)."""

    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)
    schema_version: Literal[1]
    study: str
    kind: Literal["transformer", "baseline"]
    backend: Literal["local", "sagemaker"]
    model_name: str
    metric: str
    direction: Literal["maximize", "minimize"]
    space: dict[str, dict[str, Any]]
    fingerprint: str
    trials: _Counts
    best: _Best | None
    tuning_job: str | None = None
    intermediate: dict[str, list[list[float]]] = Field(default_factory=dict)


@dataclass
class Trial:
    """One CSV row: ``value`` and ``seconds`` may be None; ``params`` holds the values present."""

    number: int
    slug: str
    state: str
    value: float | None
    seconds: float | None
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class Study:
    summary: Summary
    space: dict[str, Distribution]
    trials: list[Trial]
    json_key: str
    csv_key: str

    @property
    def name(self) -> str:
        return self.summary.study

    def complete(self) -> list[Trial]:
        """Complete trials, best first."""
        done = [t for t in self.trials if t.state == "COMPLETE" and t.value is not None]
        return sorted(done, key=lambda t: t.value, reverse=self.summary.direction == "maximize")

    def counts(self) -> dict[str, int]:
        return {state: sum(t.state == state for t in self.trials) for state in STATES}


def history_name(study: str) -> str:
    """``figures/results/tuning_<study>_history.png``."""
    return f"tuning_{study}_history"


def importance_name(study: str) -> str:
    """``figures/results/tuning_<study>_importance.png``."""
    return f"tuning_{study}_importance"


# --- reading ----------------------------------------------------------------------------
def _read(storage: Storage, key: str) -> str:
    try:
        return storage.read_text(key)
    except StorageError:
        raise StudyFileError(f"{key}: not found") from None
    except UnicodeDecodeError:
        raise StudyFileError(f"{key}: not UTF-8 text") from None


def _summary(storage: Storage, key: str, study: str) -> Summary:
    try:
        raw = json.loads(_read(storage, key))
    except json.JSONDecodeError as exc:
        raise StudyFileError(f"{key}: not valid JSON (line {exc.lineno}: {exc.msg})") from None
    try:
        summary = Summary.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        more = f" (and {len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
        raise StudyFileError(f"{key}: '{where}' {err['msg']}{more}") from None
    if summary.study != study:
        raise StudyFileError(f"{key}: names study '{summary.study}', but the file is named for '{study}'")
    return summary


def _space(summary: Summary, key: str) -> dict[str, Distribution]:
    try:
        return TuneConfig.model_validate({"space": summary.space}).distributions()
    except ValidationError as exc:
        msg = "; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())
        raise StudyFileError(f"{key}: 'space' is not a search space ({msg})") from None


def _number(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{what} '{text}' is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"{what} '{text}' is not a finite number")
    return value


def _param(text: str, name: str, dist: Distribution) -> Any:
    """A ``params_<name>`` cell as the value the space allows (``ValueError`` when it is outside)."""
    what = f"params_{name}"
    if isinstance(dist, Choice):
        for choice in dist.choice:
            if isinstance(choice, bool):
                hit = text.lower() == str(choice).lower()
            elif isinstance(choice, (int, float)):
                try:
                    hit = float(text) == choice
                except ValueError:
                    hit = False
            elif isinstance(choice, list):
                try:
                    hit = json.loads(text) == choice
                except json.JSONDecodeError:
                    hit = False
            else:
                hit = text == choice
            if hit:
                return choice
        raise ValueError(f"{what} '{text}' is not one of the choices {json.dumps(dist.choice)}")
    value = _number(text, what)
    if isinstance(dist, IntRange):
        if not value.is_integer():  # pandas writes 3.0 in a column that also has empty cells
            raise ValueError(f"{what} '{text}' is not an integer")
        low, high = dist.int
        value = int(value)
    else:
        low, high = dist.loguniform if isinstance(dist, LogUniform) else dist.uniform
    slack = 1e-9 * max(abs(low), abs(high))
    if not low - slack <= value <= high + slack:
        raise ValueError(f"{what} {text} is outside the space [{low}, {high}]")
    return value


def _trials(text: str, key: str, space: dict[str, Distribution]) -> list[Trial]:
    names = sorted(space)
    expected = [*COLUMNS, *(f"params_{n}" for n in names)]
    rows = list(csv.reader(io.StringIO(text)))
    if not rows or rows[0] != expected:
        got = ",".join(rows[0]) if rows else "nothing"
        raise StudyFileError(f"{key}: header is '{got}', expected '{','.join(expected)}'")
    trials: list[Trial] = []
    for line, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        try:
            if len(row) != len(expected):
                raise ValueError(f"{len(row)} cells, expected {len(expected)}")
            number, slug, state, value, seconds, *cells = row
            if not number.isdigit():
                raise ValueError(f"number '{number}' is not a trial index (0, 1, ...)")
            if trials and int(number) <= trials[-1].number:
                raise ValueError(f"trial {number} after trial {trials[-1].number}: rows must be ordered by number")
            if state not in STATES:
                raise ValueError(f"state '{state}' is not one of {', '.join(STATES)}")
            if not slug:
                raise ValueError("slug is empty")
            params = {n: _param(c, n, space[n]) for n, c in zip(names, cells) if c != ""}
            trial = Trial(int(number), slug, state, _number(value, "value") if value else None,
                          _number(seconds, "seconds") if seconds else None, params)
            if state == "COMPLETE" and (trial.value is None or len(params) < len(names)):
                raise ValueError("a COMPLETE trial needs its value and every parameter")
        except ValueError as exc:
            raise StudyFileError(f"{key} line {line}: {exc}") from None
        trials.append(trial)
    return trials


def load_study(storage: Storage, study: str) -> Study:
    """Read and check ``results/tuning/<study>.json`` and ``.csv``.

    Raises
    ------
    StudyFileError
        Either file is missing, unreadable or breaks the tuning contract; the message names the file
        (and the line of the CSV).
    """
    json_key, csv_key = layout.tuning_summary(study), layout.tuning_csv(study)
    if not STUDY_NAME.fullmatch(study):
        raise StudyFileError(f"{json_key}: a study name takes only letters, digits, '.', '_' and '-'")
    summary = _summary(storage, json_key, study)
    space = _space(summary, json_key)
    trials = _trials(_read(storage, csv_key), csv_key, space)
    if summary.best is not None and summary.best.number not in {t.number for t in trials}:
        raise StudyFileError(f"{json_key}: best trial {summary.best.number} is not a row of {csv_key}")
    return Study(summary, space, trials, json_key, csv_key)


# --- importances ------------------------------------------------------------------------
def _distributions(space: dict[str, Distribution]) -> dict[str, Any]:
    """Optuna distributions of the space, as :func:`multitype.tuning.space.suggest` samples it."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    out: dict[str, Any] = {}
    for name, dist in space.items():
        if isinstance(dist, LogUniform):
            out[name] = FloatDistribution(*dist.loguniform, log=True)
        elif isinstance(dist, IntRange):
            out[name] = IntDistribution(*dist.int, log=dist.log)
        elif isinstance(dist, Choice):
            out[name] = CategoricalDistribution([json.dumps(c) if isinstance(c, list) else c for c in dist.choice])
        else:
            out[name] = FloatDistribution(*dist.uniform)
    return out


def param_importances(study: Study, seed: int) -> dict[str, float] | str:
    """fANOVA importance per parameter (summing to 1), or the reason there are none."""
    complete = study.complete()
    if len(complete) < MIN_COMPLETE:
        return (f"too few complete trials for importances ({len(complete)}; fANOVA needs at least "
                f"{MIN_COMPLETE})")
    import optuna
    from optuna.trial import TrialState, create_trial

    distributions = _distributions(study.space)
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "A new study created in memory" in the report's output
    try:
        rebuilt = optuna.create_study(direction=study.summary.direction)
        for trial in sorted(complete, key=lambda t: t.number):  # the order Optuna saw them in: the forest's input
            params = {n: json.dumps(v) if isinstance(v, list) else v for n, v in trial.params.items()}
            rebuilt.add_trial(create_trial(params=params, distributions=distributions, value=trial.value,
                                           state=TrialState.COMPLETE))
        scores = optuna.importance.get_param_importances(
            rebuilt, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=seed))
    except (ValueError, RuntimeError) as exc:
        return f"importances not computed: {str(exc).rstrip('.')}"
    finally:
        optuna.logging.set_verbosity(verbosity)
    if not scores:
        return "importances not computed: no parameter took more than one value"
    return {name: float(v) for name, v in scores.items()}


# --- figures ----------------------------------------------------------------------------
def history_figure(study: Study) -> "plt.Figure":
    """Val metric per trial (pruned: last reported value), the best-so-far line, failed trials on the axis."""
    summary = study.summary
    maximize = summary.direction == "maximize"
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    styles = {"COMPLETE": ("o", "tab:blue"), "PRUNED": ("x", "tab:orange"), "RUNNING": ("s", "tab:grey")}
    counts = study.counts()
    for state, (marker, colour) in styles.items():
        points = [(t.number, t.value) for t in study.trials if t.state == state and t.value is not None]
        if points:
            ax.scatter(*zip(*points), marker=marker, color=colour, zorder=3, label=f"{state.lower()} ({counts[state]})")
    best, xs, ys = None, [], []
    for trial in study.trials:
        if trial.state == "COMPLETE" and trial.value is not None:
            best = trial.value if best is None else (max if maximize else min)(best, trial.value)
        if best is not None:
            xs.append(trial.number)
            ys.append(best)
    if xs:
        ax.step(xs, ys, where="post", color="tab:green", label="best so far")
    failed = [t.number for t in study.trials if t.state == "FAIL"]
    if failed:  # no value to plot: a mark on the x axis
        ax.scatter(failed, [0.0] * len(failed), marker="v", color="tab:red", clip_on=False, zorder=4,
                   transform=ax.get_xaxis_transform(), label=f"failed ({len(failed)}, no value)")
    ax.set_xlabel("trial")
    ax.set_ylabel(f"val {summary.metric.replace('_', ' ')}")
    if study.trials:
        ax.set_xlim(-0.5, max(t.number for t in study.trials) + 0.5)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right" if maximize else "upper right")
    ax.set_title(f"{study.name}: optimisation history ({summary.direction} val {summary.metric}, "
                 f"{summary.backend})")
    return fig


def importance_figure(study: Study, scores: dict[str, float]) -> "plt.Figure":
    """Horizontal bars of the fANOVA importances, largest on top."""
    names = sorted(scores, key=scores.get)
    fig, ax = plt.subplots(figsize=(6.5, max(2.6, 0.5 * len(names) + 1.5)))
    bars = ax.barh(names, [scores[n] for n in names], color="tab:blue")
    ax.bar_label(bars, labels=[f"{scores[n]:.2f}" for n in names], padding=3, fontsize=8)
    ax.set_xlim(0, max(1.0, max(scores.values()) * 1.15))
    ax.set_xlabel("importance (fANOVA share of the variance of the val metric)")
    ax.set_title(f"{study.name}: parameter importance ({len(study.complete())} complete trials)")
    ax.grid(axis="x", alpha=0.3)
    return fig


# --- markdown ---------------------------------------------------------------------------
def _value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return value if isinstance(value, str) else json.dumps(value)


def _params(params: dict[str, Any]) -> str:
    return ", ".join(f"`{name}` {_value(v)}" for name, v in sorted(params.items()))


def _test_metrics(metrics: dict[str, Any] | None) -> str:
    if not metrics:
        return "not re-evaluated on test yet"
    shown = [f"{name} {v:.4f}" for name, v in metrics.items()
             if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return ", ".join(shown) or "no numeric metrics"


def _study_lines(study: Study, figures: dict[str, str], importance: dict[str, float] | str,
                 link: Callable[[str], str]) -> list[str]:
    summary, counts = study.summary, study.counts()
    where = (f"by SageMaker tuning job `{summary.tuning_job}`" if summary.tuning_job else
             "on SageMaker" if summary.backend == "sagemaker" else "locally with Optuna")
    lines = [f"### Study `{study.name}`", "",
             f"{summary.kind.capitalize()} `{summary.model_name}`, tuned {where}; val {summary.metric} "
             f"({summary.direction}). Trials: {len(study.trials)} in all, {counts['COMPLETE']} complete, "
             f"{counts['PRUNED']} pruned, {counts['FAIL']} failed, {counts['RUNNING']} running.", ""]
    if summary.trials.total != len(study.trials):
        lines += [f"The summary counts {summary.trials.total} trial(s), the CSV has {len(study.trials)} rows: "
                  "the study was written while it ran; the counts above are the CSV's.", ""]
    best = summary.best
    if best is None:
        lines += ["No best trial yet (no complete trial).", ""]
    else:
        lines += [f"**Best trial: {best.number}** (`{best.slug}`), val {summary.metric} {best.value:.4f}; "
                  f"parameters: {_params(best.params)}.", "",
                  "Test metrics of the best trial (its one re-evaluation on test): "
                  f"{_test_metrics(best.test_metrics)}.",
                  ""]
    top = study.complete()[:TOP_TRIALS]
    if top:
        names = sorted(study.space)
        header = ["rank", "trial", "slug", f"val {summary.metric}", "seconds", *names]
        lines += [f"Top {len(top)} complete trial(s):", "",
                  "| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        for rank, t in enumerate(top, start=1):
            cells = [str(rank), str(t.number), f"`{t.slug}`", f"{t.value:.4f}",
                     "-" if t.seconds is None else f"{t.seconds:.0f}", *(_value(t.params.get(n, "-")) for n in names)]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    if "history" in figures:
        lines += [f"![Optimisation history {study.name}]({link(figures['history'])})", ""]
    if isinstance(importance, str):
        lines += [f"Parameter importance: {importance}.", ""]
    else:
        lines += ["Parameter importance (Optuna's fANOVA on the complete trials; shares of the variance of the "
                  f"val metric, seeded): {', '.join(f'`{n}` {v:.3f}' for n, v in importance.items())}.", "",
                  f"![Parameter importance {study.name}]({link(figures['importance'])})", ""]
    lines += [f"Files: [{study.csv_key}]({link(study.csv_key)}), [{study.json_key}]({link(study.json_key)}).", ""]
    return lines


@dataclass
class TuningSection:
    """What :func:`tuning_section` gives the report: its lines, the files it read and those it wrote."""

    lines: list[str]
    inputs: list[str]
    outputs: list[str]
    problems: list[str]


def tuning_section(storage: Storage, seed: int, link: Callable[[str], str]) -> TuningSection:
    """The "Tuning" section for every ``results/tuning/*.json`` (empty lines when there is none).

    Parameters
    ----------
    storage : Storage
        The root.
    seed : int
        Seeds fANOVA's forest, so the importances are the same on every run.
    link : callable
        Key -> the link the report uses (relative to the report's folder).
    """
    studies = sorted(posixpath.splitext(n)[0] for n in storage.listdir(layout.TUNING)
                     if n.endswith(".json") and not n.startswith("."))
    section = TuningSection([], [], [], [])
    if not studies:
        return section
    section.lines += ["## Tuning", "",
                      "One block per study under results/tuning/ (`multitype tune` locally, `multitype sagemaker "
                      "tune` in the cloud): trials are chosen on the val split only; the best trial alone is "
                      "evaluated on test.", ""]
    for name in studies:
        try:
            study = load_study(storage, name)
        except StudyFileError as exc:
            problem = f"{exc}; study skipped"
            section.problems.append(problem)
            section.lines += [f"- {problem}.", ""]
            continue
        figures: dict[str, str] = {}
        if study.trials:
            figures["history"] = save_figure(storage, layout.figure_results(history_name(name)),
                                             history_figure(study))
        importance = param_importances(study, seed)
        if not isinstance(importance, str):
            figures["importance"] = save_figure(storage, layout.figure_results(importance_name(name)),
                                                importance_figure(study, importance))
        section.lines += _study_lines(study, figures, importance, link)
        section.inputs += [study.json_key, study.csv_key]
        section.outputs += list(figures.values())
    return section
