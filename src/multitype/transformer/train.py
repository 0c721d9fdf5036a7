"""Fine-tune one transformer: our own loop, readable top to bottom.

``train_transformer`` runs five steps, each a function below, in this order:

1. :func:`_setup`: check options -> model config (no weights yet) -> model
   identity -> resume point (its params and seed win) -> data (tokenised once)
   -> model, optimizer, scheduler (restored from the resume point) -> checkpointer.
2. :func:`_train_epoch`: the optimizer steps of one epoch (accumulate, clip,
   step), a step checkpoint every ``checkpoint.every_steps`` steps or
   ``every_minutes`` minutes, and on SIGTERM a last one before stopping.
3. :func:`_evaluate_epoch`: validation metrics, the best so far, early stopping.
4. :func:`_save`: a checkpoint (``-step<N>``, ``-epoch<k>``, ``-best``) handed
   to the publisher (see :mod:`multitype.transformer.checkpoint`).
5. :func:`_finish`: the best checkpoint on val and test -> final model,
   metrics, summary, manifest.

Everything one run holds lives in a :class:`Run`; where it writes is
``project.outputs`` (checkpoint folder, final model folder, results root).

Exactness: the batch order is a function of (seed, epoch), checkpoints are
taken only at optimizer-step boundaries and hold every state (weights,
optimizer, scheduler, scaler, RNGs, position), so on CPU in fp32 a run killed at
any point and resumed ends with the same weights as one that never stopped, up
to float rounding (the tests allow 1e-6 per weight).
"""

from __future__ import annotations

import contextlib
import math
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from multitype import interrupts, layout
from multitype.config import TransformerParams
from multitype.data.dataset import load_labels, load_split
from multitype.errors import DataError, Interrupted, ModelError, StorageError
from multitype.evaluate import classification_metrics, headline_uncertainty, metrics_record, predictions_block
from multitype.experiments import tracking
from multitype.project import Project
from multitype.transformer import artifacts, attention, batches, checkpoint, compiling, launch, models, runtime
from multitype.transformer.logs import log, metric, quiet, warn
from multitype.uploader import FolderPublisher

# params that may change between a run and its resume; any other difference is overruled by the checkpoint
_FREE_ON_RESUME = {"precision", "eval_batch_size", "checkpoint", "gradient_checkpointing", "compile"}
_LOG_EVERY_STEPS = 10
_KEEP_STEP_CHECKPOINTS = 2


EpochHook = Callable[[int, "float | None"], bool]


@dataclass
class TrainState:
    """Where the run is; saved in every checkpoint's ``state.json``."""

    epoch: int = 0                 # epoch in progress (0-based)
    iteration: int = 0             # next batch of that epoch
    global_step: int = 0           # optimizer steps done
    samples_seen: int = 0
    train_seconds: float = 0.0     # wall time in the loop, summed over resumes
    best_value: float | None = None
    best_epoch: int | None = None
    best_step: int | None = None
    epochs_without_improvement: int = 0
    finished: bool = False
    samples_per_s: float = 0.0     # training throughput of the latest process that trained
    epoch_loss_sum: float = 0.0    # training loss summed over this epoch's examples so far
    epoch_examples: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    lineage: str = ""              # run id of the run that started from scratch
    tracking_run_id: str = ""      # the MLflow run this training run logs to (a resume continues it)
    pruned: bool = False           # stopped by the on_epoch hook (a tuning trial's pruner)

    def train_loss(self) -> float:
        return self.epoch_loss_sum / max(self.epoch_examples, 1)


@dataclass
class Data:
    labels: list[str]
    train: batches.TokenizedSplit
    val: batches.TokenizedSplit
    test: batches.TokenizedSplit
    keys: list[str]
    test_texts: list[str] = field(default_factory=list)  # for the per-text predictions in the metrics JSON


@dataclass
class Meter:
    """Wall-clock bookkeeping: training time summed over resumes, samples/s without eval and checkpoints."""

    loop_started: float = field(default_factory=time.perf_counter)
    run_started: float = field(default_factory=time.perf_counter)
    overhead: float = 0.0          # seconds spent writing checkpoints and evaluating
    compute_samples: int = 0       # samples trained on by this process
    last_save: float = field(default_factory=time.monotonic)
    last_postfix: float = field(default_factory=time.monotonic)
    last_line: float = field(default_factory=time.monotonic)

    def samples_per_s(self) -> float:
        return self.compute_samples / max(time.perf_counter() - self.run_started - self.overhead, 1e-9)

    def lap(self, state: TrainState) -> None:
        """Add the loop time since the last lap to ``state.train_seconds``."""
        now = time.perf_counter()
        state.train_seconds += now - self.loop_started
        self.loop_started = now


