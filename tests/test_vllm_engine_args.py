"""The ``AsyncEngineArgs`` the vLLM backend builds from a ModelConfig (no vLLM needed: pure mapping)."""

from __future__ import annotations

from cai_engine.models.base import ModelConfig
from cai_engine.models.vllm_backend import engine_kwargs


def test_cpu_defaults_to_float32_because_auto_casts_to_bfloat16_on_bf16_cpus() -> None:
    kwargs, adapter = engine_kwargs("/m", ModelConfig(spec="vllm//m"), on_cpu=True)
    assert kwargs["dtype"] == "float32" and kwargs["enforce_eager"] is True and adapter is None


def test_config_dtype_then_engine_args_override_the_cpu_default() -> None:
    assert engine_kwargs("/m", ModelConfig(spec="vllm//m", dtype="bfloat16"), on_cpu=True)[0]["dtype"] == "bfloat16"
    both = ModelConfig(spec="vllm//m", dtype="bfloat16", engine_args={"dtype": "float16"})
    assert engine_kwargs("/m", both, on_cpu=True)[0]["dtype"] == "float16"


def test_gpu_leaves_dtype_to_vllm_unless_set() -> None:
    assert "dtype" not in engine_kwargs("/m", ModelConfig(spec="vllm//m"), on_cpu=False)[0]
    assert engine_kwargs("/m", ModelConfig(spec="vllm//m", dtype="float16"), on_cpu=False)[0]["dtype"] == "float16"
