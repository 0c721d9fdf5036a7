"""The CLI's contract: usage and config errors are one line and exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import run_cli_process, write_configs


def test_help_lists_commands(cli) -> None:
    res = cli("--help")
    assert res.exit_code == 0
    for command in ("prepare", "train", "report", "predict", "run", "sync", "init"):
        assert command in res.stdout


def test_unknown_option_is_exit_2(cli) -> None:
    res = cli("report", "--bogus")
    assert res.exit_code == 2
    assert res.stderr.startswith("error: No such option: --bogus")
    assert len(res.stderr.strip().splitlines()) == 1


def test_config_error_is_one_line(cli, config_dir: Path, tmp_path: Path) -> None:
    (config_dir / "project.yaml").write_text("sead: 1\n")
    res = cli("report", "--root", tmp_path / "root", "--config-dir", config_dir)
    assert res.exit_code == 2
    assert res.stderr == f"error: {config_dir}/project.yaml: unknown key 'sead' (remove it or check its spelling)\n"


def test_missing_config_dir(cli, tmp_path: Path) -> None:
    res = cli("prepare", "--root", tmp_path, "--config-dir", tmp_path / "nowhere")
    assert res.exit_code == 2
    assert "file not found (run 'multitype init'" in res.stderr
    assert "Traceback" not in res.stderr


def test_init_writes_loadable_configs_and_refuses_overwrite(cli, tmp_path: Path) -> None:
    target = tmp_path / "cfg"
    assert cli("init", "--config-dir", target).exit_code == 0
    assert sorted(p.name for p in target.iterdir()) == [
        "data_config.yaml", "models_baseline.yaml", "models_transformer.yaml", "project.yaml"]
    before = (target / "project.yaml").read_text()
    res = cli("init", "--config-dir", target)
    assert res.exit_code == 2 and "--force" in res.stderr
    assert (target / "project.yaml").read_text() == before


def test_console_script_exit_code_in_subprocess(tmp_path: Path) -> None:
    res = run_cli_process("train", "baseline", "--root", tmp_path, "--config-dir", tmp_path / "none")
    assert res.exit_code == 2
    assert res.stderr.startswith("error: ") and "Traceback" not in res.stderr


def _tiny_processed_root(root: Path) -> Path:
    """A root with hand-written processed splits (4 classes), enough for `train baseline` to fit."""
    words = {"business": "shares profit market bank", "politics": "minister vote party election",
             "sports": "match goal team season", "tech": "software phone computer internet"}
    processed = root / "data" / "processed"
    processed.mkdir(parents=True)
    for split, n in (("train", 6), ("val", 2), ("test", 2)):
        rows = [f"{words[label]} story {i},{label}" for label in words for i in range(n)]
        (processed / f"{split}_4class.csv").write_text("text,label\n" + "\n".join(rows) + "\n", encoding="utf-8")
    (processed / "labels.json").write_text('{"business": 0, "politics": 1, "sports": 2, "tech": 3}\n')
    return root


@pytest.mark.parametrize("min_df", ["0", "-1", "1.5", "'2'"])
def test_bad_min_df_is_exit_2_naming_the_key(tmp_path: Path, min_df: str) -> None:
    # before the config model bounded it, scikit-learn refused min_df: 0 with a traceback (exit 1)
    root = _tiny_processed_root(tmp_path / "root")
    configs = write_configs(tmp_path / "configs", baseline=f"tfidf: {{min_df: {min_df}}}\n")
    res = run_cli_process("train", "baseline", "--root", root, "--config-dir", configs)
    assert res.exit_code == 2, res.stderr
    assert res.stderr.startswith(f"error: {configs}/models_baseline.yaml: 'tfidf.min_df' must be a document count")
    assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr
    assert not (root / "results").exists()


def test_good_min_df_trains(tmp_path: Path, cli) -> None:
    root = _tiny_processed_root(tmp_path / "root")
    configs = write_configs(tmp_path / "configs", baseline="tfidf: {min_df: 1}\n")
    res = cli("train", "baseline", "--root", root, "--config-dir", configs)
    assert res.exit_code == 0, res.stderr
    assert (root / "results" / "baseline" / "logreg_metrics.json").is_file()


# --- --debug: a traceback added, the exit code kept, and only the flag removed -----------------
def test_debug_keeps_exit_code_and_adds_traceback(cli, tmp_path: Path) -> None:
    res = cli("report", "--root", tmp_path / "root", "--config-dir", tmp_path / "nowhere", "--debug")
    assert res.exit_code == 2
    assert "Traceback (most recent call last)" in res.stderr and "ConfigError" in res.stderr
    assert res.stderr.splitlines()[-1].startswith(f"error: {tmp_path}/nowhere/project.yaml: file not found")


def test_debug_in_a_subprocess_keeps_exit_code(tmp_path: Path) -> None:
    res = run_cli_process("--debug", "train", "baseline", "--root", tmp_path, "--config-dir", tmp_path / "none")
    assert res.exit_code == 2
    assert "Traceback" in res.stderr and res.stderr.splitlines()[-1].startswith("error: ")
    env_res = run_cli_process("train", "baseline", "--root", tmp_path, "--config-dir", tmp_path / "none",
                              env={"MULTITYPE_DEBUG": "1"})
    assert env_res.exit_code == 2 and "Traceback" in env_res.stderr


def test_debug_as_an_option_value_is_a_file_name(cli, config_dir: Path, tmp_path: Path) -> None:
    # a file named --debug: the value of --input, not the flag (no traceback, the name reaches prepare)
    res = cli("prepare", "--input", "--debug", "--root", tmp_path / "root", "--config-dir", config_dir)
    assert res.exit_code == 2
    assert res.stderr == ("error: input '--debug' not found; check the path (--input or 'input' in "
                          "data_config.yaml)\n")


def test_debug_value_file_is_found(cli, config_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "--debug").write_text('[{"text": "x", "label": "a"}]', encoding="utf-8")
    res = cli("prepare", "--input", "--debug", "--root", tmp_path / "root", "--config-dir", config_dir)
    # prepare found the file named --debug and asks for its format (it has no extension)
    assert res.exit_code == 2 and "Traceback" not in res.stderr
    assert res.stderr.startswith("error: cannot tell the format of '--debug' from its extension")


@pytest.mark.parametrize(("args", "expected", "debug"), [
    (["--debug", "report"], ["report"], True),
    (["report", "--debug", "--root", "r"], ["report", "--root", "r"], True),
    (["prepare", "--input", "--debug"], ["prepare", "--input", "--debug"], False),
    (["prepare", "--input=--debug", "--debug"], ["prepare", "--input=--debug"], True),
    (["prepare", "--force", "--debug"], ["prepare", "--force"], True),
    (["train", "parallel", "--models", "a", "--", "--debug"], ["train", "parallel", "--models", "a", "--", "--debug"],
     False),
    (["train", "parallel", "--models", "--debug", "b", "--debug"], ["train", "parallel", "--models", "--debug", "b"],
     True),
])
def test_split_debug_flag(args: list[str], expected: list[str], debug: bool) -> None:
    from multitype.cli import split_debug_flag

    assert split_debug_flag(args) == (expected, debug)
