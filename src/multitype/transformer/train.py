"""Fine-tune one transformer: our own loop, readable top to bottom.

``train_transformer`` goes: check options -> model config (no weights yet) ->
data (tokenised once) -> resume point -> model, optimizer, scheduler -> loop
(accumulate, clip, step, checkpoint, stop on SIGTERM) -> evaluate each epoch,
keep the best, stop early -> best model on val and test -> final model,
metrics, summary, manifest.

Exactness: the batch order is a function of (seed, epoch), checkpoints are
taken only at optimizer-step boundaries and hold every state (weights,
optimizer, scheduler, scaler, RNGs, position), so on CPU in fp32 a run killed at
any point and resumed ends with the same weights as one that never stopped.
"""

from __future__ import annotations

import contextlib
import math
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from multitype import interrupts, layout
from multitype.config import TransformerParams
from multitype.data.dataset import load_labels, load_split
from multitype.errors import DataError, Interrupted, ModelError
from multitype.evaluate import classification_metrics, metrics_record
from multitype.project import Project
from multitype.transformer import artifacts, batches, checkpoint, models, runtime
from multitype.uploader import FolderPublisher

# params that may change between a run and its resume; any other difference is overruled by the checkpoint
_FREE_ON_RESUME = {"precision", "eval_batch_size", "checkpoint", "gradient_checkpointing"}
_LOG_EVERY_STEPS = 10


def log(message: str) -> None:
    """A progress line on stderr that does not break the progress bar."""
    from tqdm import tqdm

    tqdm.write(message, file=sys.stderr)


def warn(message: str) -> None:
    log(f"warning: {message}")


def metric(name: str, value: float | int) -> None:
    """A ``METRIC name=value`` line on stdout (SageMaker metric definitions match these)."""
    shown = f"{value:.6g}" if isinstance(value, float) else str(value)
    print(f"METRIC {name}={shown}", flush=True)


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

    def train_loss(self) -> float:
        return self.epoch_loss_sum / max(self.epoch_examples, 1)


@dataclass
class Data:
    labels: list[str]
    train: batches.TokenizedSplit
    val: batches.TokenizedSplit
    test: batches.TokenizedSplit
    keys: list[str]


def train_transformer(project: Project, params: TransformerParams, resume: str = "auto",
                      gpus: str | None = None) -> dict[str, Any]:
    """Fine-tune ``params.model_name`` on the processed splits and return the metrics record.

    Parameters
    ----------
    project : Project
        Root, configs and run id.
    params : TransformerParams
        Resolved hyperparameters (``configs.transformer.params_for(...)``).
    resume : {"auto", "never"}, default="auto"
        ``auto`` continues from the newest valid checkpoint of this model;
        ``never`` starts fresh (old checkpoints go once new ones replace them).
    gpus : str, optional
        ``"all"`` or a count: with more than one GPU, re-launch under torchrun
        (DDP). None: one process.

    Returns
    -------
    dict
        The ``results/transformer/<slug>_metrics.json`` document.

    Raises
    ------
    ModelError
        Unknown model, max_length beyond the model's limit, a checkpoint of
        another model or other labels, CUDA out of memory.
    Interrupted
        SIGTERM/SIGINT: a ``-last`` checkpoint was saved first.
    """
    if resume not in ("auto", "never"):
        raise ModelError(f"--resume must be 'auto' or 'never', got {resume!r}")
    if gpus is not None:
        from multitype.transformer import parallel

        relaunched = parallel.maybe_relaunch(project, params, resume, gpus)
        if relaunched is not None:
            return relaunched
    rt = runtime.setup_runtime()
    interrupts.clear()
    try:
        with interrupts.stop_on_signals():  # a SIGTERM while loading is answered at the first step
            return _train(project, params, resume, rt)
    finally:
        rt.close()


