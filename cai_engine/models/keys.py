"""API keys: from an environment variable or a key file, never from config values, never printed.

A resolved key is registered with :func:`scrub`, which every error message that may quote SDK text
passes through (real APIs echo part or all of a bad key in their 401 message). :class:`Secret`
keeps the key out of ``repr``/``str``, so it cannot leak through logging of the backend object.
:func:`redact_url` / :func:`redact` take credentials out of URLs (``https://user:pass@host``,
``?api_key=...``) before a config is written into OUT (``manifest.json``, ``run.yaml``).
"""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from cai_engine.errors import ModelError
from cai_engine.models.base import ModelConfig

#: Sent to OpenAI-compatible servers that need no key (vLLM serve, llama.cpp, Ollama).
NO_KEY = "EMPTY"

_KNOWN: set[str] = set()
_LOCK = threading.Lock()


class Secret:
    """A string that does not show itself: ``repr``/``str`` print ``Secret(***)``."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret(***)"

    __str__ = __repr__


def remember(key: str) -> None:
    """Register a key so :func:`scrub` removes it (and long fragments of it) from messages."""
    if key and key != NO_KEY and len(key) >= 8:
        with _LOCK:
            _KNOWN.add(key)


def scrub(text: str) -> str:
    """Replace every known key in ``text`` with ``***``; also its long prefixes/suffixes, which
    some providers quote in masked form (``sk-abc...xyz``)."""
    with _LOCK:
        keys = sorted(_KNOWN, key=len, reverse=True)
    for key in keys:
        if key in text:
            text = text.replace(key, "***")
        for frag in (key[:12], key[-12:]):
            if len(frag) >= 12 and frag in text:
                text = text.replace(frag, "***")
    return text


def resolve_key(config: ModelConfig, default_env: str, allow_missing: bool = False) -> Secret:
    """The key for ``config``: ``api_key_file``, else ``api_key_env``, else ``default_env``.

    ``allow_missing`` (OpenAI-compatible servers given by ``base_urls`` with no key configured)
    returns the dummy :data:`NO_KEY` instead of failing. Errors are one line naming the variable
    or file and how to fix it; they never contain the key.
    """
    if config.api_key_file is not None:
        path = Path(config.api_key_file).expanduser()
        if not path.is_file():
            raise ModelError(f"{config.spec}: api_key_file {path} not found; write the key into it or use api_key_env")
        key = path.read_text(encoding="utf-8").strip()
        if not key:
            raise ModelError(f"{config.spec}: api_key_file {path} is empty; write the key into it")
        remember(key)
        return Secret(key)
    env = config.api_key_env
    if env is None and allow_missing:
        return Secret(NO_KEY)
    env = env or default_env
    key = os.environ.get(env, "").strip()
    if not key:
        raise ModelError(
            f"{config.spec}: environment variable {env} is not set; export {env}=YOUR_KEY "
            "(or set api_key_env / api_key_file in the model config)"
        )
    remember(key)
    return Secret(key)


#: Query parameters that carry credentials (compared lower-case, ``-`` read as ``_``).
SECRET_QUERY_NAMES = frozenset({"key", "token", "api_key", "apikey", "access_token", "auth", "password", "secret",
                                "sig", "signature", "client_secret", "refresh_token", "id_token"})
_SECRET_QUERY_SUFFIXES = ("_key", "_token", "_secret", "_password", "apikey")
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>`]+")


def _secret_query_name(name: str) -> bool:
    norm = name.strip().lower().replace("-", "_")
    return norm in SECRET_QUERY_NAMES or norm.endswith(_SECRET_QUERY_SUFFIXES)


def redact_url(url: str) -> str:
    """``url`` without credentials: userinfo (``user:pass@``) becomes ``***@`` and query parameters
    named like a key or token (``key``, ``token``, ``api_key``, ``access_token``, ``*_key``...) are
    dropped; scheme, host, port, path, other parameters and the fragment are kept. Text that does
    not parse as a URL with a host is returned unchanged."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
    except ValueError:
        return url
    if not parts.scheme or not netloc:
        return url
    if "@" in netloc:
        netloc = "***@" + netloc.rpartition("@")[2]
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        kept = [(k, v) for k, v in pairs if not _secret_query_name(k)]
        if len(kept) != len(pairs):
            query = urlencode(kept)
    if netloc == parts.netloc and query == parts.query:
        return url
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def redact_text(text: str) -> str:
    """Every URL inside ``text`` through :func:`redact_url`, then known keys through :func:`scrub`."""
    if "://" in text:
        text = _URL.sub(lambda m: redact_url(m.group(0)), text)
    return scrub(text)


def redact(data: Any) -> Any:
    """A copy of ``data`` (dicts, lists, tuples, strings; other values as they are) with every
    string, keys of mappings included, through :func:`redact_text`: what may be written into OUT."""
    if isinstance(data, str):
        return redact_text(data)
    if isinstance(data, dict):
        return {redact(k) if isinstance(k, str) else k: redact(v) for k, v in data.items()}
    if isinstance(data, list):
        return [redact(v) for v in data]
    if isinstance(data, tuple):
        return tuple(redact(v) for v in data)
    return data
