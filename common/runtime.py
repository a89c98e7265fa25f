"""Seeds, device, threads, autocast policy, deterministic mode and torchrun/DDP set-up.

Nothing here runs at import time. Entry points call :func:`setup_runtime` once and pass the
returned :class:`Runtime` down; no other module chooses a device.
"""

from __future__ import annotations

import contextlib
import os
import random
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from common.config import RuntimeConfig

__all__ = [
    "Runtime",
    "setup_runtime",
    "select_device",
    "cpu_has_native_bf16",
    "resolve_precision",
    "seed_everything",
    "rng_state",
    "set_rng_state",
    "all_reduce_grads",
    "broadcast_module",
    "all_reduce_mean",
    "shutdown",
]


@dataclass
class Runtime:
    """The resolved execution context of one process."""

    device: torch.device
    amp_dtype: torch.dtype | None  # None = full fp32
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    deterministic: bool = False
    channels_last: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """Mixed-precision context for forward passes (a no-op in fp32)."""
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    @property
    def precision(self) -> str:
        names = {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}
        return names[self.amp_dtype]


def select_device(name: str = "auto", local_rank: int = 0) -> torch.device:
    """``auto`` picks cuda:<local rank>, then mps, then cpu. Explicit names are validated."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank % torch.cuda.device_count())
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"runtime.device={name!r} but CUDA is not available on this machine")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise RuntimeError(f"runtime.device={name!r} but MPS is not available on this machine")
    return device


def cpu_has_native_bf16() -> bool:
    """Whether oneDNN reports native bf16 (AVX512-BF16 / AMX); without it bf16 autocast is
    emulated, and a conv net step was ~40x slower than fp32 on an AVX2-only AMD EPYC."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """Autocast dtype for ``precision`` on ``device``; ``auto`` = bf16 where it is supported.

    CPU: bf16 when the CPU has native bf16 support, else fp32. CUDA: bf16 when supported,
    else fp16 (which needs a GradScaler, provided by the training loop). MPS: fp32.
    """
    if precision == "fp32":
        return None
    if precision == "bf16":
        if device.type == "cpu" and not cpu_has_native_bf16():
            warnings.warn("runtime.precision=bf16 on a CPU without native bf16 (AVX512-BF16 / "
                          "AMX): autocast is emulated and can be tens of times slower than "
                          "fp32 (a 6-level U-Net step here: 0.3 s fp32, 7 s bf16); use "
                          "runtime.precision=auto", stacklevel=2)
        return torch.bfloat16
    if precision == "fp16":
        return torch.float16
    if precision != "auto":
        raise ValueError(f"runtime.precision must be auto|fp32|bf16|fp16, got {precision!r}")
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and cpu_has_native_bf16():
        return torch.bfloat16
    return None


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """Every global RNG state, as plain data + tensors (checkpointable with weights_only)."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": _to_plain(random.getstate()),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(_to_tuple(state["python"]))
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _to_plain(x: Any) -> Any:
    return [_to_plain(v) for v in x] if isinstance(x, (tuple, list)) else x


def _to_tuple(x: Any) -> Any:
    return tuple(_to_tuple(v) for v in x) if isinstance(x, list) else x


def _init_distributed(device: torch.device) -> tuple[int, int, int]:
    """Join the process group torchrun describes in the environment (gloo CPU, nccl CUDA)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return 0, 1, 0
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=timedelta(minutes=10))
    return rank, world_size, local_rank


def setup_runtime(cfg: RuntimeConfig, seed: int) -> Runtime:
    """Resolve device/precision/threads, join torchrun's group, seed with ``seed + rank``."""
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = select_device(cfg.device, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    rank, world_size, local_rank = _init_distributed(device)
    if cfg.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
    # Each rank draws different noise and data; parameters are synchronised separately.
    seed_everything(seed + rank)
    return Runtime(
        device=device,
        amp_dtype=resolve_precision(cfg.precision, device),
        rank=rank,
        world_size=world_size,
        local_rank=local_rank,
        deterministic=cfg.deterministic,
        channels_last=cfg.channels_last,
    )


def broadcast_module(module: torch.nn.Module, src: int = 0) -> None:
    """Copy rank ``src``'s parameters and buffers to every rank (start from one init)."""
    if not (dist.is_available() and dist.is_initialized()):
        return
    with torch.no_grad():
        for tensor in [*module.parameters(), *module.buffers()]:
            dist.broadcast(tensor.data, src)


def all_reduce_grads(params: Iterable[torch.nn.Parameter]) -> None:
    """Average gradients over ranks (what DDP does, done explicitly).

    GAN phases run G and D in alternation with detached inputs, which confuses DDP's
    unused-parameter bookkeeping; averaging gradients per optimiser step is equivalent for
    data parallelism and keeps ranks bitwise identical.
    """
    if not (dist.is_available() and dist.is_initialized()):
        return
    world = dist.get_world_size()
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


def all_reduce_mean(value: torch.Tensor) -> torch.Tensor:
    """Mean of a tensor over ranks (for logging)."""
    if not (dist.is_available() and dist.is_initialized()):
        return value
    out = value.detach().clone()
    dist.all_reduce(out)
    return out / dist.get_world_size()


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