def _train(project: Project, params: TransformerParams, resume: str, rt: runtime.Runtime) -> dict[str, Any]:
    storage = project.storage
    say = log if rt.is_main else (lambda _: None)
    caution = warn if rt.is_main else (lambda _: None)

    # -- model config and checks (before any weights are read) ----------------------
    source = models.resolve_model(params.model_name)
    model_config = models.load_config(source)
    models.check_max_length(source, model_config, params.max_length)
    slug = source.slug
    label_names = load_labels(storage)

    # -- resume point: its params and seed win (with a warning) ---------------------
    point = checkpoint.find_resume_point(storage, slug, caution) if resume == "auto" else None
    seed = params.seed if params.seed is not None else project.configs.project.seed
    if point is not None:
        _check_compatible(point, storage.url(point.key), label_names, source)
        params, seed = _params_from_checkpoint(point.state, params, seed, caution)
        say(f"resuming from {storage.url(point.key)} (epoch {point.state['epoch'] + 1}, "
            f"step {point.state['global_step']})")
    elif resume == "auto" and checkpoint.checkpoint_keys(storage, slug):
        say(f"no valid checkpoint of {slug} to resume from: starting fresh")
    precision = runtime.resolve_precision(params.precision, rt.device, caution)

    # -- data: tokenised once, kept in memory ----------------------------------------
    tokenizer = models.load_tokenizer(source)
    data = _load_data(storage, tokenizer, label_names, params, seed)
    sampler = batches.LengthGroupedBatches(data.train.lengths, params.batch_size, seed,
                                           num_replicas=rt.world_size, rank=rt.rank)
    steps_per_epoch = math.ceil(sampler.num_batches / params.gradient_accumulation_steps)
    total_steps = params.max_steps or math.ceil(steps_per_epoch * params.num_epochs)
    num_epochs = math.ceil(total_steps / steps_per_epoch)
    class_weights = _class_weights(data.train.labels, len(label_names), params.class_weights)

    # -- model, optimizer, schedule ---------------------------------------------------
    _seed_everything(seed)
    model = models.load_classifier(source, label_names)
    if params.gradient_checkpointing:
        models.enable_activation_checkpointing(model)
    model.to(rt.device)
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
    if rt.distributed:
        torch.manual_seed(seed + 1000 * rt.rank)  # different dropout masks per process
        from torch.nn.parallel import DistributedDataParallel

        ddp = DistributedDataParallel(model, device_ids=[rt.device.index] if rt.device.type == "cuda" else None)
    else:
        ddp = model
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    multiple_of = 8 if rt.device.type == "cuda" else 1

    # -- checkpoints -------------------------------------------------------------------
    publisher = FolderPublisher(storage) if rt.is_main else None
    written: set[str] = set()
    fresh = point is None

    overhead = 0.0  # seconds spent writing checkpoints and evaluating, left out of samples/s
    # the epoch's loss is summed on the device and read back only now and then (a read is a GPU sync)
    loss_acc = torch.zeros((), dtype=torch.float64, device=rt.device)

    def read_loss() -> float:
        state.epoch_loss_sum += float(loss_acc)
        loss_acc.zero_()
        return state.train_loss()

    def save(tag: str, with_training_state: bool = True) -> None:
        nonlocal overhead
        read_loss()
        if compute_samples:
            state.samples_per_s = samples_per_s()
        if publisher is None:
            return
        started = time.perf_counter()
        key = layout.checkpoint(slug, tag)
        written.add(key)
        meta = {"tag": tag, "model_name": params.model_name, "model_identity": source.identity,
                "labels": label_names, "params": params.model_dump(mode="json"), "seed": seed,
                "epoch": state.epoch, "iteration": state.iteration, "global_step": state.global_step,
                "world_size": rt.world_size, "run_id": project.run_id, "train_state": asdict(state)}
        checkpoint.save_checkpoint(publisher, key, model, meta,
                                   *((optimizer, scheduler, scaler) if with_training_state else ()),
                                   on_done=lambda done: _after_publish(done))
        overhead += time.perf_counter() - started

    def _after_publish(done: str) -> None:
        nonlocal fresh
        if fresh:  # a fresh run's first checkpoint replaces the previous run's ones
            fresh = False
            for key in checkpoint.checkpoint_keys(storage, slug):
                if key not in written:
                    storage.rm(key, recursive=True)
        if checkpoint.epoch_number(done) is not None:
            checkpoint.prune_epochs(storage, slug, params.checkpoint.keep_last_epochs)

    # -- the loop ----------------------------------------------------------------------
    say(f"training {params.model_name} on {len(data.train)} examples, {len(label_names)} labels: {total_steps} steps "
        f"({steps_per_epoch}/epoch, batch {params.batch_size} x {params.gradient_accumulation_steps} accumulation"
        f"{f' x {rt.world_size} processes' if rt.distributed else ''}), max length {params.max_length}, "
        f"{precision} on {rt.describe()}")
    from tqdm import tqdm

    # a live bar on a terminal; in log files (SageMaker, EC2, train parallel) a plain line every 30 s
    interactive = sys.stderr.isatty()
    bar = tqdm(total=total_steps, initial=state.global_step, desc=slug, file=sys.stderr, mininterval=1.0,
               dynamic_ncols=True, disable=not (rt.is_main and interactive))
    loop_started = run_started = time.perf_counter()
    compute_samples = 0

    def samples_per_s() -> float:  # training only: evaluation and checkpoint writing excluded
        return compute_samples / max(time.perf_counter() - run_started - overhead, 1e-9)
    last_save = last_postfix = last_line = time.monotonic()
    try:
        while not state.finished:
            plan = sampler.rank_batches(state.epoch)
            ddp.train()
            stopping = rt.any_rank(interrupts.stop_requested() is not None)
            accum = params.gradient_accumulation_steps
            while state.iteration < len(plan) and state.global_step < total_steps and not stopping:
                # one optimizer step over a group of up to `accum` batches, loss normalised by its weight
                group = plan[state.iteration:state.iteration + accum]
                group_weight = float(sum(class_weights[data.train.labels[i]] for idx in group for i in idx))
                for n, idx in enumerate(group):
                    batch = {k: v.to(rt.device, non_blocking=True)
                             for k, v in batches.collate(data.train, idx, pad_id, multiple_of).items()}
                    # DDP: all-reduce gradients only on the group's last batch
                    skip_sync = rt.distributed and n < len(group) - 1
                    with ddp.no_sync() if skip_sync else contextlib.nullcontext():
                        with runtime.autocast(rt.device, precision):
                            logits = ddp(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
                        per_example = F.cross_entropy(logits.float(), batch["labels"], reduction="none")
                        weights = _example_weights(class_weights, batch["labels"])
                        scaler.scale((per_example * weights).sum() / group_weight).backward()
                    loss_acc += per_example.detach().sum()
                    state.epoch_examples += len(idx)
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), params.max_grad_norm)
                scaler.step(optimizer)
                scaler.update()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                samples = sum(len(idx) for idx in group) * rt.world_size
                compute_samples += samples
                state.iteration += len(group)
                state.global_step += 1
                state.samples_seen += samples
                bar.update(1)
                if rt.is_main and time.monotonic() - last_postfix > 2.0:
                    last_postfix = time.monotonic()
                    loss, lr = read_loss(), scheduler.get_last_lr()[0]
                    bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}", samples_s=f"{samples_per_s():.1f}", refresh=False)
                    if not interactive and time.monotonic() - last_line > 30.0:
                        last_line = time.monotonic()
                        say(f"step {state.global_step}/{total_steps} (epoch {state.epoch + 1}): loss {loss:.4f}, "
                            f"lr {lr:.2e}, {samples_per_s():.1f} samples/s")
                if rt.is_main and state.global_step % _LOG_EVERY_STEPS == 0:
                    metric("step", state.global_step)
                    metric("train_loss", read_loss())
                    metric("learning_rate", scheduler.get_last_lr()[0])
                stopping = rt.any_rank(interrupts.stop_requested() is not None)
                epoch_ends = state.iteration >= len(plan) or state.global_step >= total_steps
                if not stopping and not epoch_ends and _checkpoint_due(params, state.global_step, last_save):
                    state.train_seconds += time.perf_counter() - loop_started
                    loop_started = time.perf_counter()
                    save("last")
                    last_save = time.monotonic()
            if stopping:
                _stop(save, state, loop_started, publisher, interrupts.stop_requested() or "a stop request", say)

            # -- end of epoch (or of the step budget): evaluate, keep the best, maybe stop early ----
            started = time.perf_counter()
            result = _evaluate(model, data.val, data.labels, params, rt, precision, pad_id, multiple_of)
            overhead += time.perf_counter() - started
            if rt.any_rank(result is None):
                _stop(save, state, loop_started, publisher, interrupts.stop_requested() or "a stop request", say)
            entry = {"epoch": state.epoch + 1, "global_step": state.global_step,
                     "train_loss": read_loss(), **(result or {})}
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
            if rt.is_main:
                for name in ("epoch", "train_loss", "val_loss", "val_accuracy", "val_macro_f1", "val_weighted_f1"):
                    if name in entry:
                        metric(name, entry[name])
                shown = f"val {params.metric} {value:.4f}" if value is not None else "no validation data"
                say(f"epoch {state.epoch + 1}/{num_epochs}: train loss {entry['train_loss']:.4f}, {shown}"
                    f"{' (best)' if improved else ''}")
                if early:
                    say(f"early stopping: no improvement of val {params.metric} for {patience} epoch(s)")
            state.epoch += 1
            state.iteration = 0
            state.epoch_loss_sum, state.epoch_examples = 0.0, 0
            state.finished = early or state.global_step >= total_steps
            state.train_seconds += time.perf_counter() - loop_started
            loop_started = time.perf_counter()
            if improved:
                save("best", with_training_state=False)  # before the epoch checkpoint that refers to it
            save(f"epoch{state.epoch}")
            last_save = time.monotonic()
        if rt.device.type == "cuda":
            torch.cuda.synchronize(rt.device)
        throughput = samples_per_s() if compute_samples else state.samples_per_s
    except torch.cuda.OutOfMemoryError:
        raise ModelError(f"CUDA out of memory with --batch-size {params.batch_size} and --max-length "
                         f"{params.max_length}; lower one of them, or set gradient_checkpointing: true in "
                         f"models_transformer.yaml") from None
    finally:
        bar.close()
        if publisher is not None:
            publisher.close(wait=True)
    rt.barrier()

    # -- the best model on val and test ---------------------------------------------------
    best = checkpoint.open_checkpoint(storage, layout.checkpoint(slug, "best"), checkpoint.WEIGHT_FILES)
    try:
        if best.state["global_step"] != state.best_step:
            caution(f"{storage.url(best.key)} is from step {best.state['global_step']}, the run's best was step "
                    f"{state.best_step}; evaluating the checkpoint")
        best.load_weights(model)
    finally:
        best.close()
    splits: dict[str, dict[str, Any]] = {}
    speed = 0.0
    for name, split in (("val", data.val), ("test", data.test)):
        if len(split):
            preds, _, speed_ = _predict(model, split, _eval_batch_size(params), rt, precision, pad_id, multiple_of)
            splits[name] = classification_metrics(split.labels, preds, label_names)
            speed = speed_  # the test split's when there is one
    if not splits:
        raise DataError("the val and test splits are empty: nothing to evaluate; rerun 'multitype prepare'")
    record = metrics_record(
        params.model_name, "transformer", label_names, splits, project.run_id, state.train_seconds, speed,
        slug=slug, train_samples_per_s=round(throughput, 2), peak_memory_mb=round(runtime.peak_memory_mb(rt.device), 1),
        num_parameters=sum(p.numel() for p in model.parameters()), precision=precision, device=rt.describe(),
        world_size=rt.world_size, epochs_trained=state.epoch, global_step=state.global_step,
        train_samples=state.samples_seen,
        best_epoch=state.best_epoch, seed=seed, history=state.history, params=params.model_dump(mode="json"),
    )
    if rt.is_main:
        artifacts.save_final_model(storage, slug, model, tokenizer, label_names, params.model_name, params.max_length)
        artifacts.write_results(project, slug, record, data.keys,
                                extra={"params": params.model_dump(mode="json"), "model": params.model_name,
                                       "lineage": state.lineage})
        for name in ("accuracy", "macro_f1"):
            metric(f"test_{name}" if "test" in splits else f"val_{name}", record[name])
        metric("train_samples_per_s", throughput)
        say(f"{params.model_name}: test accuracy {record['accuracy']:.4f}, macro-F1 {record['macro_f1']:.4f} "
            f"(best epoch {state.best_epoch}); model in {storage.url(layout.final_model(slug))}")
    rt.barrier()
    return record


