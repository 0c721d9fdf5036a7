"""Text encodings of raw input: byte-order marks (as spreadsheet programs write them) are read,
other bytes that are not UTF-8 are a one-line error naming the file, the line and the
``encoding`` key, and with ``encoding`` set those files read correctly."""

from __future__ import annotations

import codecs
import json
from pathlib import Path
from typing import Any

import pytest

from multitype.data.sources import read_input
from multitype.errors import DataError
from tests.data.conftest import snapshot

# texts with characters outside ASCII (and outside Latin-1 for the Unicode encodings)
ACCENTED = ["Café owners say naïve pricing hurt the économie", "Zürich bank posts a £5m profit",
            "Señor García wins the vote", "The rôle of the coöperative in the résumé"]
UNICODE_ONLY = "Euro zone: €3bn deal, “smart” quotes and 東京 markets"


def _rows(records: list[dict[str, str]], extra: str | None = None) -> list[dict[str, str]]:
    """The BBC records with accented texts mixed in (one per class), so decoding errors would show."""
    rows = [dict(r) for r in records]
    for i, text in enumerate(ACCENTED):
        rows[i * 12]["text"] = f"{text}. {rows[i * 12]['text']}"
    if extra:
        rows[1]["text"] = f"{extra}. {rows[1]['text']}"
    return rows


def _encode(text: str, encoding: str) -> bytes:
    """``text`` as a program writes it: with the byte-order mark of ``encoding`` where it has one."""
    marks = {"utf-16-le": codecs.BOM_UTF16_LE, "utf-16-be": codecs.BOM_UTF16_BE, "utf-32-le": codecs.BOM_UTF32_LE}
    return marks.get(encoding, b"") + text.encode(encoding)


def _csv(rows: list[dict[str, str]], sep: str = ",") -> str:
    import pandas as pd

    return pd.DataFrame(rows).to_csv(index=False, sep=sep, lineterminator="\r\n")


def _json(rows: list[dict[str, str]]) -> str:
    return json.dumps(rows, ensure_ascii=False, indent=1)


