"""Where models run: the accelerator if there is one, in the widest dtype it is fast at.

`hardware.device: auto` picks CUDA, then Apple MPS, then the CPU; `hardware.dtype: auto` picks
bf16 on a CUDA device that supports it and fp32 elsewhere (CPU bf16 matmuls are slower here, and
MPS bf16 support depends on the macOS version). Both can be forced in params.yaml.
"""

from __future__ import annotations

import torch

from potstill.errors import InputError

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_device(setting: str = "auto") -> torch.device:
    """Return the torch device for a `hardware.device` setting (auto, cpu, cuda, cuda:N, mps)."""
    if setting == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(setting)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"hardware.device: {setting!r} but torch sees no CUDA device (torch {torch.__version__}); "
                         "install a CUDA build of torch on a GPU machine, or set hardware.device: auto")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise InputError(f"hardware.device: {setting!r} but Apple MPS is not available; set hardware.device: auto")
    return device


def resolve_dtype(setting: str, device: torch.device) -> torch.dtype:
    """Return the torch dtype for a `hardware.dtype` setting (auto, float32, bfloat16, float16) on `device`."""
    if setting == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    return DTYPES[setting]


def describe(device: torch.device, dtype: torch.dtype) -> str:
    """Return a one-line description for the stage log, e.g. 'cuda (NVIDIA H100), bfloat16'."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else device.type
    return f"{device} ({name}), {str(dtype).removeprefix('torch.')}"