# -- helpers, in the order the loop uses them ------------------------------------------------
def _check_compatible(point: checkpoint.LocalCheckpoint, where: str, label_names: list[str],
                      source: models.ModelSource) -> None:
    state = point.state
    fix = "pass --resume never to train from scratch (its checkpoints replace these), or use another --root"
    if state.get("labels") != label_names:
        point.close()
        raise ModelError(f"checkpoint {where} was trained on labels {state.get('labels')} but "
                         f"data/processed/labels.json has {label_names}; {fix}")
    if state.get("model_identity") != source.identity:
        point.close()
        raise ModelError(f"checkpoint {where} was trained from model '{state.get('model_name')}', not "
                         f"'{source.name}'; {fix}")


def _params_from_checkpoint(state: dict[str, Any], params: TransformerParams, seed: int,
                            caution: Any) -> tuple[TransformerParams, int]:
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
    tokenized = {}
    for split in layout.SPLITS:
        texts, ids = load_split(storage, split, label_names)
        keys.append(layout.processed_split(split, len(label_names)))
        if split == "train":
            if not texts:
                raise DataError(f"{storage.url(keys[-1])} has no rows; rerun 'multitype prepare'")
            if params.max_train_samples:
                keep = batches.stratified_subset(ids, params.max_train_samples, seed)
                texts, ids = [texts[i] for i in keep], [ids[i] for i in keep]
        tokenized[split] = batches.tokenize(tokenizer, texts, ids, params.max_length)
    return Data(label_names, tokenized["train"], tokenized["val"], tokenized["test"], keys)


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
    """AdamW without weight decay on biases and norms; fused kernels on CUDA."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim < 2 or "norm" in name.lower() else decay).append(p)
    groups = [{"params": decay, "weight_decay": params.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=params.learning_rate, fused=device.type == "cuda")


def _checkpoint_due(params: TransformerParams, step: int, last_save: float) -> bool:
    every = params.checkpoint
    if every.every_steps and step % every.every_steps == 0:
        return True
    return bool(every.every_minutes) and time.monotonic() - last_save >= every.every_minutes * 60


def _stop(save: Any, state: TrainState, loop_started: float, publisher: FolderPublisher | None, reason: str,
          say: Any) -> None:
    """Save ``-last`` at the current step boundary, wait for the upload, raise Interrupted."""
    state.train_seconds += time.perf_counter() - loop_started
    save("last")
    if publisher is not None:
        publisher.wait()
    say(f"{reason}: checkpoint saved at step {state.global_step}; rerun the same command to resume")
    raise Interrupted(f"{reason} at step {state.global_step}; checkpoint saved, rerun the same command to resume")


def _eval_batch_size(params: TransformerParams) -> int:
    return params.eval_batch_size or 2 * params.batch_size


@torch.no_grad()
def _predict(model: torch.nn.Module, split: batches.TokenizedSplit, batch_size: int, rt: runtime.Runtime,
             precision: str, pad_id: int, multiple_of: int) -> tuple[np.ndarray, float, float]:
    """Predicted ids, mean loss and samples/s over ``split`` (longest batches first)."""
    model.eval()
    preds = np.zeros(len(split), dtype=np.int64)
    loss_sum = 0.0
    if rt.device.type == "cuda":
        torch.cuda.synchronize(rt.device)
    start = time.perf_counter()
    for idx in batches.eval_batches(split, batch_size):
        if interrupts.stop_requested():
            raise _EvalStopped
        batch = {k: v.to(rt.device) for k, v in batches.collate(split, idx, pad_id, multiple_of).items()}
        with runtime.autocast(rt.device, precision):
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()
        loss_sum += float(F.cross_entropy(logits, batch["labels"], reduction="sum"))
        preds[idx] = logits.argmax(-1).cpu().numpy()
    seconds = time.perf_counter() - start
    model.train()
    return preds, loss_sum / max(len(split), 1), len(split) / seconds if seconds else 0.0


class _EvalStopped(Exception):
    """A stop request arrived during evaluation."""


def _evaluate(model: torch.nn.Module, split: batches.TokenizedSplit, label_names: list[str], params: TransformerParams,
              rt: runtime.Runtime, precision: str, pad_id: int, multiple_of: int) -> dict[str, float] | None:
    """Validation loss and metrics; None when there is no val data or a stop request came in."""
    if not len(split):
        return {}
    try:
        preds, loss, _ = _predict(model, split, _eval_batch_size(params), rt, precision, pad_id, multiple_of)
    except _EvalStopped:
        return None
    scores = classification_metrics(split.labels, preds, label_names)
    return {"val_loss": loss, "val_accuracy": scores["accuracy"], "val_macro_f1": scores["macro_f1"],
            "val_weighted_f1": scores["weighted_f1"]}
