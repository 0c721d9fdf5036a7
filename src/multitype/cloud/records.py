"""Launch records: one JSON file per launch under ``runs/<backend>/<id>.json`` in the project's root.

``sagemaker launch`` and ``ec2 launch`` write what they sent there; the commands
that take an optional JOB, INSTANCE or RUN default to the newest record (by its
``launched_at``, then its id). Only the files directly in the folder are
records (a SageMaker job writes ``runs/sagemaker/<job>/result.json`` below it).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from multitype import layout
from multitype.errors import AwsError
from multitype.storage import Storage


@dataclass(frozen=True)
class LaunchRecords:
    """The records of one backend.

    Attributes
    ----------
    backend : str
        The folder under ``runs/`` (``"sagemaker"``, ``"ec2"``).
    id_key : str
        The record's id field, also its file name (``"job_name"``, ``"run_id"``).
    what : str
        What one launch is called in messages (``"SageMaker job"``).
    hint : str
        What to do when none was launched from a root.
    """

    backend: str
    id_key: str
    what: str
    hint: str

    @property
    def folder(self) -> str:
        return f"{layout.RUNS}/{self.backend}"

    def key(self, ident: str) -> str:
        return f"{self.folder}/{ident}.json"

    def save(self, storage: Storage, ident: str, record: dict[str, Any]) -> dict[str, Any]:
        """Write the record of ``ident`` (adding the id and ``launched_at`` when missing); returns it."""
        full = {self.id_key: ident, "launched_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **record}
        storage.write_json(self.key(ident), full)
        return full

    def load(self, storage: Storage, ident: str) -> dict[str, Any] | None:
        """The record of ``ident``, or None if this root did not launch it."""
        key = self.key(ident)
        return storage.read_json(key) if storage.exists(key) else None

    def all(self, storage: Storage) -> list[dict[str, Any]]:
        """Every record in this root, oldest first."""
        if not storage.exists(self.folder):
            return []
        found = [storage.read_json(f"{self.folder}/{name}") for name in storage.listdir(self.folder)
                 if name.endswith(".json")]
        return sorted((r for r in found if isinstance(r, dict) and r.get(self.id_key)),
                      key=lambda r: (str(r.get("launched_at", "")), str(r[self.id_key])))

    def newest(self, storage: Storage) -> dict[str, Any]:
        """The newest record.

        Raises
        ------
        AwsError
            Nothing was launched from this root.
        """
        found = self.all(storage)
        if not found:
            raise AwsError(f"no {self.what} was launched from {storage.url(self.folder)}; {self.hint}")
        return found[-1]
