"""The report's "Tuning" section from hand-written contract files: text, both figures, bad files skipped."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import matplotlib.image
import pytest

from multitype import layout
from multitype.storage import Storage
from multitype.tuning.report_section import history_figure, load_study, param_importances, tuning_section
from multitype.tuning.space import TuneConfig
from tests.bbc_processed import copy_root, trained_root

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SPACE = {"batch_size": {"choice": [16, 32]}, "learning_rate": {"loguniform": [1e-05, 0.0003]},
         "num_epochs": {"int": [2, 5], "log": False}, "warmup_ratio": {"uniform": [0.0, 0.2]}}
HEADER = "number,slug,state,value,seconds,params_batch_size,params_learning_rate,params_num_epochs,params_warmup_ratio"
# 8 trials: 5 complete, 2 pruned (last reported value), 1 failed; num_epochs as pandas writes an int column
# that also holds an empty cell
ROWS = [
    "0,minilm-t0,COMPLETE,0.912,61.5,16,2.1e-05,3.0,0.05",
    "1,minilm-t1,COMPLETE,0.944,80.2,32,8.5e-05,4.0,0.12",
    "2,minilm-t2,PRUNED,0.701,20.1,16,1.1e-05,2.0,0.18",
    "3,minilm-t3,COMPLETE,0.958,95.0,32,0.00015,5.0,0.02",
    "4,minilm-t4,FAIL,,3.2,16,0.00029,,",
    "5,minilm-t5,COMPLETE,0.971,77.7,16,4.1e-05,4.0,0.1",
    "6,minilm-t6,PRUNED,0.655,19.9,32,1.3e-05,3.0,0.01",
    "7,minilm-t7,COMPLETE,0.949,70.0,32,6e-05,2.0,0.15",
]


def _summary(**changes: Any) -> dict[str, Any]:
    summary = {"schema_version": 1, "study": "minilm", "kind": "transformer", "backend": "local",
               "model_name": "minilm", "metric": "macro_f1", "direction": "maximize", "space": SPACE,
               "fingerprint": "0" * 64,
               "trials": {"total": 8, "complete": 5, "pruned": 2, "failed": 1, "running": 0},
               "best": {"number": 5, "slug": "minilm-t5", "value": 0.971,
                        "params": {"batch_size": 16, "learning_rate": 4.1e-05, "num_epochs": 4, "warmup_ratio": 0.1},
                        "test_metrics": {"accuracy": 0.9683, "macro_f1": 0.9671}},
               "tuning_job": None, "intermediate": {"2": [[1, 0.701]], "6": [[1, 0.655]]}}
    summary.update(changes)
    return summary


def write_study(root: Path, name: str = "minilm", rows: list[str] = ROWS, header: str = HEADER,
                **changes: Any) -> None:
    folder = root / layout.TUNING
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.json").write_text(json.dumps(_summary(study=name, **changes), indent=2))
    (folder / f"{name}.csv").write_text("\n".join([header, *rows]) + "\n")


def _link(key: str) -> str:
    return f"../{key}"


def _assert_png(path: Path) -> None:
    assert path.read_bytes()[:8] == PNG_MAGIC, path
    height, width = matplotlib.image.imread(path).shape[:2]
    assert height > 250 and width > 500, (path, height, width)


def test_section_for_a_local_study(tmp_path: Path) -> None:
    write_study(tmp_path)
    storage = Storage(str(tmp_path))
    section = tuning_section(storage, 42, _link)
    figures = tmp_path / layout.FIGURES_RESULTS
    assert sorted(p.name for p in figures.iterdir()) == ["tuning_minilm_history.png", "tuning_minilm_importance.png"]
    for png in figures.iterdir():
        _assert_png(png)
    assert section.outputs == [layout.figure_results("tuning_minilm_history"),
                               layout.figure_results("tuning_minilm_importance")]
    assert section.inputs == ["results/tuning/minilm.json", "results/tuning/minilm.csv"] and section.problems == []
    text = "\n".join(section.lines)
    assert "## Tuning\n" in text and "### Study `minilm`\n" in text
    assert ("Transformer `minilm`, tuned locally with Optuna; val macro_f1 (maximize). Trials: 8 in all, "
            "5 complete, 2 pruned, 1 failed, 0 running.") in text
    assert ("**Best trial: 5** (`minilm-t5`), val macro_f1 0.9710; parameters: `batch_size` 16, "
            "`learning_rate` 4.1e-05, `num_epochs` 4, `warmup_ratio` 0.1.") in text
    assert "(its one re-evaluation on test): accuracy 0.9683, macro_f1 0.9671." in text
    table = [line for line in section.lines if line.startswith("| ")]
    assert table[0] == ("| rank | trial | slug | val macro_f1 | seconds | batch_size | learning_rate | num_epochs "
                        "| warmup_ratio |")
    assert [row.split(" | ")[1] for row in table[1:]] == ["5", "3", "7", "1", "0"]  # complete trials, best first
    assert table[1] == "| 1 | 5 | `minilm-t5` | 0.9710 | 78 | 16 | 4.1e-05 | 4 | 0.1 |"
    assert "![Optimisation history minilm](../figures/results/tuning_minilm_history.png)" in text
    shares = re.search(r"val metric, seeded\): (.*)\.\n", text)[1].split(", ")
    assert sorted(s.split(" ")[0] for s in shares) == [f"`{n}`" for n in sorted(SPACE)]
    values = [float(s.split(" ")[1]) for s in shares]
    assert values == sorted(values, reverse=True) and sum(values) == pytest.approx(1.0, abs=0.003)
    assert "![Parameter importance minilm](../figures/results/tuning_minilm_importance.png)" in text
    assert "Files: [results/tuning/minilm.csv](../results/tuning/minilm.csv)" in text


def test_importances_are_fanova_on_the_complete_trials_and_seeded(tmp_path: Path) -> None:
    write_study(tmp_path)
    study = load_study(Storage(str(tmp_path)), "minilm")
    scores = param_importances(study, 42)
    assert isinstance(scores, dict) and sorted(scores) == sorted(SPACE)
    assert sum(scores.values()) == pytest.approx(1.0) and all(v >= 0 for v in scores.values())
    assert param_importances(study, 42) == scores


def test_history_figure_marks_each_state_and_the_best_so_far(tmp_path: Path) -> None:
    write_study(tmp_path)
    fig = history_figure(load_study(Storage(str(tmp_path)), "minilm"))
    ax = fig.axes[0]
    best = next(line for line in ax.get_lines() if line.get_label() == "best so far")
    assert list(best.get_xdata()) == list(range(8))
    assert list(best.get_ydata()) == [0.912, 0.944, 0.944, 0.958, 0.958, 0.971, 0.971, 0.971]
    points = {c.get_label(): c.get_offsets()[:, 0].tolist() for c in ax.collections}
    assert points == {"complete (5)": [0, 1, 3, 5, 7], "pruned (2)": [2, 6], "failed (1, no value)": [4]}


def test_too_few_complete_trials_for_importances(tmp_path: Path) -> None:
    rows = [r.replace("COMPLETE", "PRUNED") if r[0] in "037" else r for r in ROWS]
    write_study(tmp_path, rows=rows)
    section = tuning_section(Storage(str(tmp_path)), 42, _link)
    text = "\n".join(section.lines)
    assert ("Parameter importance: too few complete trials for importances (2; fANOVA needs at least 3).") in text
    assert "Trials: 8 in all, 2 complete, 5 pruned, 1 failed, 0 running." in text
    assert "The summary counts 8 trial(s)" not in text
    assert sorted(p.name for p in (tmp_path / layout.FIGURES_RESULTS).iterdir()) == ["tuning_minilm_history.png"]
    _assert_png(tmp_path / layout.figure_results("tuning_minilm_history"))


def test_a_study_without_trials_and_one_whose_values_are_all_equal(tmp_path: Path) -> None:
    write_study(tmp_path, "empty", rows=[], best=None,
                trials={"total": 0, "complete": 0, "pruned": 0, "failed": 0, "running": 0})
    write_study(tmp_path, "flat", rows=[",".join(r.split(",")[:3] + ["0.9"] + r.split(",")[4:]) if "COMPLETE" in r
                                        else r for r in ROWS])
    section = tuning_section(Storage(str(tmp_path)), 42, _link)
    text = "\n".join(section.lines)
    empty, flat = text.split("### Study `empty`")[1].split("### Study `flat`")
    assert "Trials: 0 in all" in empty and "No best trial yet (no complete trial)." in empty
    assert "Optimisation history" not in empty
    assert "Parameter importance: importances not computed: " in flat  # fANOVA: zero variance
    assert section.outputs == [layout.figure_results("tuning_flat_history")] and section.problems == []


def test_a_sagemaker_baseline_study_minimising_with_a_list_choice(tmp_path: Path) -> None:
    space = {"C": {"loguniform": [0.01, 100.0]}, "ngram_range": {"choice": [[1, 1], [1, 2]]}}
    rows = ["0,tj-001-a,COMPLETE,0.31,40,0.5,\"[1, 2]\"", "1,tj-002-b,RUNNING,,,2.0,\"[1, 1]\"",
            "2,tj-003-c,COMPLETE,0.28,35,7.5,\"[1, 1]\"", "3,tj-004-d,COMPLETE,0.35,33,40.0,\"[1, 2]\""]
    write_study(tmp_path, "logreg-baseline", rows=rows,
                header="number,slug,state,value,seconds,params_C,params_ngram_range",
                kind="baseline", backend="sagemaker", model_name="logreg", direction="minimize", space=space,
                tuning_job="mt-logreg-tune", trials={"total": 4, "complete": 3, "pruned": 0, "failed": 0, "running": 1},
                best={"number": 2, "slug": "tj-003-c", "value": 0.28, "params": {"C": 7.5, "ngram_range": [1, 1]},
                      "test_metrics": None})
    study = load_study(Storage(str(tmp_path)), "logreg-baseline")
    assert [t.number for t in study.complete()] == [2, 0, 3] and study.trials[0].params["ngram_range"] == [1, 2]
    section = tuning_section(Storage(str(tmp_path)), 42, _link)
    text = "\n".join(section.lines)
    assert "Baseline `logreg`, tuned by SageMaker tuning job `mt-logreg-tune`; val macro_f1 (minimize)." in text
    assert "not re-evaluated on test yet" in text and "`ngram_range` [1, 1]" in text
    assert len(section.outputs) == 2


def test_a_real_optuna_study_written_with_pandas_gives_the_same_importances(tmp_path: Path) -> None:
    """The rebuilt study is faithful: fANOVA on it equals fANOVA on the study the trials came from."""
    import optuna
    import pandas as pd

    from multitype.tuning.space import suggest

    config = TuneConfig.model_validate({"direction": "minimize", "space": {
        "C": {"loguniform": [0.01, 100.0]}, "ngram_range": {"choice": [[1, 1], [1, 2]]},
        "min_df": {"int": [1, 3]}, "sublinear_tf": {"choice": [True, False]}}})

    def objective(trial: optuna.Trial) -> float:
        params = suggest(trial, config.distributions())
        if trial.number == 4:
            raise ValueError("out of memory")  # a failed trial: params, no value
        loss = abs(math.log10(params["C"]) - 0.5) + 0.1 * params["min_df"] + 0.2 * (params["ngram_range"] == [1, 1])
        if trial.number in (2, 6):
            trial.report(loss, 1)
            raise optuna.TrialPruned()
        return loss

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(direction="minimize", sampler=optuna.samplers.TPESampler(seed=3))
    study.optimize(objective, n_trials=9, catch=(ValueError,))
    states = {"COMPLETE": "COMPLETE", "PRUNED": "PRUNED", "FAIL": "FAIL"}
    frame = pd.DataFrame([{"number": t.number, "slug": f"logreg-t{t.number}", "state": states[t.state.name],
                           "value": t.value if t.value is not None else (t.intermediate_values or {}).get(1),
                           "seconds": 1.5, **{f"params_{n}": t.params.get(n) for n in sorted(config.space_spec())}}
                          for t in study.trials])
    frame.to_csv(tmp_path / "trials.csv", index=False)  # pandas' own spelling: None -> empty, ints in floats
    best = study.best_trial
    write_study(tmp_path, "logreg", rows=(tmp_path / "trials.csv").read_text().splitlines()[1:],
                header=(tmp_path / "trials.csv").read_text().splitlines()[0], kind="baseline",
                model_name="logreg", direction="minimize", space=config.space_spec(),
                fingerprint=config.fingerprint(), trials={"total": 9, "complete": 6, "pruned": 2, "failed": 1,
                                                          "running": 0},
                best={"number": best.number, "slug": f"logreg-t{best.number}", "value": best.value,
                      "params": {n: json.loads(v) if n == "ngram_range" else v for n, v in best.params.items()},
                      "test_metrics": None})
    loaded = load_study(Storage(str(tmp_path)), "logreg")
    assert loaded.counts() == {"COMPLETE": 6, "PRUNED": 2, "FAIL": 1, "RUNNING": 0}
    assert loaded.complete()[0].number == best.number and loaded.complete()[0].value == best.value
    verbosity = optuna.logging.get_verbosity()
    rebuilt = param_importances(loaded, 7)
    assert optuna.logging.get_verbosity() == verbosity
    original = optuna.importance.get_param_importances(
        study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=7))
    assert rebuilt == pytest.approx({n: float(v) for n, v in original.items()})


BAD = {
    "json": ("minilm.json", lambda t: t[:40],
             "results/tuning/minilm.json: not valid JSON (line 3: Unterminated string"),
    "schema": ("minilm.json", lambda t: t.replace('"schema_version": 1', '"schema_version": 2'),
               "results/tuning/minilm.json: 'schema_version' Input should be 1"),
    "header": ("minilm.csv", lambda t: t.replace("params_batch_size,params_learning_rate",
                                                 "params_learning_rate,params_batch_size"),
               "results/tuning/minilm.csv: header is 'number,slug,state,value,seconds,params_learning_rate,"),
    "state": ("minilm.csv", lambda t: t.replace("PRUNED", "KILLED", 1),
              "results/tuning/minilm.csv line 4: state 'KILLED' is not one of COMPLETE, PRUNED, FAIL, RUNNING"),
    "outside": ("minilm.csv", lambda t: t.replace("0.00015", "0.015"),
                "results/tuning/minilm.csv line 5: params_learning_rate 0.015 is outside the space [1e-05, 0.0003]"),
    "choice": ("minilm.csv", lambda t: t.replace("COMPLETE,0.912,61.5,16", "COMPLETE,0.912,61.5,24"),
               "results/tuning/minilm.csv line 2: params_batch_size '24' is not one of the choices [16, 32]"),
    "value": ("minilm.csv", lambda t: t.replace("0.944", "n/a"),
              "results/tuning/minilm.csv line 3: value 'n/a' is not a number"),
    "binary": ("minilm.csv", lambda t: "\udcff", "results/tuning/minilm.csv: not UTF-8 text"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_bad_study_file_is_one_line_and_the_study_is_skipped(tmp_path: Path, case: str) -> None:
    name, corrupt, message = BAD[case]
    write_study(tmp_path)
    write_study(tmp_path, "minilm-b")  # a good study next to it still gets its block
    path = tmp_path / layout.TUNING / name
    if case == "binary":
        path.write_bytes(b"\xff\xfe\x00bad")
    else:
        path.write_text(corrupt(path.read_text()))
    section = tuning_section(Storage(str(tmp_path)), 42, _link)
    assert len(section.problems) == 1 and section.problems[0].startswith(message), section.problems
    assert section.problems[0].endswith("; study skipped")
    bad_lines = [line for line in section.lines if "minilm." in line and "skipped" in line]
    assert bad_lines == [f"- {section.problems[0]}."]
    assert "### Study `minilm-b`" in section.lines and "### Study `minilm`" not in section.lines
    assert sorted(p.name for p in (tmp_path / layout.FIGURES_RESULTS).iterdir()) == [
        "tuning_minilm-b_history.png", "tuning_minilm-b_importance.png"]


def test_a_summary_without_its_csv(tmp_path: Path) -> None:
    write_study(tmp_path)
    (tmp_path / layout.tuning_csv("minilm")).unlink()
    section = tuning_section(Storage(str(tmp_path)), 42, _link)
    assert section.problems == ["results/tuning/minilm.csv: not found; study skipped"]


def test_no_tuning_results_no_section(tmp_path: Path) -> None:
    assert tuning_section(Storage(str(tmp_path)), 42, _link).lines == []


@pytest.mark.slow  # the trained BBC root: ~13 s once a session
def test_report_command_adds_the_section_and_warns_about_a_bad_study(tmp_path: Path,
                                                                    tmp_path_factory: pytest.TempPathFactory,
                                                                    cli) -> None:
    src, configs = trained_root(tmp_path_factory)
    root = copy_root(src, tmp_path / "root")
    write_study(root)
    write_study(root, "broken")
    (root / layout.tuning_csv("broken")).write_text("number,slug\n")
    res = cli("report", "--root", root, "--config-dir", configs)
    assert res.exit_code == 0, res.stderr
    assert "warning: results/tuning/broken.csv: header is 'number,slug', expected 'number,slug,state," in res.stderr
    report = (root / layout.REPORT).read_text()
    tuning = report.split("## Tuning\n", 1)[1].split("\n## ", 1)[0]
    assert "### Study `minilm`" in tuning and "- results/tuning/broken.csv: header is 'number,slug'" in tuning
    assert "![Optimisation history minilm](../figures/results/tuning_minilm_history.png)" in tuning
    assert "- [results/tuning/minilm.csv](tuning/minilm.csv)" in report  # in the sources
    for name in ("tuning_minilm_history", "tuning_minilm_importance"):
        _assert_png(root / layout.figure_results(name))
    html = (root / layout.REPORT_HTML).read_text()
    assert html.count("data:image/png;base64,") == report.count("![")  # every figure embedded, the tuning ones too
    manifests = [json.loads(p.read_text()) for p in (root / layout.RUNS).glob("*/manifest.json")]
    manifest = next(m for m in manifests if layout.REPORT in m["outputs"])
    assert {"results/tuning/minilm.json", "results/tuning/minilm.csv"} <= set(manifest["inputs"])
    assert layout.figure_results("tuning_minilm_importance") in manifest["outputs"]
