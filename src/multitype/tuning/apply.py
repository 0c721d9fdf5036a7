"""``tune ... --apply``: a study's best parameters written back into the model config as an override.

Transformer parameters become ``models.<model_name>.<param>`` in ``models_transformer.yaml``; baseline
ones ``models.<logreg|linear_svm>.<C|class_weight|max_iter>`` or ``tfidf.<...>`` (shared by both
classifiers) in ``models_baseline.yaml`` (:data:`multitype.config.BASELINE_TUNABLE`). The file is edited
with ruamel.yaml's round-trip mode, so its comments, key order and flow style stay; the new text is
validated by :func:`multitype.config.parse_config` before it replaces the file in one atomic write
(through :class:`multitype.storage.Storage`, so an ``s3://`` config folder works the same way).
"""

from __future__ import annotations

import io
import json
import math
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError
from ruamel.yaml.representer import RoundTripRepresenter

from multitype import layout
from multitype.config import BASELINE_TUNABLE, CONFIG_FILES, TRANSFORMER_TUNABLE, parse_config
from multitype.errors import ConfigError
from multitype.storage import Storage


def yaml_float(x: float) -> str:
    """A float as YAML that PyYAML's 1.1 reader also takes as a number: ``4.1e-05``, ``1.0e-05``, ``0.0001``.

    >>> yaml_float(1e-05), yaml_float(4.1e-05), yaml_float(0.0001), yaml_float(3.0)
    ('1.0e-05', '4.1e-05', '0.0001', '3.0')
    """
    if math.isnan(x):
        return ".nan"
    if math.isinf(x):
        return ".inf" if x > 0 else "-.inf"
    mantissa, e, exponent = repr(float(x)).partition("e")
    if e and "." not in mantissa:  # PyYAML reads 1e-05 (no dot) as a string
        mantissa += ".0"
    return mantissa + e + exponent


class _Representer(RoundTripRepresenter):
    """Round-trip output, but ``null`` spelled out and floats in :func:`yaml_float`'s form."""


_Representer.add_representer(type(None), lambda r, _: r.represent_scalar("tag:yaml.org,2002:null", "null"))
_Representer.add_representer(float, lambda r, x: r.represent_scalar("tag:yaml.org,2002:float", yaml_float(x)))


def _yaml() -> YAML:
    yaml = YAML()  # round-trip
    yaml.Representer = _Representer
    yaml.preserve_quotes = True
    yaml.width = 4096  # never fold a long flow mapping onto a second line
    return yaml


def _show(value: Any) -> str:
    """A value as the change lines print it, as the file spells it: ``0.0001``, ``4.1e-05``, ``[1, 2]``, ``null``."""
    if isinstance(value, tuple):
        value = list(value)
    if isinstance(value, float):
        return yaml_float(value)
    return value if isinstance(value, str) else json.dumps(value)


def _same(a: Any, b: Any) -> bool:
    a, b = (list(v) if isinstance(v, tuple) else v for v in (a, b))
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    return a == b


def _targets(kind: str, model_name: str, params: dict[str, Any], config: Any,
             filename: str) -> list[tuple[tuple[str, ...], Any, Any]]:
    """(key path, current value, new value) per parameter; unknown names are a ``ConfigError``."""
    out, problems = [], []
    if kind == "transformer":
        current = config.params_for(model_name).model_dump()
        for name, value in params.items():
            if name not in TRANSFORMER_TUNABLE:
                problems.append(f"'{name}' is not a fine-tuning parameter; tunable: {', '.join(TRANSFORMER_TUNABLE)}")
                continue
            out.append((("models", model_name, name), current[name], value))
    else:
        if model_name not in layout.BASELINE_NAMES:
            raise ConfigError(f"{filename}: no baseline '{model_name}'; use one of {', '.join(layout.BASELINE_NAMES)}")
        section = getattr(config.models, model_name).model_dump()
        for name, value in params.items():
            where = BASELINE_TUNABLE.get(name)
            if where is None:
                problems.append(f"'{name}' is not a baseline parameter; tunable: {', '.join(BASELINE_TUNABLE)}")
            elif where == "tfidf":
                out.append((("tfidf", name), getattr(config.tfidf, name), value))
            else:  # a key this classifier lacks (max_iter for linear_svm) is refused by parse_config below
                out.append((("models", model_name, name), section.get(name), value))
    if problems:
        raise ConfigError("; ".join(f"{filename}: {p}" for p in problems))
    return out


