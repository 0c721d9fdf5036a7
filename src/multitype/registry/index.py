"""The registry's JSON index (``models/registry/index.json``): its schema, and updates two writers cannot both win.

An update reads the index with its version token, applies a change in memory
and writes it back only if the file is still that version
(:meth:`multitype.storage.Storage.write_if`: ``PutObject`` with ``If-Match`` /
``If-None-Match: *`` in S3, an ``flock`` plus compare locally). The loser
re-reads the new index and applies its change again, a bounded number of times.

An index that does not parse or breaks a rule (unknown key, bad stage,
versions out of order, two production versions) is never rewritten: every
command that reads it stops with one line naming the file and the field.
"""

from __future__ import annotations

import json
import random
import re
import time
from typing import Any, Callable, Literal, Optional, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from multitype import layout
from multitype.errors import RegistryError, StorageError
from multitype.storage import Storage

SCHEMA_VERSION = 1
STAGES = ("production", "staging", "none", "archived")
Stage = Literal["production", "staging", "none", "archived"]
# letters, digits and single hyphens, as SageMaker names a model package group (ours: 'multitype-<name>')
NAME_RE = re.compile(r"^[a-zA-Z0-9](-?[a-zA-Z0-9])*$")
NAME_MAX = 50
MAX_ATTEMPTS = 10      # conditional writes lost in a row before giving up
BACKOFF_S = 0.05       # first wait after a lost write; doubles, with jitter

T = TypeVar("T")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StageChange(_Strict):
    stage: Stage
    at: str


class SageMakerMirror(_Strict):
    """Where a version is mirrored in the SageMaker Model Registry."""

    group: str
    model_package_arn: str
    model_data_url: str
    image: str


class Version(_Strict):
    """One registered version of a model (see :mod:`multitype.registry.entry` for how it is filled)."""

    version: int = Field(ge=1)
    stage: Stage
    created: str
    updated: str
    model: str                      # key of the registry's own copy under the root
    source: str                     # where it was registered from
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    kind: Literal["sklearn", "transformer"]
    name: Optional[str] = None      # the model's own name (logreg, minilm, ...)
    run_id: Optional[str] = None
    code: Optional[dict[str, Any]] = None
    data_fingerprint: Optional[str] = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    data_files: dict[str, str] = {}
    metrics: Optional[dict[str, Any]] = None
    metrics_file: Optional[str] = None
    sagemaker: Optional[SageMakerMirror] = None
    history: list[StageChange] = []


class RegisteredModel(_Strict):
    versions: list[Version] = []

    @model_validator(mode="after")
    def _rules(self) -> "RegisteredModel":
        numbers = [v.version for v in self.versions]
        if numbers != list(range(1, len(numbers) + 1)):
            raise ValueError(f"versions must be numbered 1, 2, ... in order; found {numbers}")
        production = [v.version for v in self.versions if v.stage == "production"]
        if len(production) > 1:
            raise ValueError(f"versions {production} are all in production; only one may be")
        return self


class Index(_Strict):
    schema_version: Literal[1] = SCHEMA_VERSION
    models: dict[str, RegisteredModel] = {}

    @model_validator(mode="after")
    def _names(self) -> "Index":
        bad = [name for name in self.models if not valid_name(name)]
        if bad:
            raise ValueError(f"model name {bad[0]!r} is not valid (letters, digits and single hyphens)")
        return self


def valid_name(name: str) -> bool:
    return len(name) <= NAME_MAX and bool(NAME_RE.match(name))


def check_name(name: str) -> str:
    """``name`` if the registry takes it, else a :class:`RegistryError` saying what a name may hold."""
    if not valid_name(name):
        raise RegistryError(f"--name {name!r} is not a registry name: letters, digits and single hyphens, "
                            f"starting and ending with a letter or digit, at most {NAME_MAX} characters")
    return name


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _invalid(where: str, detail: str) -> RegistryError:
    return RegistryError(f"{where}: {detail}; the registry index is not valid and is left as it is: fix it by "
                         "hand or restore it from a backup (no registry command rewrites it meanwhile)")


def parse(data: bytes, where: str) -> Index:
    """The :class:`Index` in ``data``, or a :class:`RegistryError` naming ``where`` and the first problem."""
    try:
        raw = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise _invalid(where, "not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise _invalid(where, f"line {exc.lineno}: not valid JSON ({exc.msg})") from None
    if not isinstance(raw, dict):
        raise _invalid(where, f"expected a JSON object, got {type(raw).__name__}")
    try:
        return Index.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif err["type"] != "missing" and not isinstance(err.get("input"), (dict, list)):
            msg = f"{msg}, got {err.get('input')!r}"
        more = f" (and {len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
        raise _invalid(where, f"'{loc}' {msg}{more}" if loc else f"{msg}{more}") from None


def dump(index: Index) -> bytes:
    return (json.dumps(index.model_dump(mode="json", exclude_none=True), indent=2, ensure_ascii=False)
            + "\n").encode("utf-8")


def load(storage: Storage) -> Index:
    """The index under ``storage`` (empty when there is none yet)."""
    data, _ = storage.read_versioned(layout.REGISTRY_INDEX)
    return Index() if data is None else parse(data, storage.url(layout.REGISTRY_INDEX))


def update(storage: Storage, change: Callable[[Index], T], sleep: Callable[[float], None] = time.sleep) -> T:
    """Apply ``change`` to the index and write it back, re-reading and re-applying when another writer won.

    ``change`` edits the :class:`Index` it is given and returns what the
    caller wants back; it runs once per attempt, on the newest index, so it
    must decide from that index alone (e.g. the next version number).

    Raises
    ------
    RegistryError
        The stored index is not valid, or ``change`` refused.
    StorageError
        Another writer won :data:`MAX_ATTEMPTS` times in a row.
    """
    key = layout.REGISTRY_INDEX
    for attempt in range(MAX_ATTEMPTS):
        data, token = storage.read_versioned(key)
        index = Index() if data is None else parse(data, storage.url(key))
        result = change(index)
        index = Index.model_validate(index.model_dump())  # the change kept every rule
        if storage.write_if(key, dump(index), token):
            return result
        sleep(random.uniform(0.5, 1.0) * BACKOFF_S * 2 ** min(attempt, 5))
    raise StorageError(f"{storage.url(key)} was changed by other writers {MAX_ATTEMPTS} times while this "
                       "command tried to update it; run it again")
