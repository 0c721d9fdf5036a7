"""Time and price of fine-tuning a model on an instance type, and the budget guard.

The route through :func:`estimate`:

1. the hyperparameters in force (``models_transformer.yaml``: epochs,
   max_length, precision) and the processed splits' sizes and text lengths
   (tokens per text ~ characters / 4, capped at max_length);
2. the speed, in this order:
   a. *measured*: a ``train_samples_per_s`` this project recorded for the
      model on the same GPU model, GPU count and max_length
      (:mod:`multitype.cloud.throughput`);
   b. *scaled*: a speed measured on other hardware or settings, turned into
      the utilisation it reached (its FLOPs/s over that GPU's peak) and applied
      to this instance's peak and these settings;
   c. *estimated*: FLOPs per sample (:mod:`multitype.cloud.flops`) at the
      catalog's stated utilisation (35%) of the instance's peak;
3. samples: the train split x epochs, plus the evaluation passes (val after
   each epoch and at the end, test once) at a third of a training sample;
4. plus the catalog's start-up minutes per job (image and data download,
   boot, install, upload: billed, but outside the training loop; SageMaker
   and EC2 have their own figure), so a small job is not priced at "0 s";
5. hours x the hourly price (:meth:`~multitype.cloud.prices.PriceCatalog.quote`).

:func:`check_budget` refuses an estimate over the budget unless forced; the
launchers print the estimate first (:func:`describe`).
"""

from __future__ import annotations

import csv
import io
import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from multitype import layout
from multitype.cloud import flops as fl
from multitype.cloud.prices import InstanceSpec, PriceCatalog, load_catalog
from multitype.cloud.throughput import Measurement, measurements
from multitype.errors import DataError, ModelError, UserError
from multitype.project import Project

CHARS_PER_TOKEN = 4.0  # English text with BERT/GPT-style subword vocabularies (OpenAI's tokenizer docs: ~4 chars)


class OverBudget(UserError):
    """An estimate above the budget, without ``--force`` (exit 2)."""


@dataclass(frozen=True)
class Estimate:
    """The time and price of one training run.

    Attributes
    ----------
    hours, usd : float
        Billed wall time (training, evaluation and ``startup_hours``) and its price.
    measured : bool
        True when the speed is one this project measured on this hardware and settings.
    basis : str
        How the speed was found (measured / scaled from ... / FLOPs at ...).
    kind : str
        ``measured``, ``scaled`` or ``estimated``.
    usd_hour, price_basis : float, str
        The hourly price and where it came from (a source, or a spot estimate).
    samples_per_s : float
        Training samples per second on the whole instance.
    startup_hours : float
        The part of ``hours`` outside training (the catalog's start-up minutes).
    """

    model: str
    instance_type: str
    spot: bool
    hours: float
    usd: float
    measured: bool
    basis: str
    kind: str = "estimated"
    usd_hour: float = 0.0
    price_basis: str = ""
    samples_per_s: float = 0.0
    epochs: float = 0.0
    catalog_date: str = ""
    startup_hours: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Workload:
    """The processed data as training sees it: split sizes and characters per text."""

    train_chars: tuple[int, ...]
    val: int
    test: int

    @property
    def train(self) -> int:
        return len(self.train_chars)

    def tokens(self, max_length: int) -> list[int]:
        return [min(max_length, max(1, math.ceil(c / CHARS_PER_TOKEN))) for c in self.train_chars]

    def flops_per_sample(self, shape: fl.ModelShape, max_length: int) -> float:
        """Mean training FLOPs of a train-split sample (each text at its own, capped length)."""
        tokens = self.tokens(max_length)
        return sum(fl.train_flops(shape, t) for t in tokens) / max(len(tokens), 1)

    def sample_count(self, epochs: float) -> float:
        """Training samples plus evaluation samples counted at a third (forward only)."""
        evals = self.val * (math.ceil(epochs) + 1) + self.test
        return self.train * epochs + evals / 3.0


