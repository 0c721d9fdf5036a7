"""JSON Lines, CSV and Parquet are read as streams (lines, chunks, row groups): the same records and the
same messages (row and line numbers across chunk boundaries) as the whole-file reader, and memory that
follows the kept records (``benchmarks/prepare_input.py`` measures it at 200,000 documents)."""

from __future__ import annotations

import json
import sys
import tracemalloc
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from multitype.data import sources
from multitype.data.sources import read_input
from multitype.errors import DataError


def _rows(n: int) -> list[dict[str, str]]:
    return [{"id": str(i), "text": f"document {i} about things", "label": "ab"[i % 2], "note": "kept out"}
            for i in range(n)]


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sources, "CSV_CHUNK_ROWS", 7)
    monkeypatch.setattr(sources, "PARQUET_BATCH_ROWS", 5)


def test_csv_chunks_keep_rows_lines_and_only_text_label(small_chunks, tmp_path: Path) -> None:
    rows = _rows(30)
    pd.DataFrame(rows).to_csv(tmp_path / "in.csv", index=False)
    raw = read_input(str(tmp_path / "in.csv"))
    assert raw.records == [{"text": r["text"], "label": r["label"]} for r in rows]

    rows[19]["label"] = ""  # row 20, in the third chunk of 7
    pd.DataFrame(rows).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(DataError, match=r"bad\.csv row 20 \(line 21\): empty label in 'label'"):
        read_input(str(tmp_path / "bad.csv"))

    rows[1]["note"] = "two\nlines"  # a multi-line cell in a column prepare does not keep: no line numbers
    pd.DataFrame(rows).to_csv(tmp_path / "multi.csv", index=False)
    with pytest.raises(DataError, match=r"multi\.csv row 20: empty label"):
        read_input(str(tmp_path / "multi.csv"))

    text = "text,label\n" + "".join(f"t{i},a\n" for i in range(23)) + "bad,b,c\n"
    (tmp_path / "fields.csv").write_text(text, encoding="utf-8")
    with pytest.raises(DataError, match=r"fields\.csv: not valid CSV \(Expected 2 fields in line 25, saw 3\)"):
        read_input(str(tmp_path / "fields.csv"))


def test_jsonl_lines_count_as_splitlines_and_encodings(tmp_path: Path) -> None:
    # a lone CR and a raw U+2028 end lines for str.splitlines, as they did for the whole-file reader
    body = '{"text": "a", "label": "x"}\r{"text": "b", "label": "y"}\n\n{"text": "c", label}\n'
    (tmp_path / "cr.jsonl").write_bytes(body.encode("utf-8"))
    with pytest.raises(DataError, match=r"cr\.jsonl line 4 column"):
        read_input(str(tmp_path / "cr.jsonl"))

    records = [{"text": "naïve café", "label": "x"}, {"text": "über", "label": "y"}]
    (tmp_path / "u16.jsonl").write_bytes("".join(json.dumps(r, ensure_ascii=False) + "\r\n"
                                                 for r in records).encode("utf-16"))
    assert read_input(str(tmp_path / "u16.jsonl")).records == records

    late = b'{"text": "a", "label": "b"}\n' * 2000 + '{"text": "caf\u00e9", "label": "b"}\n'.encode("latin-1")
    (tmp_path / "late.jsonl").write_bytes(late)
    with pytest.raises(DataError, match=r"late\.jsonl: byte 0xe9 at offset 56013 \(line 2001\) is not UTF-8"):
        read_input(str(tmp_path / "late.jsonl"))
    assert read_input(str(tmp_path / "late.jsonl"), encoding="latin-1").records[-1]["text"] == "café"


def test_parquet_row_groups(small_chunks, tmp_path: Path) -> None:
    rows = _rows(23)
    frame = pd.DataFrame(rows).set_index("id")  # pandas' index is saved, and is not a column of the input
    pq.write_table(pa.Table.from_pandas(frame), tmp_path / "in.parquet", row_group_size=4)
    assert pq.ParquetFile(tmp_path / "in.parquet").num_row_groups == 6
    raw = read_input(str(tmp_path / "in.parquet"))
    assert raw.records == [{"text": r["text"], "label": r["label"]} for r in rows]

    rows[11]["label"] = None
    pq.write_table(pa.Table.from_pandas(pd.DataFrame(rows)), tmp_path / "bad.parquet", row_group_size=4)
    with pytest.raises(DataError, match=r"bad\.parquet row 12: empty label in 'label'"):
        read_input(str(tmp_path / "bad.parquet"))
    pq.write_table(pa.Table.from_pandas(pd.DataFrame(rows).drop(columns="label")), tmp_path / "nolabel.parquet")
    with pytest.raises(DataError, match=r"no 'label' column \(columns: id, text, note\)"):
        read_input(str(tmp_path / "nolabel.parquet"))


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_memory_follows_the_kept_records(suffix: str, tmp_path: Path) -> None:
    """Python allocations while reading stay near the records kept, not the file's bytes plus its text."""
    n = 4000
    rows = [{"id": str(i), "text": ("word " * 200) + str(i), "label": "ab"[i % 2], "extra": "x" * 800}
            for i in range(n)]
    path = tmp_path / f"in{suffix}"
    if suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    else:
        pd.DataFrame(rows).to_csv(path, index=False)
    tracemalloc.start()
    try:
        raw = read_input(str(path))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    kept = sum(sys.getsizeof(r) + sys.getsizeof(r["text"]) + sys.getsizeof(r["label"]) for r in raw.records)
    size = path.stat().st_size
    assert len(raw.records) == n
    # the whole-file reader held the bytes, the decoded text and every parsed row (> 2x the file) at once
    assert peak < kept + 0.5 * size, (peak, kept, size)
