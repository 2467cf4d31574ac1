"""What determines a backend's answers, as a short stable string: the response cache's key.

* Weights on disk (``local/``, ``vllm/``): every file a checkpoint or adapter dir loads from
  (weights, configs, tokenizer files, chat template) by name, size and mtime_ns, plus a sha256 of
  the small JSON configs' contents. Only ``stat`` touches the weights, so a 7B checkpoint costs
  microseconds; a checkpoint re-saved at the same path gets a new fingerprint; a README does not
  count. A single file (the embedded GGUF) counts by its path, size and mtime_ns.
* Hosted models: the spec plus the endpoint hosts (``scheme://host:port``), never a key, a
  password or a path.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Iterable
from urllib.parse import urlsplit

#: Suffixes of the files a checkpoint or adapter dir is loaded from.
WEIGHT_SUFFIXES = frozenset({".safetensors", ".bin", ".pt", ".pth", ".gguf", ".json", ".jinja", ".model", ".tiktoken"})
#: Tokenizer files without a telling suffix.
TOKENIZER_NAMES = frozenset({"merges.txt", "vocab.txt"})
#: JSON files up to this size are hashed by content too (configs, adapter_config, generation_config).
SMALL_JSON_BYTES = 256 * 1024
DIGEST_CHARS = 16
_DEFAULT_PORTS = {"https": 443, "http": 80}


def digest(payload: object) -> str:
    """Short hex sha256 of a JSON-able payload."""
    data = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode("utf-8")
    return hashlib.sha256(data).hexdigest()[:DIGEST_CHARS]


def counts_for_answers(name: str) -> bool:
    """Whether a file of a checkpoint/adapter dir is one the model is loaded from."""
    return Path(name).suffix.lower() in WEIGHT_SUFFIXES or name in TOKENIZER_NAMES


def weights_fingerprint(path: str | os.PathLike[str]) -> str:
    """Hex digest of a checkpoint/adapter dir (its top-level model files) or of one weights file.

    Raises ``FileNotFoundError`` if ``path`` does not exist. Symlinks are followed (hub caches
    link to blobs), so the digest follows the linked files.
    """
    target = Path(path).expanduser()
    if target.is_file():
        st = target.stat()
        return digest({"file": str(target.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns})
    if not target.is_dir():
        raise FileNotFoundError(f"no checkpoint at {target}")
    entries: list[list[object]] = []
    with os.scandir(target) as listing:
        for entry in listing:
            if not counts_for_answers(entry.name):
                continue
            try:
                if not entry.is_file():
                    continue
                st = entry.stat()
            except FileNotFoundError:  # a dangling link or a file removed while we list
                continue
            row: list[object] = [entry.name, st.st_size, st.st_mtime_ns]
            if entry.name.lower().endswith(".json") and st.st_size <= SMALL_JSON_BYTES:
                row.append(hashlib.sha256(Path(entry.path).read_bytes()).hexdigest())
            entries.append(row)
    entries.sort(key=lambda row: str(row[0]))
    return digest({"dir": entries})


def endpoint_host(url: str) -> str:
    """``scheme://host:port`` of ``url``: credentials, path, query and fragment dropped."""
    parts = urlsplit(url if "://" in url else f"https://{url}")
    scheme = (parts.scheme or "https").lower()
    host = (parts.hostname or "").lower()
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:  # a malformed port: keep the host alone rather than fail
        port = None
    return f"{scheme}://{host}:{port or _DEFAULT_PORTS.get(scheme, 0)}"


def endpoint_fingerprint(spec: str, base_urls: Iterable[str]) -> str:
    """``spec@host1,host2``: the model and where it is served, sorted, never a key or password."""
    hosts = sorted({endpoint_host(u) for u in base_urls if u})
    return f"{spec}@{','.join(hosts)}" if hosts else spec
