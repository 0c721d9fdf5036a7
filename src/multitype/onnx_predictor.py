"""A transformer model folder's ONNX export, run with ONNX Runtime on the CPU.

``multitype export onnx`` writes ``onnx/model.onnx`` (and ``onnx/model.int8.onnx``)
beside the weights. :class:`OnnxPredictor` is the same predictor as
:class:`~multitype.predictor.TransformerPredictor` (the folder's tokenizer, labels,
length limit, length-sorted batches and truncation flags) with the forward pass
done by an ``onnxruntime.InferenceSession`` instead of PyTorch. Reached through
``load_predictor(folder, backend="onnx" | "onnx-int8")``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from multitype import layout
from multitype.errors import ModelError
from multitype.predictor import TransformerPredictor, softmax


def missing_onnx(folder: str, quantized: bool) -> ModelError:
    """The error for a model folder without the ONNX file a backend needs (names the command that makes it)."""
    return ModelError(f"{folder} has no {layout.onnx_model(quantized)}; run 'multitype export onnx --model {folder}"
                      f"{' --quantize int8' if quantized else ''}' first")


class OnnxPredictor(TransformerPredictor):
    """``onnx/model.onnx`` (or ``model.int8.onnx`` with ``quantized``) of a transformer folder.

    Parameters
    ----------
    path : Path
        A local transformer model folder holding the export.
    quantized : bool, default=False
        Run the int8 model (dynamic quantisation) instead of the float32 one.
    threads : int, optional
        ONNX Runtime's intra-op threads (default: the CPUs this process may run on).

    Raises
    ------
    ModelError
        The ONNX file is missing or is not a model ONNX Runtime can load.
    """

    def __init__(self, path: Path, quantized: bool = False, threads: int | None = None) -> None:
        self.backend = "onnx-int8" if quantized else "onnx"
        self.onnx_file = path / layout.onnx_model(quantized)
        self._threads = threads
        if not self.onnx_file.is_file():
            raise missing_onnx(str(path), quantized)
        super().__init__(path)

    def _load(self, path: Path, device: str | None) -> Any:
        import onnxruntime as ort
        from transformers import AutoConfig

        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only: the graph optimizer's notices are not for users
        options.intra_op_num_threads = self._threads or _usable_cpus()
        # no busy-waiting between operators: the server's event loop (and, on a small machine, whatever else
        # runs) shares these cores; on 2 busy cores a batch of 8 x 128 tokens took 75 ms instead of 120 ms
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(str(self.onnx_file), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime's own exception types (InvalidProtobuf, Fail, ...)
            raise ModelError(f"{self.onnx_file}: ONNX Runtime cannot load it ({' '.join(str(exc).split())[:200]}); "
                             "export again with 'multitype export onnx --force'") from None
        self.input_names = [i.name for i in self.session.get_inputs()]
        return AutoConfig.from_pretrained(str(path))

    def _scores(self, texts: list[str]) -> np.ndarray:
        batch = self.tokenizer(texts, truncation=True, max_length=self.max_length, padding=True, return_tensors="np")
        logits = self.session.run(None, {name: batch[name].astype(np.int64) for name in self.input_names})[0]
        return softmax(logits.astype(np.float32))


def _usable_cpus() -> int:
    """The CPUs this process may run on (its affinity where the OS has one, as on Linux)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1
