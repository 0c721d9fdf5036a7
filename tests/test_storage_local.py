"""Storage on a local root: atomic writes, key validation, folder publishing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from multitype.errors import StorageError
from multitype.storage import COMPLETE_MARKER, Storage, check_key


@pytest.mark.parametrize("bad", ["../x", "a/../../b", "/etc/passwd", "s3://other/x", "C:/x"])
def test_keys_cannot_leave_the_root(bad: str) -> None:
    with pytest.raises(StorageError):
        check_key(bad)


def test_key_normalised() -> None:
    assert check_key("./a//b/") == "a/b"


def test_root_that_is_a_file(tmp_path: Path) -> None:
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(StorageError, match="is a file"):
        Storage(str(f))


def test_write_is_atomic_and_leaves_no_temp(tmp_path: Path) -> None:
    st = Storage(str(tmp_path))
    st.write_json("a/b.json", {"x": 1})
    assert st.read_json("a/b.json") == {"x": 1}
    assert os.listdir(tmp_path / "a") == ["b.json"]


def test_failed_write_keeps_old_content(tmp_path: Path) -> None:
    st = Storage(str(tmp_path))
    st.write_text("f.txt", "old")
    with pytest.raises(TypeError):  # fails inside the write, after the temp file exists
        st.write_bytes("f.txt", object())  # type: ignore[arg-type]
    assert st.read_text("f.txt") == "old"
    assert sorted(os.listdir(tmp_path)) == ["f.txt"]


def test_put_dir_replaces_whole_folder_with_marker(tmp_path: Path) -> None:
    st = Storage(str(tmp_path / "root"))
    src = tmp_path / "src"
    src.mkdir()
    (src / "w.bin").write_bytes(b"1")
    st.put_dir(src, "models/checkpoints/m-last")
    assert st.is_complete("models/checkpoints/m-last")
    (src / "w.bin").write_bytes(b"2")
    (src / "extra").write_bytes(b"e")
    st.put_dir(src, "models/checkpoints/m-last")
    assert st.read_bytes("models/checkpoints/m-last/w.bin") == b"2"
    assert sorted(st.listdir("models/checkpoints/m-last")) == [COMPLETE_MARKER, "extra", "w.bin"]
    assert st.listdir("models/checkpoints") == ["m-last"]


def test_missing_file_is_user_error(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="not found"):
        Storage(str(tmp_path)).read_bytes("nope.json")
