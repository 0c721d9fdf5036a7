"""``multitype tune transformer|baseline``: a local Optuna study over the ``tune:`` search space."""

from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer

from multitype import layout
from multitype.cli._common import ConfigDirOpt, RootOpt, console, project
from multitype.errors import UserError

app = typer.Typer(help="Hyperparameter tuning with Optuna on this machine (resumable, pruned).",
                  no_args_is_help=True)

ModelNameOpt = Annotated[Optional[str], typer.Option(
    "--model-name", help="Model to tune (transformer: default models_transformer.yaml's; baseline: logreg).")]
StudyOpt = Annotated[Optional[str], typer.Option(
    "--study", help="Study name (default: the model; '<model>-baseline' for baselines). The same name continues it.")]
TrialsOpt = Annotated[Optional[int], typer.Option("--trials", help="Trials in the study in all (default: tune.trials).")]
TimeoutOpt = Annotated[Optional[str], typer.Option(
    "--timeout", help="Start no new trial after this long, e.g. 90m, 2h (the one running finishes).")]
ParallelOpt = Annotated[int, typer.Option("--parallel", help="Trials at once, each in its own process.")]
ApplyOpt = Annotated[bool, typer.Option(
    "--apply", help="Write the best parameters back as a models: override in the config file.")]
# internal: how a --parallel parent starts its workers
KeepOpt = Annotated[bool, typer.Option(
    "--keep-trial-models", help="Keep every finished trial's final model and checkpoints (default: only the best's).")]
WorkerOpt = Annotated[Optional[int], typer.Option("--worker", hidden=True)]
JournalDirOpt = Annotated[Optional[str], typer.Option("--journal-dir", hidden=True)]
ResumeTrialsOpt = Annotated[Optional[str], typer.Option("--resume-trials", hidden=True)]


def _run(kind: str, model_name: str | None, study: str | None, trials: int | None, timeout: str | None,
         parallel: int, apply: bool, root: str | None, config_dir: str, worker: int | None,
         journal_dir: str | None, resume_trials: str | None, keep_trial_models: bool = False) -> None:
    from multitype.cloud.cost import parse_duration
    from multitype.tuning.local import Request, default_model, tune, tune_config
    from multitype.tuning.study import check_study_name, default_study_name

    if trials is not None and trials < 1:
        raise UserError(f"--trials must be at least 1, got {trials}")
    if parallel < 1:
        raise UserError(f"--parallel must be at least 1, got {parallel}")
    timeout_s = parse_duration(timeout, "--timeout") * 3600 if timeout is not None else None
    if study is not None:
        check_study_name(study)
    proj = project(f"tune {kind}", root, config_dir)
    tune_cfg = tune_config(proj, kind)
    name = model_name or default_model(proj, kind)
    request = Request(kind=kind, model_name=name, study=study or default_study_name(kind, name),
                      trials=trials or tune_cfg.trials, timeout_s=timeout_s, parallel=parallel, worker=worker,
                      resume_numbers=[int(n) for n in resume_trials.split(",")] if resume_trials else [],
                      journal_dir=journal_dir, config_dir=config_dir, keep_trial_models=keep_trial_models)
    label = f"[worker {worker}] " if worker is not None else ""
    terminal = console.is_terminal

    def say(line: str) -> None:
        if terminal:
            console.print(f"[bold cyan]tune[/] {label}{line}", highlight=False)
        else:
            print(f"tune: {label}{line}", file=sys.stderr, flush=True)

    summary = tune(proj, request, say)
    if summary is None:
        return
    best = summary["best"]
    counts = summary["trials"]
    say(f"study '{request.study}': {counts['complete']} complete, {counts['pruned']} pruned, "
        f"{counts['failed']} failed of {counts['total']}; table: "
        f"{proj.outputs.results.url(layout.tuning_csv(request.study))}")
    if best is None:
        say("no trial completed" + (": see the errors above" if counts["failed"] else ""))
        if counts["failed"]:
            raise typer.Exit(1)
        return
    test = best.get("test_metrics") or {}
    say(f"best: {best['slug']}: val {summary['metric']} {best['value']:.4f}"
        + (f", test {summary['metric']} {test[summary['metric']]:.4f}" if summary["metric"] in test else "")
        + f"; params {best['params']}")
    if apply:
        _apply(config_dir, kind, name, best["params"], say)


def _apply(config_dir: str, kind: str, model_name: str, params: dict, say) -> None:  # type: ignore[no-untyped-def]
    try:
        from multitype.tuning.apply import apply_best
    except ImportError:
        raise UserError("--apply needs multitype.tuning.apply, which this build does not have; copy the best "
                        "params above into the models: section by hand") from None
    from multitype.storage import storage_options

    changed = apply_best(config_dir, kind, model_name, params, storage_options(config_dir))
    for line in changed or ["(the config already had these values)"]:
        say(f"applied: {line}")


@app.command("transformer")
def transformer(
    model_name: ModelNameOpt = None, study: StudyOpt = None, trials: TrialsOpt = None, timeout: TimeoutOpt = None,
    parallel: ParallelOpt = 1, apply: ApplyOpt = False, root: RootOpt = None, config_dir: ConfigDirOpt = "configs",
    worker: WorkerOpt = None, journal_dir: JournalDirOpt = None, resume_trials: ResumeTrialsOpt = None,
    keep_trial_models: KeepOpt = False,
) -> None:
    """Tune a transformer's fine-tuning (models_transformer.yaml tune:); trials are pruned per epoch."""
    _run("transformer", model_name, study, trials, timeout, parallel, apply, root, config_dir, worker,
         journal_dir, resume_trials, keep_trial_models)


@app.command("baseline")
def baseline(
    model_name: ModelNameOpt = None, study: StudyOpt = None, trials: TrialsOpt = None, timeout: TimeoutOpt = None,
    parallel: ParallelOpt = 1, apply: ApplyOpt = False, root: RootOpt = None, config_dir: ConfigDirOpt = "configs",
    worker: WorkerOpt = None, journal_dir: JournalDirOpt = None, resume_trials: ResumeTrialsOpt = None,
    keep_trial_models: KeepOpt = False,
) -> None:
    """Tune a TF-IDF baseline (models_baseline.yaml tune:): C, n-grams, min_df, ..."""
    _run("baseline", model_name, study, trials, timeout, parallel, apply, root, config_dir, worker,
         journal_dir, resume_trials, keep_trial_models)
