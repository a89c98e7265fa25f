"""Runtime: device choice, autocast policy, seeding and RNG state round trips."""

from __future__ import annotations

import random
import warnings

import numpy as np
import pytest
import torch

import common.runtime as runtime_mod
from common.config import RuntimeConfig
from common.runtime import (
    resolve_precision,
    rng_state,
    seed_everything,
    select_device,
    set_rng_state,
    setup_runtime,
)


def test_auto_device_is_cpu_here_and_explicit_cuda_fails_clearly():
    if torch.cuda.is_available():
        pytest.skip("this test describes a machine without CUDA")
    assert select_device("auto").type == "cpu"
    with pytest.raises(RuntimeError, match="runtime.device='cuda' but CUDA is not available"):
        select_device("cuda")


def test_precision_policy():
    cpu = torch.device("cpu")
    assert resolve_precision("fp32", cpu) is None
    assert resolve_precision("fp16", cpu) is torch.float16
    native = runtime_mod.cpu_has_native_bf16()
    assert resolve_precision("auto", cpu) is (torch.bfloat16 if native else None)
    with pytest.raises(ValueError, match="runtime.precision"):
        resolve_precision("fp8", cpu)


def test_forced_bf16_is_honoured_and_warns_only_where_it_is_emulated(monkeypatch):
    cpu = torch.device("cpu")
    for native in (True, False):
        monkeypatch.setattr(runtime_mod, "cpu_has_native_bf16", lambda native=native: native)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert resolve_precision("bf16", cpu) is torch.bfloat16
            assert resolve_precision("auto", cpu) is (torch.bfloat16 if native else None)
        said = [str(w.message) for w in caught]
        assert any("without native bf16" in m for m in said) == (not native), said


@pytest.mark.filterwarnings("ignore:runtime.precision=bf16 on a CPU without native bf16")
def test_autocast_context_runs_matmul_in_bf16():
    rt = setup_runtime(RuntimeConfig(device="cpu", precision="bf16"), seed=0)
    a = torch.randn(4, 4)
    with rt.autocast():
        assert (a @ a).dtype == torch.bfloat16
    rt32 = setup_runtime(RuntimeConfig(device="cpu", precision="fp32"), seed=0)
    with rt32.autocast():
        assert (a @ a).dtype == torch.float32


def test_rng_state_round_trip_restores_every_generator():
    seed_everything(5)
    state = rng_state()
    first = (random.random(), float(np.random.rand()), torch.rand(3))
    set_rng_state(state)
    again = (random.random(), float(np.random.rand()), torch.rand(3))
    assert first[0] == again[0] and first[1] == again[1]
    torch.testing.assert_close(first[2], again[2], rtol=0, atol=0)


def test_rng_state_survives_weights_only_checkpoint(tmp_path):
    seed_everything(9)
    torch.save({"rng": rng_state()}, tmp_path / "r.pt")
    expected = torch.rand(2)
    set_rng_state(torch.load(tmp_path / "r.pt", weights_only=True)["rng"])
    torch.testing.assert_close(torch.rand(2), expected, rtol=0, atol=0)


def test_single_process_seed_is_seed_plus_rank_zero():
    # Without torchrun the rank is 0, so seed s gives the same stream as seed_everything(s);
    # the two-rank case is covered by test_training's torchrun test (ranks draw other data).
    setup_runtime(RuntimeConfig(device="cpu"), seed=3)
    a = torch.rand(2)
    seed_everything(3)
    torch.testing.assert_close(a, torch.rand(2), rtol=0, atol=0)
