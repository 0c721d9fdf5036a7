"""``multitype tune``: an Optuna study of training runs on this machine, resumable and pruned.

The loop asks Optuna for a trial, trains it (:mod:`multitype.tuning.objective`), tells Optuna the val metric
(or that the trial was pruned or failed) and rewrites ``results/tuning/<study>.csv/.json``. A trial that was
RUNNING when an earlier ``tune`` was killed is continued first, under its own number and slug, from its own
checkpoints, so no trial runs twice and the table keeps one row per trial. With ``--parallel K`` the same
loop runs in K worker processes that share the study; the parent waits for them and then evaluates the
best trial's model on test, once.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from multitype import interrupts, layout
from multitype.errors import ConfigError, Interrupted, ModelError, UserError
from multitype.project import Project
from multitype.tuning import objective, table
from multitype.tuning.space import TuneConfig, suggest
from multitype.tuning.study import StudyStore, open_store, open_study

KINDS = ("transformer", "baseline")
_TEST_ATTR = "test_evaluation"  # study user attr: {"number": best trial, "test_metrics": {...}}


@dataclass
class Request:
    kind: str
    model_name: str
    study: str
    trials: int
    timeout_s: float | None = None
    parallel: int = 1
    # set for a --parallel worker: its index and the trials left RUNNING by a killed tune that it continues
    worker: int | None = None
    resume_numbers: list[int] = field(default_factory=list)
    journal_dir: str | None = None
    config_dir: str = "configs"  # handed to --parallel workers
    # keep every finished trial's final model and checkpoints (default: only the best trial's stay)
    keep_trial_models: bool = False


def tune_config(project: Project, kind: str) -> TuneConfig:
    """The ``tune:`` block in force; a ConfigError saying what to add when there is none."""
    config = project.configs.transformer if kind == "transformer" else project.configs.baseline
    if config.tune is None:
        name = "models_transformer.yaml" if kind == "transformer" else "models_baseline.yaml"
        example = ("learning_rate: {loguniform: [1.0e-5, 3.0e-4]}, num_epochs: {int: [2, 4]}" if kind == "transformer"
                   else "C: {loguniform: [0.01, 100.0]}, ngram_range: {choice: [[1, 1], [1, 2]]}")
        raise ConfigError(f"{name} has no 'tune:' block; add e.g. tune: {{metric: macro_f1, trials: 20, "
                          f"space: {{{example}}}}} (see the README's Tuning section)")
    return config.tune


def check_model(project: Project, kind: str, model_name: str) -> None:
    """An unknown model is an error before any trial starts."""
    if kind == "baseline":
        from multitype.baselines import check_models

        check_models([model_name])
        return
    from multitype.transformer import models

    source = models.resolve_model(model_name)
    try:
        models.load_config(source)
    except ModelError:
        raise
    except Exception as exc:  # a hub id that is not in the cache, offline
        raise ModelError(f"unknown model '{model_name}' ({exc}); use 'minilm', a local model folder or a hub id "
                         f"in the cache (models_transformer.yaml lists {', '.join(project.configs.transformer.models)})"
                         ) from None


def default_model(project: Project, kind: str) -> str:
    return project.configs.transformer.defaults.model_name if kind == "transformer" else "logreg"


Say = Callable[[str], None]


def tune(project: Project, request: Request, say: Say, pruner: Any = None) -> dict[str, Any] | None:
    """Run (or continue) the study; return the results summary (None from a ``--parallel`` worker).

    Raises
    ------
    UserError
        No ``tune:`` block, an unknown model, no val split, a study started under another space.
    Interrupted
        SIGTERM/SIGINT: the trial in progress saved a checkpoint and stays RUNNING for the next ``tune``.
    """
    tune_cfg = tune_config(project, request.kind)
    check_model(project, request.kind, request.model_name)
    objective.check_val_split(project)
    store = open_store(project.storage, request.study, request.journal_dir)
    try:
        study = open_study(store, tune_cfg, request.kind, request.model_name, project.configs.project.seed, pruner)
        loop = _Loop(project, request, tune_cfg, store, study, say)
        with interrupts.stop_on_signals(loop.forward):
            if request.parallel > 1 and request.worker is None:
                loop.run_workers()
            else:
                loop.run()
        if request.worker is not None:
            return None
        return loop.finish()
    finally:
        if store.remote and request.journal_dir is None:  # the journal's local copy (pushed after each trial)
            shutil.rmtree(store.local, ignore_errors=True)


class _Loop:
    def __init__(self, project: Project, request: Request, tune_cfg: TuneConfig, store: StudyStore, study: Any,
                 say: Say) -> None:
        self.project, self.request, self.tune_cfg, self.store, self.study, self.say = (
            project, request, tune_cfg, store, study, say)
        self.started = time.monotonic()
        self.children: list[subprocess.Popen[bytes]] = []

    def forward(self, signum: int) -> None:
        for child in self.children:
            if child.poll() is None:
                child.send_signal(signum)

    # -- one process ------------------------------------------------------------------------------------
    def stale(self) -> list[int]:
        """Trials left RUNNING by a killed ``tune`` (nobody else runs this study now)."""
        return [t.number for t in self.study.get_trials(deepcopy=False) if t.state.name == "RUNNING"]

    def run(self) -> None:
        import optuna

        resume = self.stale() if self.request.worker is None else list(self.request.resume_numbers)
        for number in resume:
            frozen = self.study.get_trials(deepcopy=False)[number]
            self._check_stop()
            self.say(f"continuing trial {frozen.user_attrs.get('slug', number)}, left running by an earlier tune")
            self._trial(optuna.trial.Trial(self.study, frozen._trial_id), resume=True)
        while True:
            self._check_stop()
            if self._timed_out():
                self.say(f"--timeout reached after {time.monotonic() - self.started:.0f}s: no new trials")
                return
            with self._ask_lock():
                if len(self.study.get_trials(deepcopy=False)) >= self.request.trials:
                    return
                trial = self.study.ask()
            self._trial(trial, resume=False)

    def _timed_out(self) -> bool:
        return self.request.timeout_s is not None and time.monotonic() - self.started >= self.request.timeout_s

    def _check_stop(self) -> None:
        reason = interrupts.stop_requested()
        if reason:
            raise Interrupted(f"{reason} between trials; rerun the same command to continue the study")

    @contextlib.contextmanager
    def _ask_lock(self) -> Iterator[None]:
        """Count and ask under one lock, so K workers never start more trials than --trials."""
        with open(self.store.local / ".ask.lock", "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _trial(self, trial: Any, resume: bool) -> None:
        import optuna

        request, tune_cfg = self.request, self.tune_cfg
        params = suggest(trial, tune_cfg.distributions())
        slug = table.trial_slug(request.model_name, trial.number)
        trial.set_user_attr("slug", slug)
        trial.set_user_attr("params", params)
        self._publish()  # the table shows it RUNNING; on S3 a killed tune leaves it to be continued
        shown = ", ".join(f"{k}={_short(v)}" for k, v in params.items())
        self.say(f"trial {slug} ({trial.number + 1} of {request.trials}): {shown}")
        before = float(trial.storage.get_trial(trial._trial_id).user_attrs.get("seconds") or 0.0)
        start = time.perf_counter()
        tag = objective.trial_tag(request.study, trial.number)

        def report(epoch: int, value: float | None) -> bool:
            if value is None:
                return False
            trial.report(value, epoch)
            return trial.should_prune()

        def seconds() -> float:
            return round(before + time.perf_counter() - start, 2)

        try:
            if request.kind == "transformer":
                outcome = objective.transformer_trial(self.project, request.model_name, params, tune_cfg.metric,
                                                      slug, report, resume, tag)
            else:
                outcome = objective.baseline_trial(self.project, request.model_name, params, tune_cfg.metric, slug,
                                                   tag)
        except Interrupted:
            trial.set_user_attr("seconds", seconds())
            self._publish()
            raise
        except UserError as exc:
            # the same problem would stop every trial (data, model, storage): stop the study, say why
            trial.set_user_attr("seconds", seconds())
            trial.set_user_attr("error", str(exc))
            self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
            self._publish()
            raise
        except Exception as exc:
            trial.set_user_attr("seconds", seconds())
            trial.set_user_attr("error", f"{type(exc).__name__}: {exc}")
            self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
            self.say(f"trial {slug} FAILED: {type(exc).__name__}: {exc}")
            traceback.print_exc(file=sys.stderr)
            self._publish()
            return
        trial.set_user_attr("seconds", seconds())
        if outcome.pruned:
            self.study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            state = "PRUNED"
        else:
            self.study.tell(trial, outcome.value)
            state = "COMPLETE"
        best = table.best_trial(self.study)
        best_text = f"; best so far: {best.user_attrs.get('slug')}, {best.value:.4f}" if best is not None else ""
        value = f"val {tune_cfg.metric} {outcome.value:.4f}" if outcome.value is not None else "no value"
        self.say(f"trial {slug} {state}: {value} in {seconds():.0f}s{best_text}")
        self._publish()

    def _publish(self) -> None:
        """The table and summary as the study stands, and (S3 roots) the journal."""
        test = self.study.user_attrs.get(_TEST_ATTR)
        best = table.best_trial(self.study)
        metrics = test["test_metrics"] if test and best is not None and test["number"] == best.number else None
        table.write_results(self.project.outputs.results, self.study, self.tune_cfg, self.request.kind,
                            self.request.model_name, metrics)
        self.store.push()

    # -- K worker processes -----------------------------------------------------------------------------
    def run_workers(self) -> None:
        request = self.request
        stale = self.stale()
        argv = [sys.executable, "-m", "multitype", "tune", request.kind, "--model-name", request.model_name,
                "--study", request.study, "--trials", str(request.trials), "--root", self.project.storage.root,
                "--config-dir", request.config_dir]
        if request.timeout_s is not None:
            argv += ["--timeout", f"{max(request.timeout_s - (time.monotonic() - self.started), 1):.0f}s"]
        # K trainers share the cores instead of each starting a thread per core
        threads = str(max(1, (os.cpu_count() or 1) // request.parallel))
        env = {"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, **os.environ}
        for i in range(request.parallel):
            mine = stale[i::request.parallel]
            extra = ["--worker", str(i), "--journal-dir", str(self.store.local)]
            if mine:
                extra += ["--resume-trials", ",".join(map(str, mine))]
            self.children.append(subprocess.Popen([*argv, *extra], env=env, preexec_fn=_end_with_parent))
        self.say(f"{request.parallel} worker processes share study '{request.study}'")
        codes = [child.wait() for child in self.children]
        self.study = open_study(self.store, self.tune_cfg, request.kind, request.model_name,
                                self.project.configs.project.seed)
        self._publish()
        if interrupts.stop_requested() or 143 in codes:
            raise Interrupted("stopped; the workers saved their trials' checkpoints, rerun the same command to "
                              "continue the study")
        if any(code not in (0,) for code in codes):
            raise UserError(f"a tune worker exited with {', '.join(str(c) for c in codes if c)}; its lines above "
                            "say why; rerun the same command to continue the study")

    # -- the end -------------------------------------------------------------------------------------------
    def finish(self) -> dict[str, Any]:
        """The best trial's model on test, once per best trial; the final table."""
        best = table.best_trial(self.study)
        done = self.study.user_attrs.get(_TEST_ATTR)
        if best is not None and not (done and done["number"] == best.number):
            slug = best.user_attrs.get("slug", table.trial_slug(self.request.model_name, best.number))
            self.say(f"best trial {slug}: evaluating its model on test, once")
            metrics = objective.evaluate_on_test(self.project, self.request.kind, slug, self.request.study)
            self.study.set_user_attr(_TEST_ATTR, {"number": best.number, "test_metrics": metrics})
        self._publish()
        if not self.request.keep_trial_models:
            self._drop_trial_models(best)
        done = self.study.user_attrs.get(_TEST_ATTR)
        best = table.best_trial(self.study)
        metrics = done["test_metrics"] if done and best is not None and done["number"] == best.number else None
        return table.write_results(self.project.outputs.results, self.study, self.tune_cfg, self.request.kind,
                                   self.request.model_name, metrics)


    def _drop_trial_models(self, best: Any) -> None:
        """Delete the final models and checkpoints of finished trials other than the best.

        A 20-trial MiniLM study would otherwise keep 20 final models (~88 MB each) and their resume
        checkpoints. Trials still RUNNING keep theirs (a later ``tune`` continues them), and so does the
        best, which the test evaluation and ``--apply`` stand on; metrics files and manifests stay.
        """
        storage = self.project.storage
        slugs = [t.user_attrs.get("slug") for t in self.study.get_trials(deepcopy=False)
                 if t.state.is_finished() and (best is None or t.number != best.number)]
        slugs = [slug for slug in slugs if slug]
        if not slugs:
            return
        checkpoints = storage.listdir(layout.CHECKPOINTS) if storage.isdir(layout.CHECKPOINTS) else []
        dropped = 0
        for slug in slugs:
            keys = [layout.final_model(slug)] + [f"{layout.CHECKPOINTS}/{name}" for name in checkpoints
                                                 if name.startswith(f"{slug}-")]
            for key in keys:
                if storage.exists(key):
                    storage.rm(key, recursive=True)
                    dropped += 1
        if dropped:
            self.say(f"removed the models and checkpoints of {len(slugs)} finished trial(s) other than the best "
                     "(--keep-trial-models keeps them)")


def _end_with_parent() -> None:
    """In a worker (Linux): SIGTERM when the parent dies, even by SIGKILL, so it checkpoints and stops too."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)

