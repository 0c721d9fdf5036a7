"""The model registry: named models with numbered versions and stages, in one JSON index under the root.

- :mod:`.index`: the index's schema and its conditional (compare-and-swap) updates.
- :mod:`.entry`: what a version records about a model folder (sha256, run, data, code, metrics).
- :mod:`.ops`: add, promote, archive, show, and ``registry:NAME[:VERSION]`` resolution.
- :mod:`.sagemaker`: the mirror in the SageMaker Model Registry.
"""

from multitype.registry.index import STAGES, Index, RegisteredModel, Version
from multitype.registry.ops import PREFIX, Resolved, add, archive, parse_ref, promote, resolve, show

__all__ = ["PREFIX", "STAGES", "Index", "RegisteredModel", "Resolved", "Version", "add", "archive", "parse_ref",
           "promote", "resolve", "show"]