def workload(project: Project) -> Workload:
    """Sizes and text lengths of ``data/processed`` (the train split's texts, the val and test counts).

    Raises
    ------
    DataError
        No processed data (run ``multitype prepare``).
    """
    storage = project.storage
    if not storage.exists(layout.LABELS):
        raise DataError(f"no processed data: {storage.url(layout.LABELS)} is missing; run 'multitype prepare' "
                        "first (the estimate needs the split sizes)")
    count = len(storage.read_json(layout.LABELS))
    sizes: dict[str, list[int]] = {}
    for split in layout.SPLITS:
        key = layout.processed_split(split, count)
        if not storage.exists(key):
            raise DataError(f"no processed data: {storage.url(key)} is missing; run 'multitype prepare' first")
        reader = csv.DictReader(io.StringIO(storage.read_text(key)))
        sizes[split] = [len(row.get("text") or "") for row in reader]
    return Workload(tuple(sizes["train"]), len(sizes["val"]), len(sizes["test"]))


def _half(spec: InstanceSpec, precision: str) -> bool:
    """Whether training runs on 16-bit tensor cores (``auto`` does on GPUs, never on CPUs)."""
    return spec.gpus > 0 and precision != "fp32"


def _peak(spec: InstanceSpec, precision: str, gpus: int | None = None) -> float:
    total = spec.peak_tflops if _half(spec, precision) else spec.peak_fp32_tflops
    if spec.gpus and gpus is not None:
        total = total / spec.gpus * gpus
    return total


def _gpu_peak(catalog: PriceCatalog, m: Measurement) -> float:
    gpu = catalog.gpus[m.gpu_model]
    half = m.precision not in ("fp32",)
    return float(gpu["tensor_tflops"] if half else gpu["fp32_tflops"]) * m.gpus


def _speed(catalog: PriceCatalog, spec: InstanceSpec, name: str, shape: fl.ModelShape, work: Workload,
           max_length: int, precision: str, gpus: int, found: list[Measurement]) -> tuple[float, str, str]:
    """(samples/s, kind, basis) on ``spec`` with ``gpus`` GPUs."""
    per_sample = work.flops_per_sample(shape, max_length)
    peak = _peak(spec, precision, gpus if spec.gpus else None)
    mine = [m for m in found if m.model == name]
    for m in mine:
        if m.gpu_model == spec.gpu_model and m.gpus == gpus and m.max_length == max_length:
            return m.samples_per_s, "measured", f"measured {m.samples_per_s:.4g} samples/s on {m.gpus} x " \
                                                f"{m.gpu_model} ({m.where})"
    if mine:
        # the measurement closest to this case: same GPU model first, then the same max_length
        m = sorted(mine, key=lambda m: (m.gpu_model != spec.gpu_model, m.max_length != max_length))[0]
        theirs = work.flops_per_sample(shape, m.max_length or max_length)
        reached = m.samples_per_s * theirs / (_gpu_peak(catalog, m) * 1e12)
        speed = reached * peak * 1e12 / per_sample
        return speed, "scaled", (f"scaled from {m.gpus} x {m.gpu_model} ({m.samples_per_s:.4g} samples/s at "
                                 f"max_length {m.max_length}, {reached:.0%} of its peak) to {peak:.4g} TFLOPS peak")
    speed = catalog.utilisation * peak * 1e12 / per_sample
    return speed, "estimated", (f"FLOPs: {per_sample / 1e9:.4g} GFLOPs/sample at {catalog.utilisation:.0%} of "
                                f"{peak:.4g} TFLOPS peak")