def _node(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        seq = CommentedSeq(_node(v) for v in value)
        seq.fa.set_flow_style()
        return seq
    return value


def _mapping(parent: CommentedMap, key: str) -> CommentedMap:
    """``parent[key]`` as a mapping, made (in its siblings' flow or block style) when absent or null."""
    child = parent.get(key)
    if isinstance(child, CommentedMap):
        return child
    if child is not None:
        raise ConfigError(f"'{key}' is a {type(child).__name__}, not a mapping")
    child = CommentedMap()
    if any(isinstance(v, CommentedMap) and v.fa.flow_style() for v in parent.values()):
        child.fa.set_flow_style()
    parent[key] = child
    return child


def apply_best(config_dir: str, kind: str, model_name: str, params: dict[str, Any],
               storage_options: dict[str, Any] | None = None) -> list[str]:
    """Write ``params`` into the model config of ``kind`` as an override of ``model_name``.

    Parameters
    ----------
    config_dir : str
        The config folder (local or ``s3://``), as ``--config-dir``.
    kind : {"transformer", "baseline"}
        Which file: ``models_transformer.yaml`` or ``models_baseline.yaml``.
    model_name : str
        The model whose section gets the override (a baseline: ``logreg`` or ``linear_svm``).
    params : dict
        The best trial's parameters (names of the ``tune.space``).
    storage_options : dict, optional
        As :func:`multitype.storage.storage_options` returns: ``endpoint_url`` and ``profile`` are used.

    Returns
    -------
    list of str
        One line per value changed, e.g. ``models.minilm.learning_rate: 0.0001 -> 4.1e-05``; empty when the
        file already held every value (it is then not rewritten).

    Raises
    ------
    ConfigError
        The file is not valid now, a name is not tunable, or the result would not be a valid config (for
        example ``max_iter`` for ``linear_svm``); the file is left as it was.
    """
    if kind not in ("transformer", "baseline"):
        raise ConfigError(f"cannot apply tuned parameters to '{kind}'; use transformer or baseline")
    options = storage_options or {}
    filename = CONFIG_FILES[kind]
    storage = Storage(config_dir, endpoint_url=options.get("endpoint_url"), profile=options.get("profile"))
    shown = storage.url(filename)
    text = storage.read_text(filename)
    config = parse_config(kind, text, shown)
    targets = _targets(kind, model_name, params, config, shown)
    try:
        doc = _yaml().load(text)
    except YAMLError as exc:  # PyYAML took it; ruamel (YAML 1.2) may not
        raise ConfigError(f"{shown}: cannot be edited in place ({exc}); set the values by hand") from None
    if doc is None:
        doc = CommentedMap()
    changes = []
    for path, old, new in targets:
        if _same(old, new):
            continue
        parent = doc
        for key in path[:-1]:
            parent = _mapping(parent, key)
        parent[path[-1]] = _node(new)
        changes.append(f"{'.'.join(path)}: {_show(old)} -> {_show(new)}")
    if not changes:
        return []
    buf = io.StringIO()
    _yaml().dump(doc, buf)
    new_text = buf.getvalue()
    try:
        parse_config(kind, new_text, shown)
    except ConfigError as exc:
        raise ConfigError(f"tuned parameters not applied ({shown} left as it was): {exc}") from None
    storage.write_text(filename, new_text)
    return changes