def _jsonl(rows: list[dict[str, str]]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


FORMATS = {"csv": (".csv", _csv), "json": (".json", _json), "jsonl": (".jsonl", _jsonl)}
# utf-8-sig: Excel's "CSV UTF-8"; utf-16-le with its mark: Excel's "Unicode text"; the rest for completeness
BOM_ENCODINGS = ["utf-8-sig", "utf-16-le", "utf-16-be", "utf-32-le"]


@pytest.mark.parametrize("encoding", BOM_ENCODINGS)
@pytest.mark.parametrize("fmt", list(FORMATS))
def test_files_with_a_byte_order_mark_are_read(records, tmp_path: Path, fmt: str, encoding: str) -> None:
    rows = _rows(records, extra=UNICODE_ONLY)
    suffix, render = FORMATS[fmt]
    path = tmp_path / f"in{suffix}"
    path.write_bytes(_encode(render(rows), encoding))
    raw = read_input(str(path))
    assert raw.records == [{"text": r["text"], "label": r["label"]} for r in rows]
    assert raw.format == fmt and not raw.replaced


def test_excel_unicode_text_is_read_end_to_end(records, cli, config_dir: Path, tmp_path: Path) -> None:
    """Excel's "Unicode text": tab-separated UTF-16 LE with a byte-order mark."""
    rows = _rows(records, extra=UNICODE_ONLY)
    path = tmp_path / "export.csv"
    path.write_bytes(_encode(_csv(rows, sep="\t"), "utf-16-le"))
    root = tmp_path / "root"
    res = cli("prepare", "--input", path, "--root", root, "--config-dir", config_dir)
    assert res.exit_code == 0, res.stderr
    raw = json.loads((root / "data/raw/raw_data.json").read_text(encoding="utf-8"))
    assert raw == [{"text": r["text"], "label": r["label"]} for r in rows]


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_latin1_file_is_one_line_error_naming_the_encoding_key(records, cli, config_dir: Path, tmp_path: Path,
                                                              fmt: str) -> None:
    rows = _rows(records)
    suffix, render = FORMATS[fmt]
    path = tmp_path / f"in{suffix}"
    text = render(rows)
    path.write_bytes(text.encode("latin-1"))
    root = tmp_path / "root"
    root.mkdir()
    before = snapshot(root)
    res = cli("prepare", "--input", path, "--root", root, "--config-dir", config_dir)
    assert res.exit_code == 2 and res.stderr.count("\n") == 1 and "Traceback" not in res.stderr
    offset = len(text.split("é")[0].encode("latin-1"))  # the first non-ASCII character: é of Café
    line = text[:text.index("é")].count("\n") + 1
    assert res.stderr == (f"error: {path}: byte 0xe9 at offset {offset} (line {line}) is not UTF-8; re-encode the "
                          "file as UTF-8, or set encoding: in data_config.yaml to the one it was written in "
                          "(e.g. encoding: latin-1)\n")
    assert snapshot(root) == before


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_encoding_key_reads_latin1_files(records, cli, set_data_config, tmp_path: Path, fmt: str) -> None:
    rows = _rows(records)
    suffix, render = FORMATS[fmt]
    path = tmp_path / f"in{suffix}"
    path.write_bytes(render(rows).encode("latin-1"))
    assert read_input(str(path), encoding="latin-1").records == rows
    if fmt == "csv":  # once through the CLI and data_config.yaml
        config_dir = set_data_config(encoding="latin-1")
        res = cli("prepare", "--input", path, "--root", tmp_path / "root", "--config-dir", config_dir)
        assert res.exit_code == 0, res.stderr
        raw = json.loads((tmp_path / "root/data/raw/raw_data.json").read_text(encoding="utf-8"))
        assert raw == rows and "Café owners" in raw[0]["text"]


def test_wrong_encoding_key_is_named(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_bytes("text,label\nok,a\n東京,b\n".encode("utf-8"))
    with pytest.raises(DataError) as exc:
        read_input(str(path), encoding="ascii")
    assert str(exc.value) == (f"{path}: byte 0xe6 at offset 16 (line 3) is not ASCII; check encoding: ascii in "
                              "data_config.yaml, or re-encode the file as UTF-8")


def test_damaged_utf16_file_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_bytes(_encode("text,label\nok,a\n", "utf-16-le")[:-1])
    with pytest.raises(DataError, match=r"in.csv: the file ends inside a character .* is not UTF-16; its byte-order "
                                         r"mark declares it"):
        read_input(str(path))


# --- folders of <label>/*.txt ---------------------------------------------------------------
def _folder(base: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        (base / name).parent.mkdir(parents=True, exist_ok=True)
        (base / name).write_bytes(data)
    return base


def test_folder_txt_with_byte_order_marks(tmp_path: Path) -> None:
    texts: dict[str, tuple[str, str]] = {"a/1.txt": (ACCENTED[0], "utf-8-sig"), "a/2.txt": (UNICODE_ONLY, "utf-16-le"),
                                         "b/1.txt": (ACCENTED[1], "utf-16-be"), "b/2.txt": ("plain", "utf-8")}
    folder = _folder(tmp_path / "corpus", {name: _encode(text, enc) for name, (text, enc) in texts.items()})
    raw = read_input(str(folder))
    assert raw.records == [{"text": text, "label": name[0]} for name, (text, _) in texts.items()]
    assert not raw.replaced


def test_folder_latin1_file_with_and_without_encoding(tmp_path: Path) -> None:
    folder = _folder(tmp_path / "corpus", {"a/1.txt": ACCENTED[0].encode("latin-1"), "b/1.txt": b"plain"})
    lenient = read_input(str(folder))  # no encoding: decoded with U+FFFD and listed, as before
    assert "\ufffd" in lenient.records[0]["text"] and lenient.replaced == [0]
    exact = read_input(str(folder), encoding="latin-1")
    assert exact.records[0]["text"] == ACCENTED[0] and not exact.replaced
    with pytest.raises(DataError, match=r"corpus/a/1.txt: byte 0xe9 at offset 3 \(line 1\) is not ASCII"):
        read_input(str(folder), encoding="ascii")


def test_folder_encoding_through_prepare(records, cli, set_data_config, tmp_path: Path) -> None:
    rows: list[dict[str, Any]] = _rows(records)
    files = {f"{r['label']}/{i}.txt": r["text"].encode("cp1252") for i, r in enumerate(rows)}
    folder = _folder(tmp_path / "corpus", files)
    config_dir = set_data_config(encoding="cp1252")
    res = cli("prepare", "--input", folder, "--root", tmp_path / "root", "--config-dir", config_dir)
    assert res.exit_code == 0, res.stderr
    audit = json.loads((tmp_path / "root/data/processed/audit.json").read_text())
    assert audit["decoding"]["rows"] == []
    raw = json.loads((tmp_path / "root/data/raw/raw_data.json").read_text(encoding="utf-8"))
    assert sorted(r["text"] for r in raw) == sorted(r["text"] for r in rows)
