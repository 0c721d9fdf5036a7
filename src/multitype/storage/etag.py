"""S3 ETags computed locally: the MD5 of a file, and its multipart ETag for a part size.

A single-part upload's ETag is the MD5 of the object. A multipart upload's is
``<md5 of the concatenated part MD5s>-<number of parts>``, so it depends on the
part size: 8 MiB for ``aws s3 sync`` and multitype (see
:data:`multitype.storage.transfer.MULTIPART_CHUNKSIZE`), 16 MiB for some
tools, 50 MiB for s3fs. Objects stored with SSE-KMS have ETags that are no MD5
at all; callers fall back to sizes and times for those.
"""

from __future__ import annotations

import hashlib
import math
import os
import re

# part sizes whose multipart ETags are recomputed locally (aws cli and multitype, others, s3fs)
PART_SIZES = (8 * 2**20, 16 * 2**20, 50 * 2**20)
_READ_BLOCK = 2**20
_MULTIPART_RE = re.compile(r"[0-9a-f]{32}-(\d+)")
_MD5_RE = re.compile(r"[0-9a-f]{32}")


def is_md5(etag: str) -> bool:
    """True for a single-part ETag (the object's MD5), quotes stripped."""
    return bool(_MD5_RE.fullmatch(etag.strip('"').lower()))


def part_sizes_for(size: int, etag: str) -> list[int]:
    """The sizes of :data:`PART_SIZES` that split ``size`` bytes into as many parts as the multipart ``etag`` says."""
    match = _MULTIPART_RE.fullmatch(etag.strip('"').lower())
    if not match:
        return []
    n = int(match.group(1))
    return [p for p in PART_SIZES if math.ceil(size / p) == n]


def file_digests(path: str | os.PathLike[str], part_sizes: list[int] | tuple[int, ...] = ()) -> dict[str, str]:
    """One read of ``path``: ``{"md5": ..., "<part size>": "<multipart etag>", ...}``.

    Parameters
    ----------
    path : path
        A local file.
    part_sizes : list of int, optional
        Part sizes (bytes) to compute the multipart ETag for.

    Returns
    -------
    dict
        ``"md5"``: the hex MD5 of the whole file; ``str(p)`` for each part size
        ``p``: the ETag S3 gives the file when uploaded in parts of ``p`` bytes.
    """
    whole = hashlib.md5(usedforsecurity=False)
    parts: dict[int, list[bytes]] = {p: [] for p in part_sizes}
    current = {p: hashlib.md5(usedforsecurity=False) for p in part_sizes}
    filled = dict.fromkeys(part_sizes, 0)
    with open(path, "rb") as fh:
        while block := fh.read(_READ_BLOCK):
            whole.update(block)
            for p in part_sizes:
                view = memoryview(block)
                while view:
                    take = min(len(view), p - filled[p])
                    current[p].update(view[:take])
                    filled[p] += take
                    view = view[take:]
                    if filled[p] == p:
                        parts[p].append(current[p].digest())
                        current[p], filled[p] = hashlib.md5(usedforsecurity=False), 0
    out = {"md5": whole.hexdigest()}
    for p in part_sizes:
        if filled[p]:
            parts[p].append(current[p].digest())
        out[str(p)] = f"{hashlib.md5(b''.join(parts[p]), usedforsecurity=False).hexdigest()}-{len(parts[p])}"
    return out


def multipart_etag(path: str | os.PathLike[str], part_size: int) -> str:
    """The ETag S3 gives ``path`` uploaded in parts of ``part_size`` bytes (its MD5 below one part)."""
    if os.path.getsize(path) < part_size:
        return file_digests(path)["md5"]
    return file_digests(path, [part_size])[str(part_size)]
