"""Device and dtype choice: auto picks the accelerator, explicit settings are honoured or refused clearly."""

from __future__ import annotations

import pytest
import torch

from potstill.device import describe, resolve_device, resolve_dtype
from potstill.errors import InputError


def test_auto_picks_cuda_then_mps_then_cpu():
    device = resolve_device("auto")
    if torch.cuda.is_available():
        assert device.type == "cuda"
    elif torch.backends.mps.is_available():
        assert device.type == "mps"
    else:
        assert device == torch.device("cpu")


def test_auto_dtype_is_bf16_only_on_a_cuda_device_that_has_it():
    assert resolve_dtype("auto", torch.device("cpu")) == torch.float32
    assert resolve_dtype("bfloat16", torch.device("cpu")) == torch.bfloat16  # forced: honoured
    if torch.cuda.is_available():
        expected = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
        assert resolve_dtype("auto", torch.device("cuda")) == expected


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_asking_for_cuda_without_one_names_the_key_and_the_fix():
    with pytest.raises(InputError, match=r"hardware\.device: 'cuda'.*no CUDA device.*hardware\.device: auto"):
        resolve_device("cuda")


def test_the_stage_log_says_what_was_picked():
    assert describe(torch.device("cpu"), torch.float32) == "cpu (cpu), float32"
