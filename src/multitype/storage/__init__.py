"""The one package that knows a local root from an S3 root.

Every artifact read or write in multitype goes through a :class:`Storage` bound
to a root (a folder or ``s3://bucket/prefix``). Paths given to it are relative
keys such as ``data/processed/train_4class.csv``; keys that would escape the
root (``..``, absolute paths) are refused, and so are listed object keys that
would land outside a download folder. Writes are atomic: locally a temporary
file is renamed into place, in S3 an object is uploaded whole, so a reader never
sees half a file. :meth:`Storage.write_if` is a compare-and-swap write
(``If-Match``/``If-None-Match`` PutObject in S3, ``flock`` + compare locally)
for small shared files such as the model registry's index.

Modules, in the order a call meets them:

- :mod:`.keys`: key validation, ``s3://`` URL parsing, safe local targets.
- :mod:`.s3`: botocore sessions and clients, retries and timeouts, the one-time
  probe, and the table that turns S3 failures into a one-line
  :class:`~multitype.errors.StorageError`.
- :mod:`.transfer`: bytes moved by s3transfer's ``TransferManager`` (8 MiB
  multipart uploads as ``aws s3 sync``; parallel ranged downloads).
- :mod:`.etag`: the MD5 and multipart-ETag maths used to compare files.
- :mod:`.store`: :class:`Storage` itself.

S3 roots are served by botocore and s3transfer directly; fsspec serves local
folders and other URL schemes. The first operation on an S3 root probes it once
with a short timeout, so a missing bucket, wrong credentials or an endpoint that
does not answer fail within seconds.
"""

from multitype.storage.etag import PART_SIZES, file_digests, multipart_etag, part_sizes_for
from multitype.storage.keys import check_key, is_remote, local_target, split_s3_url, unsafe_reason
from multitype.storage.s3 import (S3_CONNECT_TIMEOUT, S3_MAX_ATTEMPTS, S3_PROBE_TIMEOUT, S3_READ_TIMEOUT,
                                  error_code, s3_client, s3_endpoint, s3_error, storage_options)
from multitype.storage.store import COMPLETE_MARKER, Storage, open_storage
from multitype.storage.transfer import MULTIPART_CHUNKSIZE, MULTIPART_CONCURRENCY, MULTIPART_THRESHOLD

__all__ = [
    "COMPLETE_MARKER", "MULTIPART_CHUNKSIZE", "MULTIPART_CONCURRENCY", "MULTIPART_THRESHOLD", "PART_SIZES",
    "S3_CONNECT_TIMEOUT", "S3_MAX_ATTEMPTS", "S3_PROBE_TIMEOUT", "S3_READ_TIMEOUT", "Storage", "check_key",
    "error_code", "file_digests", "is_remote", "local_target", "multipart_etag", "open_storage", "part_sizes_for",
    "s3_client", "s3_endpoint", "s3_error", "split_s3_url", "storage_options", "unsafe_reason",
]