def estimate(project: Project, model_name: str, instance_type: str, *, spot: bool, epochs: float | None = None,
             catalog: PriceCatalog | None = None, gpus: int | None = None, work: Workload | None = None,
             found: list[Measurement] | None = None) -> Estimate:
    """Hours and USD to fine-tune ``model_name`` on one ``instance_type`` (see the module docstring).

    Parameters
    ----------
    project : Project
        The opened project: configs (hyperparameters) and root (data, measured speeds).
    model_name : str
        ``minilm``, a local folder or a hub id (its shape from config.json or the built-in table).
    instance_type : str
        A catalog name, ``ml.g5.xlarge`` or ``g5.xlarge``.
    spot : bool
        Price at spot (the catalog's spot price, else its stated spot ratio).
    epochs : float, optional
        Default: ``num_epochs`` of the model in ``models_transformer.yaml``.
    catalog : PriceCatalog, optional
        Default :func:`~multitype.cloud.prices.load_catalog`.
    gpus : int, optional
        GPUs the run uses (default all of the instance; ``train parallel`` gives each model one).
    work, found : optional
        The :func:`workload` and :func:`~multitype.cloud.throughput.measurements`, when the caller has them.

    Raises
    ------
    AwsError
        An instance type the catalog lacks (names the nearest).
    DataError, ModelError
        No processed data; a model whose shape is unknown offline.
    """
    catalog = catalog or load_catalog()
    spec = catalog.require(instance_type)
    params = project.configs.transformer.params_for(model_name)
    epochs = float(epochs if epochs is not None else params.num_epochs)
    if epochs <= 0:
        raise UserError(f"--epochs must be above 0, got {epochs:g}")
    shape = fl.model_shape(model_name)
    work = work or workload(project)
    if found is None:
        found = measurements(project.storage, list(catalog.gpus))
    used = (gpus or spec.gpus) if spec.gpus else 0
    speed, kind, basis = _speed(catalog, spec, model_name, shape, work, params.max_length, params.precision,
                                used, found)
    startup = catalog.startup_hours(instance_type)
    hours = work.sample_count(epochs) / speed / 3600.0 + startup
    quote = catalog.quote(instance_type, spot)
    return Estimate(model_name, instance_type, spot, hours, hours * quote.usd_hour, kind == "measured", basis,
                    kind, quote.usd_hour, quote.basis, speed, epochs, catalog.date, startup)


def launch_estimate(project: Project, task: str, models: list[str], instance_type: str, *, spot: bool,
                    count: int = 1, epochs: float | None = None, max_run: int | None = None,
                    catalog: PriceCatalog | None = None) -> Estimate:
    """The estimate of one launched job: one model, ``train parallel`` (one GPU each) or the baselines.

    The TF-IDF baselines have no speed model: their bound is ``max_run`` hours
    (the job is stopped there), said as such in ``basis``.
    """
    catalog = catalog or load_catalog()
    quote = catalog.quote(instance_type, spot)
    label = ",".join(models) or "baselines"

    def bound(why: str) -> Estimate:
        hours = (max_run or 0) / 3600.0
        return Estimate(label, instance_type, spot, hours, hours * quote.usd_hour * count, False,
                        f"upper bound: max_run {hours:g} h ({why})", "bound", quote.usd_hour, quote.basis, 0.0,
                        0.0, catalog.date)

    if task == "baseline":
        return bound("no speed model for the TF-IDF baselines")
    try:
        return _model_estimate(project, task, models, instance_type, spot=spot, count=count, epochs=epochs,
                               catalog=catalog)
    except ModelError as exc:  # a model whose shape is unknown offline must not block a launch
        return bound(f"no estimate: {exc}")


