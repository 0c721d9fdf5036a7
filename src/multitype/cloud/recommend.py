"""``multitype cost recommend``: instance types for a task, computed from the catalog and the project.

- ``fine-tune``: GPU types whose GPU memory holds the model's training memory
  at the configured batch size, max_length, precision and gradient
  checkpointing (:func:`multitype.cloud.flops.training_memory_gib` plus 20%
  headroom and the CUDA context), cheapest estimate first (:func:`~multitype.cloud.cost.estimate`);
- ``preprocess``, ``baseline``, ``inference``: CPU types whose memory holds the
  work (below), cheapest per hour first. Preprocessing holds the raw data
  about 10 times over (pandas strings, the audit's hashes and n-gram sets);
  the TF-IDF baselines hold the train split's sparse matrix (about 2 n-grams
  per word with ngram_range (1, 2), 12 bytes per stored value in CSR:
  float64 + int32 index) three times over (fit, transform, solver copy);
  inference holds the fp32 weights and a batch's activations. Inference gets a
  speed: forward FLOPs of the test split at the catalog's utilisation of the
  CPU peak, and a price per 1,000 predictions.

Each memory figure is a floor for choosing a size, not a measurement.
"""

from __future__ import annotations

from dataclasses import dataclass

from multitype import layout
from multitype.cloud import flops as fl
from multitype.cloud.cost import Estimate, estimate, workload
from multitype.cloud.prices import PriceCatalog, load_catalog
from multitype.cloud.throughput import measurements
from multitype.errors import UserError
from multitype.project import Project

TASKS = ("preprocess", "baseline", "fine-tune", "inference")
HEADROOM = 1.2
OS_GIB = 1.0  # the OS and the Python process itself, kept free on CPU types


@dataclass(frozen=True)
class Recommendation:
    """One instance type for a task, why it fits, and its estimate where there is one."""

    task: str
    instance_type: str
    usd_hour: float
    need_gib: float
    has_gib: float
    reason: str
    estimate: Estimate | None = None
    usd_per_1k: float | None = None


def _raw_bytes(project: Project) -> int:
    storage = project.storage
    if storage.exists(layout.RAW_DATA):
        return len(storage.read_bytes(layout.RAW_DATA))
    work = workload(project)
    return sum(work.train_chars) * 10 // 8  # the train split is 80% of the data


def recommend(project: Project, task: str, model_name: str | None = None, *, service: str | None = None,
              spot: bool = False, top: int = 3, catalog: PriceCatalog | None = None) -> list[Recommendation]:
    """The ``top`` cheapest instance types that fit ``task`` (see the module docstring).

    Raises
    ------
    UserError
        An unknown task, or no catalog type is big enough (says what to change).
    """
    if task not in TASKS:
        raise UserError(f"--task must be one of {', '.join(TASKS)}, got {task!r}")
    catalog = catalog or load_catalog()
    names = catalog.names(service)
    name = model_name or project.configs.transformer.defaults.model_name
    if task == "fine-tune":
        params = project.configs.transformer.params_for(name)
        shape = fl.model_shape(name)
        need = fl.training_memory_gib(shape, params.batch_size, params.max_length,
                                      half=params.precision != "fp32",
                                      checkpointing=params.gradient_checkpointing) * HEADROOM + fl.CUDA_CONTEXT_GIB
        work, found = workload(project), measurements(project.storage, list(catalog.gpus))
        out = []
        for n in names:
            spec = catalog.require(n)
            if not spec.gpus or (spec.gpu_memory_gib or 0) < need:
                continue
            est = estimate(project, name, n, spot=spot, catalog=catalog, work=work, found=found)
            out.append(Recommendation(task, n, est.usd_hour, need, float(spec.gpu_memory_gib or 0),
                                      f"{spec.gpus} x {spec.gpu_model} {spec.gpu_memory_gib:g} GiB >= {need:.1f} GiB "
                                      f"(batch {params.batch_size} x {params.max_length} tokens, "
                                      f"{params.precision}, {shape.params / 1e6:.0f}M parameters)", est))
        if not out:
            raise UserError(f"no GPU type in the catalog holds {name!r} at batch {params.batch_size} x "
                            f"{params.max_length} tokens ({need:.1f} GiB); lower batch_size or max_length, or set "
                            "gradient_checkpointing: true in models_transformer.yaml")
        return sorted(out, key=lambda r: (r.estimate.usd if r.estimate else 0, r.usd_hour))[:top]
    return _cpu(project, task, name, catalog, names, spot, top)


def _cpu(project: Project, task: str, name: str, catalog: PriceCatalog, names: list[str], spot: bool,
         top: int) -> list[Recommendation]:
    rate = None
    if task == "preprocess":
        need = _raw_bytes(project) * 10 / 2 ** 30
        why = "raw data x 10 (pandas, audit)"
    elif task == "baseline":
        work = workload(project)
        words = sum(work.train_chars) / 6.0  # ~6 characters per English word with its space
        need = 3 * 2 * words * 12 / 2 ** 30
        why = "TF-IDF matrix of the train split x 3"
    else:
        params = project.configs.transformer.params_for(name)
        shape = fl.model_shape(name)
        batch = params.eval_batch_size or params.batch_size
        need = (4.0 * shape.params + shape.layers * batch * params.max_length * shape.hidden * 34 * 2) / 2 ** 30
        why = f"fp32 weights + a batch of {batch} x {params.max_length} tokens"
        work = workload(project)
        rate = sum(fl.eval_flops(shape, t) for t in work.tokens(params.max_length)) / max(work.train, 1)
    out = []
    for n in names:
        spec = catalog.require(n)
        if spec.gpus or spec.memory_gib - OS_GIB < need:
            continue
        quote = catalog.quote(n, spot)
        per_1k = None
        reason = f"{spec.vcpu} vCPU, {spec.memory_gib:g} GiB >= {need + OS_GIB:.1f} GiB ({why} + OS)"
        if rate:
            speed = catalog.utilisation * spec.peak_fp32_tflops * 1e12 / rate
            per_1k = 1000 / speed / 3600 * quote.usd_hour
            reason += f"; ~{speed:.0f} predictions/s at {catalog.utilisation:.0%} of {spec.peak_fp32_tflops:.3g} TFLOPS"
        out.append(Recommendation(task, n, quote.usd_hour, need + OS_GIB, spec.memory_gib, reason, None, per_1k))
    if not out:
        raise UserError(f"no CPU type in the catalog has {need + OS_GIB:.1f} GiB for {task}")
    return sorted(out, key=lambda r: (r.usd_hour, r.instance_type))[:top]