@dataclass
class Run:
    """One training run: what :func:`_setup` builds and the other steps advance."""

    project: Project
    params: TransformerParams
    rt: runtime.Runtime
    source: models.ModelSource
    identity: models.ModelIdentity
    label_names: list[str]
    seed: int
    precision: str
    compiled: bool
    tokenizer: Any
    data: Data
    sampler: batches.LengthGroupedBatches
    steps_per_epoch: int
    total_steps: int
    num_epochs: int
    class_weights: np.ndarray
    model: torch.nn.Module
    ddp: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: Any
    state: TrainState
    publisher: FolderPublisher | None  # main process only
    checkpoints: checkpoint.Checkpointer | None
    say: Callable[[str], None]
    caution: Callable[[str], None]
    pad_id: int = 0
    multiple_of: int = 1
    meter: Meter = field(default_factory=Meter)
    loss_acc: torch.Tensor | None = None  # the epoch's loss, summed on the device (reading it is a GPU sync)
    bar: Any = None
    interactive: bool = False
    throughput: float = 0.0
    tracker: tracking.Tracker = field(default_factory=tracking.Tracker)
    slug_override: str | None = None
    # a tuning trial: called with (epoch, val metric) after each epoch, True stops the run as pruned
    on_epoch: EpochHook | None = None
    evaluate_test: bool = True
    record_extra: dict[str, Any] = field(default_factory=dict)

    @property
    def slug(self) -> str:
        return self.slug_override or self.source.slug

    def read_loss(self) -> float:
        assert self.loss_acc is not None
        self.state.epoch_loss_sum += float(self.loss_acc)
        self.loss_acc.zero_()
        return self.state.train_loss()