def _model_estimate(project: Project, task: str, models: list[str], instance_type: str, *, spot: bool,
                    count: int, epochs: float | None, catalog: PriceCatalog) -> Estimate:
    quote = catalog.quote(instance_type, spot)
    label = ",".join(models)
    work = workload(project)
    found = measurements(project.storage, list(catalog.gpus))
    if task == "parallel":
        each = [estimate(project, m, instance_type, spot=spot, epochs=epochs, catalog=catalog, gpus=1, work=work,
                         found=found) for m in models]
        hours = max(e.hours for e in each)
        kinds = sorted({e.kind for e in each})
        return Estimate(label, instance_type, spot, hours, hours * quote.usd_hour, all(e.measured for e in each),
                        "; ".join(f"{e.model}: {e.basis}" for e in each), "/".join(kinds), quote.usd_hour,
                        quote.basis, sum(e.samples_per_s for e in each), each[0].epochs, catalog.date,
                        each[0].startup_hours)
    one = estimate(project, models[0], instance_type, spot=spot, epochs=epochs, catalog=catalog, work=work,
                   found=found)
    if count > 1:  # data-parallel over instances: the same work in 1/count of the time, on count instances
        note = f"; {count} instances, linear scaling assumed"
        hours = (one.hours - one.startup_hours) / count + one.startup_hours  # every instance starts up
        return Estimate(one.model, one.instance_type, spot, hours, hours * one.usd_hour * count, one.measured,
                        one.basis + note, one.kind, one.usd_hour, one.price_basis, one.samples_per_s * count,
                        one.epochs, one.catalog_date, one.startup_hours)
    return one


def describe(est: Estimate) -> str:
    """One line for the launchers: ``estimate: 0.42 h, $0.13 (ml.g5.xlarge spot ...; speed estimated: ...)``."""
    startup = f" incl. {est.startup_hours * 60:.0f} min start-up" if est.startup_hours else ""
    return (f"estimate: {duration(est.hours)}{startup}, {money(est.usd)} ({est.instance_type}, {est.price_basis} "
            f"${est.usd_hour:.4g}/h; speed {est.kind}: {est.basis}; catalog {est.catalog_date})")


def duration(hours: float) -> str:
    """``42 s``, ``12.5 min``, ``3.20 h``."""
    if 0 < hours < 0.5 / 3600:
        return "<1 s"
    if hours < 1 / 60:
        return f"{hours * 3600:.0f} s"
    if hours < 1:
        return f"{hours * 60:.1f} min"
    return f"{hours:.2f} h"


def money(usd: float) -> str:
    """``$12.34``; small sums keep four decimals (``$0.0012``), smaller ones say so (``<$0.0001``)."""
    if 0 < usd < 0.00005:
        return "<$0.0001"
    return f"${usd:.2f}" if usd >= 0.01 or usd == 0 else f"${usd:.4f}"


def check_unpriced(instance_type: str, budget_usd: float | None, *, force: bool, catalog: PriceCatalog,
                   echo: Any) -> None:
    """For an instance type without a catalog price: say so; refuse when a budget is set, unless ``force``."""
    note = f"no estimate: {instance_type} has no price in the catalog ({catalog.date})"
    if budget_usd is not None and budget_usd <= 0:
        raise UserError(f"--budget must be above 0 USD, got {budget_usd:g}")
    if budget_usd is not None and not force:
        raise OverBudget(f"{note}, so the budget of {money(budget_usd)} cannot be checked; pass --force to start "
                         "it anyway, or choose a type the catalog prices ('multitype cost estimate' lists them)")
    echo(note)


def check_budget(estimate_usd: float, budget_usd: float | None, *, force: bool, what: str) -> None:
    """Refuse ``what`` when its estimate is above the budget, unless ``force``.

    Parameters
    ----------
    estimate_usd : float
        The estimated price.
    budget_usd : float or None
        ``--budget`` or ``aws.budget_usd``; None: no budget, nothing to check.
    force : bool
        ``--force``: start it anyway.
    what : str
        What would be started, for the message (``"the training job on ml.g5.xlarge"``).

    Raises
    ------
    UserError
        A budget of 0 or below.
    OverBudget
        The estimate is above the budget and ``force`` is False (exit 2).
    """
    if budget_usd is None:
        return
    if budget_usd <= 0:
        raise UserError(f"--budget must be above 0 USD, got {budget_usd:g}")
    if estimate_usd > budget_usd and not force:
        raise OverBudget(f"{what} is estimated at {money(estimate_usd)}, over the budget of {money(budget_usd)} "
                         "(--budget or aws.budget_usd in project.yaml), so it was not started; pass --force to "
                         "start it anyway, or choose a cheaper --instance-type, --spot or fewer epochs")


_DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)d)?(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?$")


def parse_duration(text: str, option: str = "--deadline") -> float:
    """Hours in ``"4h"``, ``"90m"``, ``"1h30m"``, ``"2d"``, ``"3600s"`` or a bare number of hours.

    Raises
    ------
    UserError
        Not a duration, or not above zero.
    """
    value = text.strip().lower().replace(" ", "")
    try:
        hours = float(value)
    except ValueError:
        match = _DURATION.match(value)
        if not value or match is None or not any(match.groups()):
            raise UserError(f"{option} {text!r} is not a duration; write e.g. 4h, 90m, 1h30m, 2d") from None
        d, h, m, s = (float(g) if g else 0.0 for g in match.groups())
        hours = d * 24 + h + m / 60 + s / 3600
    if hours <= 0:
        raise UserError(f"{option} {text!r} must be above zero")
    return hours


@dataclass
class Plan:
    """Every (model, instance type) estimate, cheapest first, and the choice per model."""

    rows: list[Estimate]
    chosen: dict[str, Estimate]
    deadline_hours: float | None
    catalog: PriceCatalog
    missed: dict[str, Estimate] = field(default_factory=dict)  # model -> the fastest, when none meets the deadline

    @property
    def total_usd(self) -> float:
        return sum(e.usd for e in self.chosen.values())

    @property
    def total_hours(self) -> float:
        return sum(e.hours for e in self.chosen.values())

    def check(self, budget_usd: float | None) -> None:
        """Raise when a model meets no deadline (naming the closest) or the chosen plan is over the budget."""
        for model, best in self.missed.items():
            raise UserError(f"no instance type finishes {model} within {duration(self.deadline_hours or 0)}; the "
                            f"closest is {best.instance_type} at {duration(best.hours)} ({money(best.usd)}); allow more time with "
                            "--deadline, or add faster --instance-types")
        if budget_usd is not None and self.total_usd > budget_usd:
            what = ", ".join(f"{m} on {e.instance_type}" for m, e in self.chosen.items())
            raise OverBudget(f"the cheapest plan ({what}) is estimated at {money(self.total_usd)}, over the budget "
                             f"of {money(budget_usd)}; raise --budget, use --spot, or train fewer --epochs")


def plan(project: Project, models: list[str], instance_types: list[str], *, spot: bool,
         epochs: float | None = None, deadline_hours: float | None = None, budget_usd: float | None = None,
         catalog: PriceCatalog | None = None) -> Plan:
    """Estimates for every model on every instance type; per model the cheapest that meets the deadline.

    Raises
    ------
    AwsError
        An instance type the catalog lacks (checked before any estimate).
    UserError
        A budget of 0 or below. (A missed deadline or budget is raised by
        :meth:`Plan.check`, so the table can be shown first.)
    """
    catalog = catalog or load_catalog()
    for name in instance_types:
        catalog.require(name)
    if budget_usd is not None and budget_usd <= 0:
        raise UserError(f"--budget must be above 0 USD, got {budget_usd:g}")
    work = workload(project)
    found = measurements(project.storage, list(catalog.gpus))
    rows = [estimate(project, m, t, spot=spot, epochs=epochs, catalog=catalog, work=work, found=found)
            for m in models for t in instance_types]
    rows.sort(key=lambda e: (e.usd, e.hours))
    chosen: dict[str, Estimate] = {}
    missed: dict[str, Estimate] = {}
    for model in models:
        mine = [e for e in rows if e.model == model]
        fits = [e for e in mine if deadline_hours is None or e.hours <= deadline_hours]
        if fits:
            chosen[model] = fits[0]
        else:
            missed[model] = min(mine, key=lambda e: e.hours)
    return Plan(rows, chosen, deadline_hours, catalog, missed)
