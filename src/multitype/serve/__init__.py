"""The HTTP inference API: ``multitype serve``.

Route through the package: :mod:`.settings` (limits and knobs, validated once,
passed to worker processes through the environment), :mod:`.schemas` (request
parsing and the response shape), :mod:`.batching` (the asyncio micro-batcher
that combines concurrent requests into one model call), :mod:`.metrics`
(Prometheus, a registry per app), :mod:`.sagemaker` (``/ping`` and
``/invocations``), :mod:`.app` (``create_app``: the routes, wired together),
:mod:`.inference` (the same parsing and limits as the handler of a SageMaker
endpoint's stock PyTorch image: ``code/inference.py`` of ``sagemaker deploy``).
"""

from multitype.serve.app import create_app
from multitype.serve.settings import ServeSettings

__all__ = ["ServeSettings", "create_app"]
