"""Bad input to ``multitype registry`` and ``registry:`` references: one ``error:`` line, exit 2, nothing lost.

Each refusal leaves the index byte for byte as it was and copies no model.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.registry.conftest import Project, one_line_error
from tests.serve.conftest import free_port


@pytest.fixture
def registered(cli, project: Project) -> Project:
    res = cli("registry", "add", "models/final/logreg", "--name", "news", "--stage", "staging", *project.where())
    assert res.exit_code == 0, res.stderr
    return project


def _copies(project: Project) -> list[str]:
    folder = project.root / "models" / "registry" / "news"
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def test_refusals_name_what_is_wrong_and_change_nothing(cli, registered: Project, tmp_path: Path) -> None:
    p = registered
    before, copies = p.index.read_bytes(), _copies(p)
    texts = tmp_path / "t.txt"
    texts.write_text("a text\n")
    index = p.index
    not_a_model = tmp_path / "notes"
    not_a_model.mkdir()
    (not_a_model / "readme.txt").write_text("hello")
    cases = [
        (("registry", "promote", "news:3", "--stage", "production"),
         f"news has no version 3 in {index}; it has versions 1-1 ('multitype registry list news' shows them)"),
        (("registry", "show", "news:7"),
         f"news has no version 7 in {index}; it has versions 1-1 ('multitype registry list news' shows them)"),
        (("registry", "archive", "sports:1"),
         f"no model 'sports' in the registry {index} (names: news); register it with "
         "'multitype registry add MODEL_DIR --name sports'"),
        (("registry", "promote", "news:1", "--stage", "prod"),
         "--stage 'prod' is not a stage here; use one of: production, staging"),
        (("registry", "promote", "news", "--stage", "production"),
         "'news' names no version; write NAME:VERSION (e.g. news:1)"),
        (("registry", "promote", "news:one", "--stage", "production"),
         "'news:one': version 'one' is not a version number (1, 2, ...)"),
        (("registry", "add", "models/final/logreg", "--name", "news", "--stage", "archived"),
         "--stage 'archived' is not a stage here; use one of: production, staging, none"),
        (("registry", "add", "models/final/logreg", "--name", "my model"),
         "--name 'my model' is not a registry name: letters, digits and single hyphens, starting and ending with "
         "a letter or digit, at most 50 characters"),
        (("registry", "add", str(not_a_model), "--name", "news"),
         f"{not_a_model} is not a model folder: expected model.json + model.skops (a baseline) or config.json + "
         "model.safetensors (a transformer)"),
        (("registry", "add", "models/final/svm", "--name", "news"),
         "model folder models/final/svm not found; pass models/final/<name> (train a model first)"),
        (("predict", "--model", "registry:news", "--input", str(texts)),
         f"news has no production version in {index}; promote one ('multitype registry promote news:<version> "
         "--stage production') or name one (registry:news:<version>)"),
        (("predict", "--model", "registry:news:2", "--input", str(texts)),
         f"news has no version 2 in {index}; it has versions 1-1 ('multitype registry list news' shows them)"),
        (("export", "onnx", "--model", "registry:news:1"),
         "registry:news:1: a registered version never changes; export the folder it was registered from and "
         "register that folder again ('multitype registry add')"),
        (("serve", "--model", "registry:news", "--port", str(free_port())),
         f"news has no production version in {index}; promote one ('multitype registry promote news:<version> "
         "--stage production') or name one (registry:news:<version>)"),
    ]
    for args, message in cases:
        res = cli(*args, *p.where())
        assert one_line_error(res) == message, args
    assert p.index.read_bytes() == before and _copies(p) == copies
    assert not (tmp_path / "t.predictions.csv").exists()


@pytest.mark.parametrize("edit, message", [
    (lambda text: text.replace('"stage": "staging"', '"stage": "live"', 1),
     "'models.news.versions.0.stage' Input should be 'production', 'staging', 'none' or 'archived', got 'live'"),
    (lambda text: text.replace('"schema_version": 1,', '"schema_version": 1', 1),
     "line 3: not valid JSON (Expecting ',' delimiter)"),
    (lambda text: text.replace('"version": 1,', '"version": 1, "owner": "me",', 1),
     "'models.news.versions.0.owner' unknown key"),
    (lambda text: text.replace('"version": 1,', '"version": 4,', 1),
     "'models.news' versions must be numbered 1, 2, ... in order; found [4]"),
    (lambda text: json.dumps({**json.loads(text), "models": {"news": {"versions": [
        {**json.loads(text)["models"]["news"]["versions"][0], "stage": "production"},
        {**json.loads(text)["models"]["news"]["versions"][0], "version": 2, "stage": "production"}]}}}),
     "'models.news' versions [1, 2] are all in production; only one may be"),
], ids=["unknown-stage", "not-json", "unknown-key", "numbering", "two-in-production"])
def test_a_hand_edited_index_that_is_not_valid_is_refused_and_never_rewritten(cli, registered: Project, edit,
                                                                                message: str, tmp_path: Path) -> None:
    p = registered
    p.index.write_text(edit(p.index.read_text()))
    broken, copies = p.index.read_bytes(), _copies(p)
    texts = tmp_path / "t.txt"
    texts.write_text("a text\n")
    for args in (("registry", "add", "models/final/logreg", "--name", "news", "--stage", "production"),
                 ("registry", "promote", "news:1", "--stage", "production"), ("registry", "archive", "news:1"),
                 ("registry", "list"), ("registry", "show", "news"), ("predict", "--model", "registry:news:1",
                                                                      "--input", str(texts))):
        res = cli(*args, *p.where())
        assert one_line_error(res) == (
            f"{p.index}: {message}; the registry index is not valid and is left as it is: fix it by hand or "
            "restore it from a backup (no registry command rewrites it meanwhile)"), args
    assert p.index.read_bytes() == broken and _copies(p) == copies
