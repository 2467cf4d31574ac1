"""Where a request's stable prefix is, for the providers' prompt caches.

Each call of a record extends the previous one: call k+1's messages are call k's plus the reply
plus one new user turn, and every record of a constitution starts with the same system prompt and
few-shot examples. A backend knows neither constitutions nor records, so :class:`PrefixPlanner`
learns both from the requests it sees, cheaply (Python hashes of the message strings, which the
interpreter caches on the string objects the pipelines reuse):

* **conversations**: a request whose messages minus the last two (reply + new turn) equal an
  earlier request continues that request's conversation and gets its key. OpenAI routes by
  ``prompt_cache_key`` (plus the first ~256 tokens), so one key per conversation keeps its calls
  on the cache that holds its prefix; the key is ``cai-`` + a sha256 of the conversation's first
  request, so it is stable across processes and differs per record.
* **shared prefixes**: the longest common run of leading messages of two conversation starts (the
  system prompt, the few-shot examples) is remembered as a boundary every later request that
  starts the same way gets a breakpoint at.

Anthropic caches only where ``cache_control`` marks a block (at most 4), and only prefixes of at
least the model's minimum length (:func:`anthropic_min_tokens`); :meth:`PrefixPlanner.breakpoints`
picks the end of the conversation so far (everything before the final user turn: the previous
call's request and reply, which the next call repeats), the learned shared boundaries and never the
final turn itself, each only where the estimated prefix (characters / 3.5, Anthropic's rule of
thumb, + 4 per message) reaches the minimum; a breakpoint under it would be ignored by the API.
"""

from __future__ import annotations

import hashlib
from typing import Sequence

from cai_engine.models.base import Message

#: Anthropic's minimum cacheable prefix by model name prefix (longest match wins), in tokens.
_ANTHROPIC_MIN: dict[str, int] = {
    "claude-3-haiku": 2048,
    "claude-3-5-haiku": 2048,
    "claude-haiku-4-5": 4096,
    "claude-opus-4-5": 4096,
    "claude-opus-4-6": 4096,
    "claude-opus-4-1": 1024,
    "claude-opus-4": 1024,
    "claude-3-opus": 1024,
    "claude-sonnet": 1024,
    "claude-3-5-sonnet": 1024,
    "claude-3-7-sonnet": 1024,
}
ANTHROPIC_DEFAULT_MIN = 1024
MAX_BREAKPOINTS = 4
#: Anthropic's documented rule of thumb: a Claude token is about 3.5 English characters.
ANTHROPIC_CHARS_PER_TOKEN = 3.5
# Per-message framing tokens (role markers) in the estimate.
_MESSAGE_OVERHEAD = 4


def anthropic_min_tokens(model_name: str) -> int:
    """The documented minimum cacheable prefix for an Anthropic model (1,024 if unknown)."""
    best = max((p for p in _ANTHROPIC_MIN if model_name.startswith(p)), key=len, default=None)
    return _ANTHROPIC_MIN[best] if best is not None else ANTHROPIC_DEFAULT_MIN


def estimate_tokens(text: str, chars_per_token: float = ANTHROPIC_CHARS_PER_TOKEN) -> int:
    return int(len(text) / chars_per_token) + _MESSAGE_OVERHEAD


class PrefixPlanner:
    """Conversation keys and shared boundaries learned from one backend's requests (one event loop)."""

    def __init__(self, max_entries: int = 20_000, max_shared: int = 64):
        self.max_entries = max_entries
        self.max_shared = max_shared
        self._keys: dict[int, str] = {}  # prefix hash of a request's messages -> conversation key
        self._shared: dict[int, int] = {}  # prefix hash -> its length in messages
        self._last_start: list[int] | None = None
        self.continued = 0
        self.started = 0

    @staticmethod
    def prefix_hashes(messages: Sequence[Message]) -> list[int]:
        """``out[i]``: a hash of ``messages[:i + 1]``."""
        out: list[int] = []
        h = 0
        for m in messages:
            h = hash((h, m.role, m.content))
            out.append(h)
        return out

    def _remember(self, table: dict[int, object], key: int, value: object, cap: int) -> None:
        if key not in table and len(table) >= cap:
            del table[next(iter(table))]  # oldest first (dicts keep insertion order)
        table[key] = value

    def conversation_key(self, messages: Sequence[Message], hashes: list[int] | None = None) -> str:
        """The key of the conversation this request belongs to (see the module docstring)."""
        hashes = hashes if hashes is not None else self.prefix_hashes(messages)
        n = len(messages)
        key = self._keys.get(hashes[n - 3]) if n >= 3 else None
        if key is not None:
            self.continued += 1
        else:
            self.started += 1
            digest = hashlib.sha256()
            for m in messages:
                digest.update(m.role.encode())
                digest.update(b"\0")
                digest.update(m.content.encode("utf-8", "surrogatepass"))
                digest.update(b"\1")
            key = "cai-" + digest.hexdigest()[:24]
            self._learn_shared(hashes)
        self._remember(self._keys, hashes[-1], key, self.max_entries)  # type: ignore[arg-type]
        return key

    def _learn_shared(self, hashes: list[int]) -> None:
        last, self._last_start = self._last_start, hashes
        if last is None:
            return
        common = 0
        for a, b in zip(last, hashes):
            if a != b:
                break
            common += 1
        # A shared boundary is a proper prefix of both requests (never a whole request).
        if 0 < common < min(len(last), len(hashes)):
            self._remember(self._shared, hashes[common - 1], common, self.max_shared)  # type: ignore[arg-type]

    def breakpoints(self, messages: Sequence[Message], min_tokens: int, hashes: list[int] | None = None,
                    chars_per_token: float = ANTHROPIC_CHARS_PER_TOKEN) -> list[int]:
        """Indices of ``messages`` to mark with ``cache_control``, at most 4, never the last one."""
        hashes = hashes if hashes is not None else self.prefix_hashes(messages)
        n = len(messages)
        if n < 2:
            return []
        candidates = [n - 2]  # the conversation so far
        candidates += sorted((i for i in range(n - 2) if self._shared.get(hashes[i]) == i + 1), reverse=True)
        chosen: list[int] = []
        tokens = 0
        cumulative = []
        for m in messages[: n - 1]:
            tokens += estimate_tokens(m.content, chars_per_token)
            cumulative.append(tokens)
        for i in candidates:
            if cumulative[i] >= min_tokens and i not in chosen:
                chosen.append(i)
            if len(chosen) == MAX_BREAKPOINTS:
                break
        return sorted(chosen)
