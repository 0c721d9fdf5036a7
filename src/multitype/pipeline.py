"""``multitype run``: prepare -> baselines -> transformer -> report, in one process."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console

from multitype.project import Project

console = Console(stderr=True)


def _stage(project: Project, command: str) -> Project:
    """A sub-run of the pipeline: same root and configs, its own run id and manifest."""
    return Project(storage=project.storage, configs=project.configs, command=command, outputs=project.outputs)


def run_pipeline(project: Project, transformer: bool = True, force: bool = False) -> dict[str, Any]:
    """Run every local stage on the configured data (embedded BBC News by default).

    Each stage writes its own manifest under ``runs/``; the transformer step uses
    the ``run`` section of ``models_transformer.yaml`` (CPU-sized by default).
    Returns the test accuracy of every model trained.
    """
    from multitype.baselines import train_baselines
    from multitype.data.prepare import prepare
    from multitype.report import build_report

    started = time.perf_counter()
    console.rule("[bold]1/4 prepare")
    prepare(_stage(project, "prepare"), force=force)
    console.rule("[bold]2/4 baselines")
    stages = [_stage(project, "train baseline")]
    scores = {name: rec["accuracy"] for name, rec in train_baselines(stages[0]).items()}
    if transformer:
        from multitype.transformer.train import train_transformer

        params = project.configs.transformer.run_params()
        console.rule(f"[bold]3/4 transformer ({params.model_name})")
        stages.append(_stage(project, "train transformer"))
        record = train_transformer(stages[-1], params)
        scores[record["model"]] = record["accuracy"]
    else:
        console.rule("[bold]3/4 transformer (skipped: --no-transformer)")
    console.rule("[bold]4/4 report")
    report_key = build_report(_stage(project, "report"))
    if project.configs.project.tracking.mlflow:
        from multitype.experiments import tracking

        tracking.attach_report(project.storage, [stage.run_id for stage in stages],
                               lambda message: console.print(f"warning: {message}", markup=False, highlight=False))
    seconds = time.perf_counter() - started
    for model, acc in scores.items():
        console.print(f"  {model:<24} test accuracy {acc:.4f}")
    console.print(f"done in {seconds:.0f} s; report: {project.storage.url(report_key)}")
    return {"test_accuracy": scores, "report": report_key, "seconds": seconds}
