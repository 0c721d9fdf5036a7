"""Where training runs: device, process rank, precision, memory.

One code path for CPU, one GPU and many GPUs (nanoGPT style): under
``torchrun`` the ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` variables are set, the
process group is started and each process takes one GPU; otherwise there is
one process on ``cuda:0`` or the CPU. Only the main process (rank 0) writes.
"""

from __future__ import annotations

import contextlib
import os
import resource
import sys
from dataclasses import dataclass
from typing import Any, Callable, ContextManager

import torch

from multitype.errors import ModelError


@dataclass
class Runtime:
    """The process's place in the run."""

    device: torch.device
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def describe(self) -> str:
        if self.device.type == "cuda":
            name = torch.cuda.get_device_name(self.device)
            return f"{self.world_size} x {name}" if self.distributed else name
        return f"cpu ({torch.get_num_threads()} threads)"

    def any_rank(self, flag: bool) -> bool:
        """True when ``flag`` is true on any process (every process must call it)."""
        if not self.distributed:
            return flag
        import torch.distributed as dist

        value = torch.tensor([1.0 if flag else 0.0], device=self.device)
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item() > 0)

    def from_main(self, value: Any) -> Any:
        """Rank 0's ``value`` on every process (so all take the same decision)."""
        if not self.distributed:
            return value
        import torch.distributed as dist

        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        if self.distributed:
            import torch.distributed as dist

            dist.barrier()

    def close(self) -> None:
        if self.distributed:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()


def setup_runtime() -> Runtime:
    """Start the process group under ``torchrun``; else one process on GPU 0 or the CPU."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        import torch.distributed as dist

        rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
        if torch.cuda.is_available():
            device = torch.device("cuda", local_rank)
            torch.cuda.set_device(device)
            backend = "nccl"
        else:  # CPU processes (useful to test the multi-process path without GPUs)
            device = torch.device("cpu")
            backend = "gloo"
        if not dist.is_initialized():
            dist.init_process_group(backend=backend, device_id=device if backend == "nccl" else None)
        return Runtime(device, rank, world, local_rank)
    return Runtime(torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu"))


def cpu_supports_bf16() -> bool:
    """True when oneDNN has native bf16 kernels on this CPU (AVX-512 BF16 / AMX).

    Without them bf16 is emulated and many times slower than fp32.
    """
    check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    try:
        return bool(check()) if check is not None else False
    except RuntimeError:
        return False


def resolve_precision(requested: str, device: torch.device, warn: Callable[[str], None]) -> str:
    """``auto`` -> bf16 where it is fast, fp16 on GPUs without bf16, else fp32."""
    if device.type == "cuda":
        bf16 = torch.cuda.is_bf16_supported()
        if requested == "auto":
            return "bf16" if bf16 else "fp16"
        if requested == "bf16" and not bf16:
            raise ModelError(f"--precision bf16: {torch.cuda.get_device_name(device)} has no bf16; use fp16 or fp32")
        return requested
    if requested == "fp16":
        raise ModelError("--precision fp16 needs a CUDA GPU; on CPU use bf16 (where the CPU has it) or fp32")
    if requested == "auto":
        return "bf16" if cpu_supports_bf16() else "fp32"
    if requested == "bf16" and not cpu_supports_bf16():
        warn("--precision bf16: this CPU has no native bf16 (AVX-512 BF16/AMX); it is emulated and much slower "
             "than fp32 here")
    return requested


def autocast(device: torch.device, precision: str) -> ContextManager[Any]:
    """Mixed-precision context for the forward pass (nothing for fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def grad_scaler(device: torch.device, precision: str) -> torch.amp.GradScaler:
    """A loss scaler, active only for fp16 (bf16 has fp32's range)."""
    return torch.amp.GradScaler(device.type, enabled=precision == "fp16")


def peak_memory_mb(device: torch.device) -> float:
    """Peak GPU memory allocated, or the process's peak resident memory on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 1024
