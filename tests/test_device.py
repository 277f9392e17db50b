"""Device and dtype choice: auto picks the accelerator, explicit settings are honoured or refused clearly.

Availability is monkeypatched, so every branch runs on this CPU machine and none repeats the code under test.
"""

from __future__ import annotations

import pytest
import torch

from potstill.device import describe, resolve_device, resolve_dtype
from potstill.errors import InputError


@pytest.fixture
def machine(monkeypatch):
    """Set what torch reports: machine(cuda=..., mps=..., bf16=...)."""

    def set_(cuda: bool = False, mps: bool = False, bf16: bool = False):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: bf16)
        monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)

    return set_


@pytest.mark.parametrize("cuda, mps, expected", [(True, True, "cuda"), (False, True, "mps"), (False, False, "cpu")])
def test_auto_picks_cuda_then_mps_then_cpu(machine, cuda, mps, expected):
    machine(cuda=cuda, mps=mps)
    assert resolve_device("auto").type == expected


@pytest.mark.parametrize("cuda_bf16, expected", [(True, torch.bfloat16), (False, torch.float32)])
def test_auto_dtype_is_bf16_only_on_a_cuda_device_that_has_it(machine, cuda_bf16, expected):
    machine(cuda=True, bf16=cuda_bf16)
    assert resolve_dtype("auto", torch.device("cuda")) == expected
    assert resolve_dtype("auto", torch.device("cpu")) == torch.float32  # never bf16 on the CPU by default
    assert resolve_dtype("auto", torch.device("mps")) == torch.float32
    assert resolve_dtype("bfloat16", torch.device("cpu")) == torch.bfloat16  # forced: honoured


def test_asking_for_an_absent_accelerator_names_the_key_and_the_fix(machine):
    machine(cuda=False, mps=False)
    with pytest.raises(InputError, match=r"hardware\.device: 'cuda'.*no CUDA device.*hardware\.device: auto"):
        resolve_device("cuda")
    with pytest.raises(InputError, match=r"hardware\.device: 'cuda:1'"):
        resolve_device("cuda:1")
    with pytest.raises(InputError, match=r"hardware\.device: 'mps' but Apple MPS is not available"):
        resolve_device("mps")
    machine(cuda=True)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)  # present: honoured, index kept


def test_the_stage_log_says_what_was_picked():
    assert describe(torch.device("cpu"), torch.float32) == "cpu (cpu), float32"
    assert describe(torch.device("cpu"), torch.bfloat16) == "cpu (cpu), bfloat16"