def train_transformer(project: Project, params: TransformerParams, resume: str = "auto",
                      gpus: str | None = None, *, slug: str | None = None, on_epoch: EpochHook | None = None,
                      evaluate_test: bool = True, record_extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Fine-tune ``params.model_name`` on the processed splits and return the metrics record.

    Parameters
    ----------
    project : Project
        Root, configs, run id and output places (``project.outputs``).
    params : TransformerParams
        Resolved hyperparameters (``configs.transformer.params_for(...)``).
    resume : {"auto", "never"}, default="auto"
        ``auto`` continues from the newest valid checkpoint of this model;
        ``never`` starts fresh (old checkpoints go once new ones replace them).
    gpus : str, optional
        ``"all"`` or a count: with more than one GPU, re-launch under torchrun
        (DDP). None: one process.
    slug : str, optional
        The artifact name instead of the model's (a tuning trial's ``<model>-t<k>``).
    on_epoch : callable, optional
        ``on_epoch(epoch, val_metric)`` after each epoch's validation (one process); returning True
        ends training there as *pruned*: the best checkpoint so far is evaluated and saved as usual,
        and the metrics and manifest say ``"pruned": true``.
    evaluate_test : bool, default=True
        False: the final evaluation reads val only (tuning trials never touch test).
    record_extra : dict, optional
        More fields for the metrics record and the manifest (a tuning trial's ``tuning``).

    Returns
    -------
    dict
        The ``results/transformer/<slug>_metrics.json`` document.

    Raises
    ------
    ModelError
        Unknown model, max_length beyond the model's limit, a checkpoint of
        another model or other labels, a damaged ``-best`` checkpoint at the
        end, CUDA out of memory.
    Interrupted
        SIGTERM/SIGINT: a ``-step<N>`` checkpoint was saved first.
    """
    if resume not in ("auto", "never"):
        raise ModelError(f"--resume must be 'auto' or 'never', got {resume!r}")
    if gpus is not None and (slug or on_epoch or record_extra or not evaluate_test):
        raise ModelError("a tuning trial trains in one process; --gpus is not available here")
    if gpus is not None:
        relaunched = launch.maybe_relaunch(project, params, resume, gpus)
        if relaunched is not None:
            return relaunched
    rt = runtime.setup_runtime()
    interrupts.clear()
    try:
        with interrupts.stop_on_signals():  # a SIGTERM while loading is answered at the first step
            run = _setup(project, params, resume, rt, slug)
            run.on_epoch, run.evaluate_test, run.record_extra = on_epoch, evaluate_test, dict(record_extra or {})
            try:
                _start_loop(run)
                try:
                    while not run.state.finished:
                        _train_epoch(run)
                        _evaluate_epoch(run)
                    if rt.device.type == "cuda":
                        torch.cuda.synchronize(rt.device)
                    run.throughput = (run.meter.samples_per_s() if run.meter.compute_samples
                                      else run.state.samples_per_s)
                except torch.cuda.OutOfMemoryError:
                    raise ModelError(f"CUDA out of memory with --batch-size {run.params.batch_size} and --max-length "
                                     f"{run.params.max_length}; lower one of them, or set gradient_checkpointing: "
                                     f"true in models_transformer.yaml") from None
                finally:
                    run.bar.close()
                    if run.publisher is not None:
                        run.publisher.close(wait=True)
                rt.barrier()
                record = _finish(run)
            except BaseException as exc:
                run.tracker.end("KILLED" if isinstance(exc, Interrupted) else "FAILED")
                raise
            run.tracker.end("FINISHED")
            return record
    finally:
        rt.close()


# -- 1. setup ------------------------------------------------------------------------------------------
def _setup(project: Project, params: TransformerParams, resume: str, rt: runtime.Runtime,
           slug_override: str | None = None) -> Run:
    storage = project.storage
    say = log if rt.is_main else quiet
    caution = warn if rt.is_main else quiet
    places = project.outputs.checkpoints

    # model config and checks (before any weights are read)
    source = models.resolve_model(params.model_name)
    model_config = models.load_config(source)
    models.check_max_length(source, model_config, params.max_length)
    identity = models.model_identity(source)
    slug = slug_override or source.slug
    label_names = load_labels(storage)

    # resume point: its params and seed win (with a warning)
    point = None
    if resume == "auto":
        point = checkpoint.find_resume_point(places.storage, slug, caution, places.key)
    seed = params.seed if params.seed is not None else project.configs.project.seed
    if point is not None:
        _check_compatible(point, places.storage.url(point.key), label_names, source, identity, caution)
        params, seed = _params_from_checkpoint(point.state, params, seed, caution)
        say(f"resuming from {places.storage.url(point.key)} (epoch {point.state['epoch'] + 1}, "
            f"step {point.state['global_step']})")
    elif resume == "auto" and checkpoint.checkpoint_keys(places.storage, slug, places.key):
        say(f"no valid checkpoint of {slug} to resume from: starting fresh")
    precision = runtime.resolve_precision(params.precision, rt.device, caution)
    compiled = compiling.resolve_compile(params.compile, rt.device, params.gradient_checkpointing, caution)

    # data: tokenised once, kept in memory
    tokenizer = models.load_tokenizer(source)
    data = _load_data(storage, tokenizer, label_names, params, seed)
    sampler = batches.LengthGroupedBatches(data.train.lengths, params.batch_size, seed,
                                           num_replicas=rt.world_size, rank=rt.rank)
    steps_per_epoch = math.ceil(sampler.num_batches / params.gradient_accumulation_steps)
    total_steps = params.max_steps or math.ceil(steps_per_epoch * params.num_epochs)

    # model, optimizer, schedule: fresh, or as the resume point left them
    _seed_everything(seed)
    model = models.load_classifier(source, label_names)
    if params.gradient_checkpointing:
        models.enable_activation_checkpointing(model)
    model.to(rt.device)
    if rt.device.type == "cpu":  # a cheaper attention-dropout mask; evaluation keeps SDPA's own path
        attention.use_for_training(model)
    optimizer = _optimizer(model, params, rt.device)
    from transformers import get_linear_schedule_with_warmup

    scheduler = get_linear_schedule_with_warmup(optimizer, math.ceil(params.warmup_ratio * total_steps), total_steps)
    scaler = runtime.grad_scaler(rt.device, precision)
    state = TrainState(lineage=project.run_id)
    if point is not None:
        point.load_weights(model)
        point.load_training_state(optimizer, scheduler, scaler)
        state = TrainState(**{k: v for k, v in point.state["train_state"].items() if k in TrainState.__dataclass_fields__})
        saved_world = int(point.state.get("world_size", 1))
        if saved_world != rt.world_size:  # same examples done, counted in this run's iterations
            caution(f"resuming a {saved_world}-process checkpoint with {rt.world_size} process(es): the data order "
                    f"continues from the same example, the step count and schedule are recomputed")
            state.iteration = state.iteration * saved_world // rt.world_size
        point.close()
    if compiled:  # in place, after the weights are in: the state-dict keys stay plain
        compiling.compile_model(model, rt.device)
    if rt.distributed:
        torch.manual_seed(seed + 1000 * rt.rank)  # different dropout masks per process
        from torch.nn.parallel import DistributedDataParallel

        ddp = DistributedDataParallel(model, device_ids=[rt.device.index] if rt.device.type == "cuda" else None)
    else:
        ddp = model

    # checkpoints: written by the main process only, published whole with their marker last
    publisher = checkpoints = None
    if rt.is_main:
        publisher = FolderPublisher(places.storage)
        checkpoints = checkpoint.Checkpointer(places.storage, places.key, slug, publisher,
                                              keep_steps=_KEEP_STEP_CHECKPOINTS,
                                              keep_epochs=params.checkpoint.keep_last_epochs,
                                              replace_others=point is None)
        if point is not None:
            checkpoints.last_step = state.global_step  # already saved: a stop before the next step saves nothing

    # tracking (main process), last, so that a failed setup leaves no MLflow run open: a server that does
    # not answer is a warning here, before the first step; a resumed run continues its MLflow run
    tracker = tracking.Tracker()
    if rt.is_main:
        tracker = tracking.start(project, "transformer", params.model_name, caution, say,
                                 params=params.model_dump(mode="json"), resume_run_id=state.tracking_run_id or None)
        state.tracking_run_id = tracker.run_id or state.tracking_run_id
    return Run(project=project, params=params, rt=rt, source=source, identity=identity, label_names=label_names,
               seed=seed, precision=precision, compiled=compiled, tokenizer=tokenizer, data=data, sampler=sampler,
               steps_per_epoch=steps_per_epoch, total_steps=total_steps,
               num_epochs=math.ceil(total_steps / steps_per_epoch),
               class_weights=_class_weights(data.train.labels, len(label_names), params.class_weights),
               model=model, ddp=ddp, optimizer=optimizer, scheduler=scheduler, scaler=scaler, state=state,
               publisher=publisher, checkpoints=checkpoints, say=say, caution=caution,
               pad_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0,
               multiple_of=8 if rt.device.type == "cuda" else 1,
               loss_acc=torch.zeros((), dtype=torch.float64, device=rt.device), tracker=tracker,
               slug_override=slug_override)


def _start_loop(run: Run) -> None:
    """The opening line, the progress bar (a live bar on a terminal; in log files a line every 30 s), the clocks."""
    from tqdm import tqdm

    p, rt = run.params, run.rt
    run.say(f"training {p.model_name} on {len(run.data.train)} examples, {len(run.label_names)} labels: "
            f"{run.total_steps} steps ({run.steps_per_epoch}/epoch, batch {p.batch_size} x "
            f"{p.gradient_accumulation_steps} accumulation{f' x {rt.world_size} processes' if rt.distributed else ''}"
            f"), max length {p.max_length}, {run.precision}{', compiled' if run.compiled else ''} on {rt.describe()}")
    run.interactive = sys.stderr.isatty()
    run.bar = tqdm(total=run.total_steps, initial=run.state.global_step, desc=run.slug, file=sys.stderr,
                   mininterval=1.0, dynamic_ncols=True, disable=not (rt.is_main and run.interactive))
    run.meter = Meter()


# -- 2. one epoch of optimizer steps ----------------------------------------------------------------------
def _train_epoch(run: Run) -> None:
    """Optimizer steps until the epoch or the step budget ends; step checkpoints; stop on a signal."""
    state, rt, params = run.state, run.rt, run.params
    plan = run.sampler.rank_batches(state.epoch)
    run.ddp.train()
    stopping = rt.any_rank(interrupts.stop_requested() is not None)
    accum = params.gradient_accumulation_steps
    while state.iteration < len(plan) and state.global_step < run.total_steps and not stopping:
        _step(run, plan[state.iteration:state.iteration + accum])
        _report_progress(run)
        stopping = rt.any_rank(interrupts.stop_requested() is not None)
        epoch_ends = state.iteration >= len(plan) or state.global_step >= run.total_steps
        if not stopping and not epoch_ends and _checkpoint_due(params, state.global_step, run.meter.last_save):
            run.meter.lap(state)
            _save(run, layout.step_tag(state.global_step))
            run.meter.last_save = time.monotonic()
    if stopping:
        _stop(run)


def _step(run: Run, group: list[Any]) -> None:
    """One optimizer step over a group of up to ``accum`` batches, loss normalised by the group's weight."""
    state, rt, data, optimizer = run.state, run.rt, run.data, run.optimizer
    group_weight = float(sum(run.class_weights[data.train.labels[i]] for idx in group for i in idx))
    for n, idx in enumerate(group):
        batch = {k: v.to(rt.device, non_blocking=True)
                 for k, v in batches.collate(data.train, idx, run.pad_id, run.multiple_of).items()}
        # DDP: all-reduce gradients only on the group's last batch
        skip_sync = rt.distributed and n < len(group) - 1
        with run.ddp.no_sync() if skip_sync else contextlib.nullcontext():
            with runtime.autocast(rt.device, run.precision):
                logits = run.ddp(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            per_example = F.cross_entropy(logits.float(), batch["labels"], reduction="none")
            weights = _example_weights(run.class_weights, batch["labels"])
            run.scaler.scale((per_example * weights).sum() / group_weight).backward()
        run.loss_acc += per_example.detach().sum()
        state.epoch_examples += len(idx)
    run.scaler.unscale_(optimizer)
    torch.nn.utils.clip_grad_norm_(run.model.parameters(), run.params.max_grad_norm)
    run.scaler.step(optimizer)
    run.scaler.update()
    run.scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    samples = sum(len(idx) for idx in group) * rt.world_size
    run.meter.compute_samples += samples
    state.iteration += len(group)
    state.global_step += 1
    state.samples_seen += samples


def _report_progress(run: Run) -> None:
    """The bar's postfix, a plain line every 30 s in log files, METRIC lines every few steps."""
    state, meter = run.state, run.meter
    run.bar.update(1)
    if not run.rt.is_main:
        return
    if time.monotonic() - meter.last_postfix > 2.0:
        meter.last_postfix = time.monotonic()
        loss, lr = run.read_loss(), run.scheduler.get_last_lr()[0]
        run.bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}", samples_s=f"{meter.samples_per_s():.1f}", refresh=False)
        if not run.interactive and time.monotonic() - meter.last_line > 30.0:
            meter.last_line = time.monotonic()
            run.say(f"step {state.global_step}/{run.total_steps} (epoch {state.epoch + 1}): loss {loss:.4f}, "
                    f"lr {lr:.2e}, {meter.samples_per_s():.1f} samples/s")
    if state.global_step % _LOG_EVERY_STEPS == 0:
        loss, lr = run.read_loss(), run.scheduler.get_last_lr()[0]
        metric("step", state.global_step)
        metric("train_loss", loss)
        metric("learning_rate", lr)
        run.tracker.log_metrics({"train_loss": loss, "learning_rate": lr}, step=state.global_step)


def _checkpoint_due(params: TransformerParams, step: int, last_save: float) -> bool:
    every = params.checkpoint
    if every.every_steps and step % every.every_steps == 0:
        return True
    return bool(every.every_minutes) and time.monotonic() - last_save >= every.every_minutes * 60


def _stop(run: Run) -> None:
    """Save ``-step<N>`` at the current step boundary, wait until it is complete, raise Interrupted."""
    reason = interrupts.stop_requested() or "a stop request"
    run.meter.lap(run.state)
    _save(run, layout.step_tag(run.state.global_step))
    if run.publisher is not None:
        run.publisher.wait()
    run.say(f"{reason}: checkpoint saved at step {run.state.global_step}; rerun the same command to resume")
    raise Interrupted(f"{reason} at step {run.state.global_step}; checkpoint saved, rerun the same command to resume")


# -- 3. end of epoch (or of the step budget): evaluate, keep the best, maybe stop early -------------------
def _evaluate_epoch(run: Run) -> None:
    state, rt, params = run.state, run.rt, run.params
    started = time.perf_counter()
    result = _evaluate(run, run.data.val)
    run.meter.overhead += time.perf_counter() - started
    if rt.any_rank(result is None):
        _stop(run)
    entry = {"epoch": state.epoch + 1, "global_step": state.global_step, "train_loss": run.read_loss(), **(result or {})}
    state.history.append(entry)
    value = rt.from_main(result[f"val_{params.metric}"] if result and "val_loss" in result else None)
    improved = value is None or state.best_value is None or value > state.best_value
    if improved:
        state.best_value, state.best_epoch, state.best_step = value, state.epoch + 1, state.global_step
        state.epochs_without_improvement = 0
    else:
        state.epochs_without_improvement += 1
    patience = params.early_stopping_patience
    early = patience is not None and state.epochs_without_improvement >= patience
    if run.on_epoch is not None and rt.is_main:
        # every epoch's value is reported; a stop after the last one would change nothing
        stop = bool(run.on_epoch(state.epoch + 1, value))
        state.pruned = stop and not early and state.global_step < run.total_steps
    if rt.is_main:
        for name in ("epoch", "train_loss", "val_loss", "val_accuracy", "val_macro_f1", "val_weighted_f1"):
            if name in entry:
                metric(name, entry[name])
        run.tracker.log_metrics({"epoch": entry["epoch"], "epoch_train_loss": entry["train_loss"],
                                 **{k: v for k, v in entry.items() if k.startswith("val_")}},
                                step=state.global_step)
        shown = f"val {params.metric} {value:.4f}" if value is not None else "no validation data"
        run.say(f"epoch {state.epoch + 1}/{run.num_epochs}: train loss {entry['train_loss']:.4f}, {shown}"
                f"{' (best)' if improved else ''}")
        if early:
            run.say(f"early stopping: no improvement of val {params.metric} for {patience} epoch(s)")
        if state.pruned:
            run.say(f"pruned after epoch {state.epoch + 1}: val {params.metric} below the other trials'")
    state.epoch += 1
    state.iteration = 0
    state.epoch_loss_sum, state.epoch_examples = 0.0, 0
    state.finished = early or state.pruned or state.global_step >= run.total_steps
    run.meter.lap(state)
    if improved:
        _save(run, "best", with_training_state=False)  # before the epoch checkpoint that refers to it
    _save(run, f"epoch{state.epoch}")
    run.meter.last_save = time.monotonic()


class _EvalStopped(Exception):
    """A stop request arrived during evaluation."""


def _evaluate(run: Run, split: batches.TokenizedSplit) -> dict[str, float] | None:
    """Validation loss and metrics; None when a stop request came in ({} without val data)."""
    if not len(split):
        return {}
    try:
        preds, loss, _ = _predict(run, split)
    except _EvalStopped:
        return None
    scores = classification_metrics(split.labels, preds, run.label_names)
    return {"val_loss": loss, "val_accuracy": scores["accuracy"], "val_macro_f1": scores["macro_f1"],
            "val_weighted_f1": scores["weighted_f1"]}


@torch.no_grad()
def _predict(run: Run, split: batches.TokenizedSplit,
             probabilities: np.ndarray | None = None) -> tuple[np.ndarray, float, float]:
    """Predicted ids, mean loss and samples/s over ``split`` (longest batches first).

    ``probabilities`` (texts x classes), when given, is filled with the softmax of the logits.
    """
    model, rt = run.model, run.rt
    model.eval()
    if rt.device.type == "cuda":
        torch.cuda.synchronize(rt.device)
    start = time.perf_counter()
    with compiling.eager():  # the compiled layers are for training only (see compiling.py)
        preds, loss_sum = _predict_batches(run, split, probabilities)
    seconds = time.perf_counter() - start
    model.train()
    return preds, loss_sum / max(len(split), 1), len(split) / seconds if seconds else 0.0


def _predict_batches(run: Run, split: batches.TokenizedSplit,
                     probabilities: np.ndarray | None) -> tuple[np.ndarray, float]:
    model, rt = run.model, run.rt
    preds = np.zeros(len(split), dtype=np.int64)
    loss_sum = 0.0
    for idx in batches.eval_batches(split, _eval_batch_size(run.params)):
        if interrupts.stop_requested():
            raise _EvalStopped
        batch = {k: v.to(rt.device) for k, v in batches.collate(split, idx, run.pad_id, run.multiple_of).items()}
        with runtime.autocast(rt.device, run.precision):
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()
        loss_sum += float(F.cross_entropy(logits, batch["labels"], reduction="sum"))
        preds[idx] = logits.argmax(-1).cpu().numpy()
        if probabilities is not None:
            probabilities[idx] = logits.softmax(-1).cpu().numpy()
    return preds, loss_sum


def _eval_batch_size(params: TransformerParams) -> int:
    return params.eval_batch_size or 2 * params.batch_size


# -- 4. checkpoints ------------------------------------------------------------------------------------------
def _save(run: Run, tag: str, with_training_state: bool = True) -> None:
    """Hand ``<slug>-<tag>`` to the publisher (main process); every process brings its loss and speed up to date."""
    state = run.state
    run.read_loss()
    if run.meter.compute_samples:
        state.samples_per_s = run.meter.samples_per_s()
    if run.checkpoints is None:
        return
    started = time.perf_counter()
    meta = {"tag": tag, "model_name": run.params.model_name, "model_identity": run.identity.identity,
            "model_revision": run.identity.revision, "labels": run.label_names,
            "params": run.params.model_dump(mode="json"), "seed": run.seed, "epoch": state.epoch,
            "iteration": state.iteration, "global_step": state.global_step, "world_size": run.rt.world_size,
            "run_id": run.project.run_id, "train_state": asdict(state)}
    training = (run.optimizer, run.scheduler, run.scaler) if with_training_state else ()
    if tag.startswith("step"):
        run.checkpoints.save_step(state.global_step, run.model, meta, *training)
    else:
        run.checkpoints.save(tag, run.model, meta, *training)
    run.meter.overhead += time.perf_counter() - started


# -- 5. finish: the best model on val and test, final model, metrics, manifest ------------------------------
def _finish(run: Run) -> dict[str, Any]:
    project, rt, state, params, slug = run.project, run.rt, run.state, run.params, run.slug
    _load_best(run)
    splits: dict[str, dict[str, Any]] = {}
    speed = 0.0
    probabilities = np.zeros((len(run.data.test), len(run.label_names)))
    for name, split in (("val", run.data.val), ("test", run.data.test)):
        if name == "test" and not run.evaluate_test:
            continue
        if len(split):
            try:
                # the test split's speed when there is one
                preds, _, speed = _predict(run, split, probabilities if name == "test" else None)
            except _EvalStopped:
                preds = None
            if rt.any_rank(preds is None):
                # training is over and its last checkpoint complete (the publisher was closed before this):
                # a rerun resumes from it straight to this evaluation
                reason = interrupts.stop_requested() or "a stop request"
                run.say(f"{reason} during the final evaluation; training is complete and checkpointed")
                raise Interrupted(f"{reason} during the final evaluation; training is complete and checkpointed, "
                                  f"rerun the same command to evaluate and save the model")
            splits[name] = classification_metrics(split.labels, preds, run.label_names)
            if name == "test":
                uncertainty = {"intervals": headline_uncertainty(splits[name], project.configs.project.report,
                                                                 run.seed),
                               "predictions": predictions_block(run.data.test_texts, split.labels, preds,
                                                                probabilities)}
    if not splits:
        raise DataError("the val and test splits are empty: nothing to evaluate; rerun 'multitype prepare'")
    record = metrics_record(
        run.slug if run.slug_override else params.model_name, "transformer", run.label_names, splits, project.run_id, state.train_seconds, speed,
        slug=slug, train_samples_per_s=round(run.throughput, 2),
        peak_memory_mb=round(runtime.peak_memory_mb(rt.device), 1),
        num_parameters=sum(p.numel() for p in run.model.parameters()), precision=run.precision, compiled=run.compiled,
        device=rt.describe(), world_size=rt.world_size, epochs_trained=state.epoch, global_step=state.global_step,
        train_samples=state.samples_seen, best_epoch=state.best_epoch, seed=run.seed, history=state.history,
        params=params.model_dump(mode="json"), **(uncertainty if "test" in splits else {}),
        **({"pruned": state.pruned} if run.on_epoch is not None else {}), **run.record_extra,
    )
    if rt.is_main:
        place = project.outputs.final_model(slug)
        hashes = artifacts.save_final_model(place, run.model, run.tokenizer, run.label_names, params.model_name,
                                            params.max_length,
                                            name=artifacts.output_name(project, place.storage, place.key))
        artifacts.write_results(project, slug, record, run.data.keys,
                                extra={"params": params.model_dump(mode="json"), "model": params.model_name,
                                       "model_identity": run.identity.identity,
                                       "model_revision": run.identity.revision, "lineage": state.lineage,
                                       **({"pruned": state.pruned} if run.on_epoch is not None else {}),
                                       **run.record_extra,
                                       **_tracking_fields(run.tracker)},
                                output_hashes=hashes)
        _track_finish(run, record, place)
        _tidy_checkpoints(run, place)
        for name in ("accuracy", "macro_f1"):
            metric(f"test_{name}" if "test" in splits else f"val_{name}", record[name])
        metric("train_samples_per_s", run.throughput)
        run.say(f"{params.model_name}: {record['split']} accuracy {record['accuracy']:.4f}, macro-F1 {record['macro_f1']:.4f} "
                f"(best epoch {state.best_epoch}); model in {place.url()}")
    rt.barrier()
    return record


def _tracking_fields(tracker: tracking.Tracker) -> dict[str, Any]:
    """What the manifest says about tracking: the MLflow run id and where it is (nothing when off)."""
    return {"tracking": {"mlflow_run_id": tracker.run_id, "uri": tracker.where}} if tracker.active else {}


def _track_finish(run: Run, record: dict[str, Any], place: Any) -> None:
    """Final metrics, the manifest and the final model folder to the MLflow run."""
    tracker = run.tracker
    if not tracker.active:
        return
    tracker.log_record(record, step=run.state.global_step)
    tracker.log_keys(run.project.outputs.results, [layout.manifest(run.project.run_id)], "manifest")
    tracker.log_model_folder(place.storage, place.key, "model")


def _tidy_checkpoints(run: Run, place: Any) -> None:
    """``checkpoint.keep`` once the final model and results are written (main process; never before)."""
    places, keep = run.project.outputs.checkpoints, run.params.checkpoint.keep
    # -best points at the final model only where both live in one storage (not SageMaker's two folders)
    final_key = place.key if place.storage is places.storage and place.key else None
    try:
        done = checkpoint.tidy_finished(places.storage, run.slug, keep, final_key, places.key)
    except (StorageError, checkpoint.InvalidCheckpoint, OSError) as exc:
        run.caution(f"the finished run's checkpoints were left as they are ({exc}); the final model is saved")
        return
    parts = [f"{len(done['removed'])} removed" if done["removed"] else "",
             f"{len(done['stripped'])} kept as weights only" if done["stripped"] else "",
             f"{run.slug}-best points to {place.url()}" if done["pointer"] else ""]
    if any(parts):
        run.say(f"checkpoints (checkpoint.keep: {keep}): {', '.join(p for p in parts if p)}")


def _load_best(run: Run) -> None:
    """Put the ``-best`` checkpoint's weights into the model; a missing or damaged one is a ModelError.

    Under DDP the main process reads it and sends the weights to the others: on
    several machines (a SageMaker job) only the first one has the checkpoints.
    """
    rt = run.rt
    if not rt.distributed:
        _read_best(run)
        return
    problem = None
    if rt.is_main:
        try:
            _read_best(run)
        except ModelError as exc:
            problem = str(exc)
    problem = rt.from_main(problem)
    if problem is not None:
        raise ModelError(problem)
    import torch.distributed as dist

    for tensor in run.model.state_dict().values():  # views of the parameters and buffers: filled in place
        dist.broadcast(tensor, src=0)


def _read_best(run: Run) -> None:
    places = run.project.outputs.checkpoints
    key = run.project.outputs.checkpoint(run.slug, "best")
    fix = ("so there is no best model to evaluate and save; pass --resume never to train again (the other "
           "checkpoints are kept until the new run replaces them)")
    if not places.storage.exists(key):
        raise ModelError(f"the best checkpoint {places.storage.url(key)} is missing, {fix}")
    try:
        best = checkpoint.open_checkpoint(places.storage, key, checkpoint.WEIGHT_FILES)
    except checkpoint.InvalidCheckpoint as exc:
        raise ModelError(f"the best checkpoint {places.storage.url(key)} cannot be used ({exc}), {fix}") from None
    try:
        if best.state["global_step"] != run.state.best_step:
            run.caution(f"{places.storage.url(best.key)} is from step {best.state['global_step']}, the run's best "
                        f"was step {run.state.best_step}; evaluating the checkpoint")
        best.load_weights(run.model)
    finally:
        best.close()


# -- helpers, in the order the steps use them ---------------------------------------------------------------
def _check_compatible(point: checkpoint.LocalCheckpoint, where: str, label_names: list[str],
                      source: models.ModelSource, identity: models.ModelIdentity,
                      caution: Callable[[str], None]) -> None:
    state = point.state
    fix = "pass --resume never to train from scratch (its checkpoints replace these), or use another --root"
    if state.get("labels") != label_names:
        point.close()
        raise ModelError(f"checkpoint {where} was trained on labels {state.get('labels')} but "
                         f"data/processed/labels.json has {label_names}; {fix}")
    if not models.same_model(state.get("model_identity"), identity):
        point.close()
        raise ModelError(f"checkpoint {where} was trained from model '{state.get('model_name')}', not "
                         f"'{source.name}'; {fix}")
    saved_revision = state.get("model_revision")
    if saved_revision and identity.revision and saved_revision != identity.revision:
        caution(f"checkpoint {where} started from revision {saved_revision} of '{source.name}', the cache has "
                f"{identity.revision}; the checkpoint's weights are used")


def _params_from_checkpoint(state: dict[str, Any], params: TransformerParams, seed: int,
                            caution: Callable[[str], None]) -> tuple[TransformerParams, int]:
    """The checkpoint's seed and run-shaping params win over the config, with a warning each."""
    saved = state["params"]
    current = params.model_dump(mode="json")
    merged = dict(current)
    for key, value in saved.items():
        if key in _FREE_ON_RESUME or key == "seed" or key not in current or current[key] == value:
            continue
        caution(f"resuming: the checkpoint's {key}={value!r} wins over {current[key]!r} "
                f"(pass --resume never to start over with the new value)")
        merged[key] = value
    if int(state["seed"]) != seed:
        caution(f"resuming: the checkpoint's seed {state['seed']} wins over {seed}")
    merged["seed"] = int(state["seed"])
    return TransformerParams.model_validate(merged), int(state["seed"])


def _load_data(storage: Any, tokenizer: Any, label_names: list[str], params: TransformerParams, seed: int) -> Data:
    keys = [layout.LABELS]
    tokenized, test_texts = {}, []
    for split in layout.SPLITS:
        texts, ids = load_split(storage, split, label_names)
        if split == "test":
            test_texts = texts
        keys.append(layout.processed_split(split, len(label_names)))
        if split == "train":
            if not texts:
                raise DataError(f"{storage.url(keys[-1])} has no rows; rerun 'multitype prepare'")
            if params.max_train_samples:
                keep = batches.stratified_subset(ids, params.max_train_samples, seed)
                texts, ids = [texts[i] for i in keep], [ids[i] for i in keep]
        tokenized[split] = batches.tokenize(tokenizer, texts, ids, params.max_length)
    return Data(label_names, tokenized["train"], tokenized["val"], tokenized["test"], keys, test_texts)


def _class_weights(labels: list[int], num_labels: int, mode: str) -> np.ndarray:
    """Per-class loss weights: ones, or n / (classes x count) for ``balanced``."""
    weights = np.ones(num_labels)
    if mode == "balanced":
        counts = np.bincount(labels, minlength=num_labels)
        present = counts > 0
        weights[present] = len(labels) / (present.sum() * counts[present])
    return weights


def _example_weights(class_weights: np.ndarray, labels: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(class_weights, dtype=torch.float32, device=labels.device)[labels]


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _optimizer(model: torch.nn.Module, params: TransformerParams, device: torch.device) -> torch.optim.AdamW:
    """AdamW without weight decay on biases and norms, fused (one multi-threaded kernel for all parameters).

    On CPU the per-parameter loop PyTorch uses otherwise ran ~8% of a minilm step in small single-threaded ops
    (profiled; HF Trainer's default optimizer is the fused one too).
    """
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim < 2 or "norm" in name.lower() else decay).append(p)
    groups = [{"params": decay, "weight_decay": params.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=params.learning_rate, fused=device.type in ("cuda", "cpu"))
