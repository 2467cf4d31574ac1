"""A fake OpenAI + Anthropic provider on 127.0.0.1 that speaks the real wire protocol, with fault knobs.

The SDKs talk to it over real sockets (the openai SDK runs on ``httpx2``, which httpx mocks do not
see), so the whole path — SDK, our backends, the engine's retries and limits — is exercised.

Endpoints: OpenAI ``/v1/chat/completions``, ``/v1/files`` (+ ``/v1/files/ID/content``),
``/v1/batches`` (+ ``/v1/batches/ID``, ``/v1/batches?...`` list); Anthropic ``/v1/messages``,
``/v1/messages/batches`` (+ retrieve and ``/results``); ``GET /_stats`` (counters and the times of
answered requests, for benchmarks that run the fake in its own process).

Replies are deterministic functions of the request: ``"echo:" + last user message + " #" + hash``
so a test can check that every prompt got *its* answer (``reply_words`` pads them with filler to
that many words; ``reply_bytes`` to about that many bytes, within the request's ``max_tokens`` so
the padding never cuts a reply: the scale benchmarks' long replies). Faults are decided per request
body and attempt number (``hash(body, attempt) < p``), so they do not depend on scheduling order.

Like the real providers it also

* **enforces a quota** (``quota=Quota(rpm=..., tpm=..., input_tpm=..., output_tpm=...)``): each
  per-minute limit is a bucket holding ``window_s`` of it (60: the whole minute; tests use ~1 s so
  a short run meets it), requests beyond it get 429 + ``retry-after``; every reply carries the
  rate-limit headers (OpenAI ``x-ratelimit-*``, Anthropic ``anthropic-ratelimit-*``). No quota: no
  headers, nothing refused.
* **caches prompt prefixes**: OpenAI style, automatically for prompts of 1,024+ tokens in 128-token
  steps (``prompt_tokens_details.cached_tokens``), on one of ``cache_machines`` caches chosen by
  ``prompt_cache_key`` + the first 256 tokens (a key sending more than 15 requests a minute
  overflows onto random machines); Anthropic style, only at ``cache_control`` breakpoints (at most
  4, else 400) whose prefix reaches the model's documented minimum, with the 20-block lookback,
  reporting ``cache_read_input_tokens`` / ``cache_creation_input_tokens`` apart from
  ``input_tokens``. Tokens are words, or ``token_chars`` characters each when set.

Run standalone (for benchmarks, so the server does not share the client's GIL)::

    python tests/fake_provider.py --latency 0.05      # prints "PORT <n>" then serves
    python tests/fake_provider.py --rpm 3000 --window 1 --reply-words 350 --token-chars 3.5
    python tests/fake_provider.py --latency 0.05 --reply-bytes 3000   # benchmarks/scale.py's server
"""

from __future__ import annotations

import collections
import email.parser
import email.policy
import hashlib
import json
import math
import random
import socket
import threading
import time
from collections import Counter
from datetime import datetime, timezone
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

FAULT_KINDS = ("429", "500", "503", "slow", "drop", "malformed", "truncated", "400key")
# "400key": a non-retryable 400 whose message quotes the caller's Authorization header (whole and
# masked ``sk-abc...xyz``), as real APIs do for some bad requests: the record's error must be scrubbed.


@dataclass
class Faults:
    """Fault knobs. ``rates`` maps a kind in FAULT_KINDS to a probability per attempt."""

    rates: dict[str, float] = field(default_factory=dict)
    retry_after_s: float | None = 0.0  # value of Retry-After on 429 (None: header absent)
    retry_after_ms: float | None = None  # value of retry-after-ms on 429
    slow_s: float = 2.0  # how long a "slow" reply sleeps (tests set the client timeout below it)
    max_faults_per_body: int = 3  # after this many faults a body always succeeds
    seed: int = 0
    script: list[str] = field(default_factory=list)  # faults applied to the next requests, in order
    batch_item_error_rate: float = 0.0  # batch items that come back as errors

    def pick(self, body_key: str, attempt: int) -> str | None:
        if attempt >= self.max_faults_per_body:
            return None
        rng = random.Random(f"{self.seed}:{body_key}:{attempt}")
        roll = rng.random()
        acc = 0.0
        for kind in FAULT_KINDS:
            acc += self.rates.get(kind, 0.0)
            if roll < acc:
                return kind
        return None


def reply_text(last_user: str) -> str:
    """The deterministic answer for a prompt: tests recompute it to check each record's answer."""
    digest = hashlib.sha256(last_user.encode()).hexdigest()[:8]
    return f"echo:{last_user} #{digest}"


def _last_user(messages: list[dict[str, Any]]) -> str:
    for m in reversed(messages):
        if m.get("role") == "user":
            content = m.get("content")
            if isinstance(content, list):
                return "".join(b.get("text", "") for b in content if isinstance(b, dict))
            return str(content)
    return ""


def _words(text: str) -> list[str]:
    return text.split() or [""]


def _text(content: Any) -> str:
    """The text of a message's content: a string or a list of blocks."""
    if isinstance(content, list):
        return "".join(str(b.get("text", "")) for b in content if isinstance(b, dict))
    return "" if content is None else str(content)


_FILLER = ("alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa "
           "quebec romeo sierra tango uniform victor whiskey xray yankee zulu principle answer careful honest").split()


def _filler(digest: bytes, i: int) -> str:
    """Filler word ``i`` for a text whose sha256 is ``digest``."""
    return _FILLER[(digest[i % 32] + 7 * i) % len(_FILLER)]


def _pad(text: str, words: int) -> str:
    """``text`` + deterministic filler (a function of ``text``) up to ``words`` words."""
    have = len(text.split())
    if have >= words:
        return text
    digest = hashlib.sha256(text.encode()).digest()
    extra = [_filler(digest, i) for i in range(words - have)]
    return text + " " + " ".join(extra)


def _pad_bytes(text: str, nbytes: int, max_words: int) -> str:
    """``text`` + deterministic filler to about ``nbytes`` bytes, never past ``max_words`` words."""
    digest = hashlib.sha256(text.encode()).digest()
    size = len(text.encode())
    extra: list[str] = []
    room = max_words - len(text.split())
    while size < nbytes and len(extra) < room:
        word = _filler(digest, len(extra))
        extra.append(word)
        size += len(word) + 1
    return text + " " + " ".join(extra) if extra else text


@dataclass
class Quota:
    """Per-minute limits the fake enforces and reports. ``window_s``: how much of a minute's worth
    each bucket holds (the real APIs enforce per-minute limits over shorter windows too)."""

    rpm: int | None = None
    tpm: int | None = None  # OpenAI: prompt tokens + max_tokens; Anthropic: input + output
    input_tpm: int | None = None  # Anthropic: uncached input tokens (cache reads do not count)
    output_tpm: int | None = None  # Anthropic: max_tokens at admission
    window_s: float = 60.0


class _Bucket:
    def __init__(self, per_minute: int, window_s: float):
        self.limit = per_minute
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, self.rate * window_s)
        self.level = self.capacity
        self.stamp = time.monotonic()

    def refill(self) -> None:
        now = time.monotonic()
        self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
        self.stamp = now

    def wait_for(self, amount: float) -> float:
        """Seconds until ``amount`` is available (0: now)."""
        need = min(amount, self.capacity)
        return 0.0 if self.level >= need else (need - self.level) / self.rate

    def reset_s(self) -> float:
        return max(0.0, (self.capacity - self.level) / self.rate)


def _go_duration(seconds: float) -> str:
    """OpenAI's reset format: ``20ms``, ``1.5s``, ``6m0s``."""
    if seconds < 1:
        return f"{max(1, round(seconds * 1000))}ms"
    minutes, rest = divmod(seconds, 60)
    return f"{int(minutes)}m{rest:.0f}s" if minutes else f"{rest:.3g}s"


_ANTHROPIC_MIN = {"claude-3-haiku": 2048, "claude-3-5-haiku": 2048, "claude-haiku-4-5": 4096,
                  "claude-opus-4-5": 4096}


def anthropic_min_tokens(model: str) -> int:
    """The documented minimum cacheable prefix (1,024 for Sonnet, Opus 4/4.1 and unknown models)."""
    best = max((p for p in _ANTHROPIC_MIN if model.startswith(p)), key=len, default=None)
    return _ANTHROPIC_MIN[best] if best else 1024


class FakeProvider:
    """State shared by all handler threads: counters, faults, files and batches."""

    def __init__(self, latency_s: float = 0.0, faults: Faults | None = None, api_key: str | None = None,
                 quota: Quota | None = None, reply_words: int = 0, token_chars: float | None = None,
                 cache_machines: int = 4, reply_bytes: int = 0):
        self.latency_s = latency_s
        self.quota = quota
        self.reply_words = reply_words  # pad replies to this many words (0: the bare echo)
        self.reply_bytes = reply_bytes  # pad replies to about this many bytes within max_tokens (0: no)
        self.token_chars = token_chars  # None: a token is a word
        self.cache_machines = cache_machines
        self.cache_ttl_s = 300.0
        self._buckets: dict[str, _Bucket] = {}
        self._openai_cache: dict[tuple[int, bytes], float] = {}  # (machine, prefix digest) -> expiry
        self._anthropic_cache: dict[bytes, float] = {}
        self._route_times: dict[bytes, collections.deque[float]] = {}
        self.ok_times: list[float] = []  # monotonic time of every answered chat/messages request
        # Per Anthropic request: the roles of its blocks (system first) and which blocks had cache_control.
        self.cache_control_seen: list[dict[str, list[Any]]] = []
        self.prompt_cache_keys: list[str | None] = []  # per OpenAI chat request
        self.faults = faults or Faults()
        self.api_key = api_key  # when set, other keys get 401
        self.batch_delay_s = 0.0  # batches stay in_progress this long after creation
        self.hold_batches = False  # while True, batches never complete
        self.lock = threading.RLock()
        self.counts: Counter[str] = Counter()
        self.attempts: Counter[str] = Counter()
        self.request_times: list[float] = []
        self.seen_keys: set[str] = set()
        self.files: dict[str, bytes] = {}
        self.batches: dict[str, dict[str, Any]] = {}
        self.batch_custom_ids: list[list[str]] = []  # custom ids of every batch created, in order
        self.server: ThreadingHTTPServer | None = None
        self.thread: threading.Thread | None = None

    # ---- lifecycle -------------------------------------------------------------------------
    def start(self, port: int = 0) -> "FakeProvider":
        handler = type("Handler", (_Handler,), {"provider": self})
        server = _Server(("127.0.0.1", port), handler)
        server.daemon_threads = True
        self.server = server
        self.thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def openai_base(self) -> str:
        return f"{self.url}/v1"

    # ---- tokens, quota, prompt caches -------------------------------------------------------
    def tokens(self, text: str) -> list[str]:
        """The text as tokens: words, or chunks of ``token_chars`` characters (may be fractional: 3.5)."""
        if self.token_chars:
            step = self.token_chars
            n = max(1, math.ceil(len(text) / step))
            return [text[round(i * step):round((i + 1) * step)] for i in range(n)]
        return _words(text)

    def count(self, kind: str, n: int = 1) -> None:
        with self.lock:
            self.counts[kind] += n

    def _bucket_specs(self, style: str, costs: dict[str, float]) -> list[tuple[str, int, float]]:
        q = self.quota
        assert q is not None
        specs = [("requests", q.rpm, 1.0), ("tokens", q.tpm, costs["tokens"])]
        if style == "anthropic":
            specs += [("input_tokens", q.input_tpm, costs["input"]), ("output_tokens", q.output_tpm, costs["output"])]
        return [(name, limit, amount) for name, limit, amount in specs if limit]

    def admit(self, style: str, costs: dict[str, float]) -> tuple[float, dict[str, str]]:
        """Take this request from the quota: (0, headers) when admitted, (retry_after_s, headers) when refused."""
        if self.quota is None:
            return 0.0, {}
        with self.lock:
            specs = self._bucket_specs(style, costs)
            buckets = []
            for name, limit, amount in specs:
                b = self._buckets.get(name)
                if b is None or b.limit != limit:
                    b = self._buckets[name] = _Bucket(limit, self.quota.window_s)
                b.refill()
                buckets.append((name, b, amount))
            wait = max((b.wait_for(amount) for _, b, amount in buckets), default=0.0)
            if wait == 0.0:
                for _, b, amount in buckets:
                    b.level -= amount
            else:
                self.counts["quota:429"] += 1
            return wait, self._quota_headers(style, buckets, wait)

    def _quota_headers(self, style: str, buckets: list[tuple[str, _Bucket, float]], wait: float) -> dict[str, str]:
        headers: dict[str, str] = {}
        for name, b, _ in buckets:
            remaining = str(max(0, math.floor(b.level)))
            if style == "openai":
                if name not in ("requests", "tokens"):
                    continue
                headers[f"x-ratelimit-limit-{name}"] = str(b.limit)
                headers[f"x-ratelimit-remaining-{name}"] = remaining
                headers[f"x-ratelimit-reset-{name}"] = _go_duration(b.reset_s())
            else:
                label = name.replace("_", "-")
                when = datetime.fromtimestamp(time.time() + b.reset_s(), tz=timezone.utc)
                headers[f"anthropic-ratelimit-{label}-limit"] = str(b.limit)
                headers[f"anthropic-ratelimit-{label}-remaining"] = remaining
                headers[f"anthropic-ratelimit-{label}-reset"] = when.isoformat().replace("+00:00", "Z")
        if wait:
            headers["retry-after"] = str(max(1, math.ceil(wait)))
            if style == "openai":
                headers["retry-after-ms"] = str(max(1, math.ceil(wait * 1000)))
        return headers

    def _openai_cached(self, req: dict[str, Any], prompt_tokens: int) -> int:
        """Cached prompt tokens for this request (and remember its prefixes), OpenAI style."""
        with self.lock:
            self.prompt_cache_keys.append(req.get("prompt_cache_key"))
        if prompt_tokens < 1024:
            return 0
        digest = hashlib.sha256()
        marks: list[tuple[int, bytes]] = []
        head = hashlib.sha256()
        position = 0
        for m in req.get("messages", []):
            digest.update(f"<{m.get('role')}>".encode())
            for tok in self.tokens(_text(m.get("content"))):
                digest.update(tok.encode() + b"\0")
                position += 1
                if position <= 256:
                    head.update(tok.encode() + b"\0")
                if position >= 1024 and (position - 1024) % 128 == 0:
                    marks.append((position, digest.copy().digest()))
        route = hashlib.sha256(str(req.get("prompt_cache_key") or "").encode() + head.digest()).digest()
        now = time.monotonic()
        with self.lock:
            times = self._route_times.setdefault(route, collections.deque())
            times.append(now)
            while times and times[0] < now - 60:
                times.popleft()
            if len(times) > 15:  # overflow: this prefix-key combination spreads over machines
                machine = random.Random(json.dumps(req, sort_keys=True)).randrange(self.cache_machines)
            else:
                machine = int.from_bytes(route[:4], "big") % self.cache_machines
            cached = 0
            for pos, d in marks:
                if self._openai_cache.get((machine, d), 0.0) > now:
                    cached = pos
            for _, d in marks:
                self._openai_cache[(machine, d)] = now + self.cache_ttl_s
        return cached

    def _anthropic_usage(self, req: dict[str, Any]) -> dict[str, int]:
        """input / cache read / cache write tokens of this request, Anthropic style."""
        blocks: list[tuple[str, str, bool]] = []  # (role, text, has cache_control)
        system = req.get("system")
        if isinstance(system, list):
            blocks += [("system", str(b.get("text", "")), "cache_control" in b) for b in system]
        elif system:
            blocks.append(("system", str(system), False))
        for m in req.get("messages", []):
            content = m.get("content")
            if isinstance(content, list):
                blocks += [(m.get("role", ""), str(b.get("text", "")), "cache_control" in b) for b in content]
            else:
                blocks.append((m.get("role", ""), _text(content), False))
        digest = hashlib.sha256()
        cumulative, digests, total = [], [], 0
        for role, text, _ in blocks:
            toks = self.tokens(text)
            total += len(toks)
            digest.update(f"<{role}>".encode() + "\0".join(toks).encode() + b"\1")
            cumulative.append(total)
            digests.append(digest.copy().digest())
        breakpoints = [i for i, (_, _, marked) in enumerate(blocks) if marked]
        minimum = anthropic_min_tokens(str(req.get("model", "")))
        now = time.monotonic()
        read = written = 0
        with self.lock:
            self.cache_control_seen.append({"roles": [b[0] for b in blocks], "marked": breakpoints})
            hit = -1
            for b in breakpoints:
                for j in range(b, max(-1, b - 20), -1):
                    if self._anthropic_cache.get(digests[j], 0.0) > now:
                        hit = max(hit, j)
                        break
            if hit >= 0:
                read = cumulative[hit]
                self._anthropic_cache[digests[hit]] = now + self.cache_ttl_s
            valid = [b for b in breakpoints if cumulative[b] >= minimum]
            for b in valid:
                self._anthropic_cache[digests[b]] = now + self.cache_ttl_s
            if valid and cumulative[valid[-1]] > read:
                written = cumulative[valid[-1]] - read
        return {"input_tokens": total - read - written, "cache_creation_input_tokens": written,
                "cache_read_input_tokens": read}

    # ---- replies ---------------------------------------------------------------------------
    def chat_completion(self, req: dict[str, Any]) -> dict[str, Any]:
        last = _last_user(req.get("messages", []))
        text = reply_text(last)
        if self.reply_words:
            text = _pad(text, self.reply_words)
        stop = req.get("stop")
        stops = [stop] if isinstance(stop, str) else (stop or [])
        finish = "stop"
        for s in stops:
            if s and s in text:
                text = text[: text.index(s)]
        max_tokens = req.get("max_tokens") or req.get("max_completion_tokens") or 10_000
        if self.reply_bytes:
            text = _pad_bytes(text, self.reply_bytes, int(max_tokens))
        words = _words(text)
        if len(words) > max_tokens:
            text, finish = " ".join(words[:max_tokens]), "length"
            words = words[:max_tokens]
        choices = []
        for i in range(int(req.get("n") or 1)):
            logprobs = None
            if req.get("logprobs"):
                k = int(req.get("top_logprobs") or 0)
                content = []
                for j, w in enumerate(words):
                    top = [{"token": w, "logprob": -0.1, "bytes": None}]
                    top += [{"token": f"alt{a}", "logprob": -2.0 - a, "bytes": None} for a in range(max(0, k - 1))]
                    content.append({"token": w, "logprob": -0.1 - 0.01 * j, "bytes": None, "top_logprobs": top[:k]})
                logprobs = {"content": content, "refusal": None}
            choices.append({
                "index": i, "finish_reason": finish, "logprobs": logprobs,
                "message": {"role": "assistant", "content": text if i == 0 else f"{text} (sample {i})"},
            })
        prompt_tokens = sum(len(self.tokens(_text(m.get("content")))) for m in req.get("messages", []))
        completion = (len(words) if not self.token_chars else len(self.tokens(text))) * len(choices)
        usage: dict[str, Any] = {"prompt_tokens": prompt_tokens, "completion_tokens": completion,
                                 "total_tokens": prompt_tokens + completion}
        cached = self._openai_cached(req, prompt_tokens)
        if cached:
            usage["prompt_tokens_details"] = {"cached_tokens": cached, "audio_tokens": 0}
        return {
            "id": "chatcmpl-" + hashlib.sha256(json.dumps(req, sort_keys=True).encode()).hexdigest()[:12],
            "object": "chat.completion", "created": int(time.time()), "model": req.get("model", "fake"),
            "choices": choices,
            "usage": usage,
        }

    def anthropic_message(self, req: dict[str, Any]) -> dict[str, Any]:
        last = _last_user(req.get("messages", []))
        text = reply_text(last)
        if req.get("system"):
            text = f"[sys:{len(_text(req['system']))}] {text}"
        if self.reply_words:
            text = _pad(text, self.reply_words)
        stop_reason, stop_seq = "end_turn", None
        for s in req.get("stop_sequences") or []:
            if s and s in text:
                text, stop_reason, stop_seq = text[: text.index(s)], "stop_sequence", s
                break
        if self.reply_bytes:
            text = _pad_bytes(text, self.reply_bytes, int(req.get("max_tokens", 10_000)))
        words = _words(text)
        if len(words) > int(req.get("max_tokens", 10_000)):
            words = words[: int(req["max_tokens"])]
            text, stop_reason = " ".join(words), "max_tokens"
        output = len(words) if not self.token_chars else len(self.tokens(text))
        return {
            "id": "msg_" + hashlib.sha256(json.dumps(req, sort_keys=True).encode()).hexdigest()[:12],
            "type": "message", "role": "assistant", "model": req.get("model", "fake"),
            "content": [{"type": "text", "text": text}],
            "stop_reason": stop_reason, "stop_sequence": stop_seq,
            "usage": {**self._anthropic_usage(req), "output_tokens": output},
        }

    # ---- batches ---------------------------------------------------------------------------
    def batch_ready(self, batch: dict[str, Any]) -> bool:
        return not self.hold_batches and time.time() - batch["_created"] >= self.batch_delay_s

    def finish_openai_batch(self, batch: dict[str, Any]) -> None:
        out, err = [], []
        for line in self.files[batch["input_file_id"]].decode().splitlines():
            if not line.strip():
                continue
            item = json.loads(line)
            cid = item["custom_id"]
            if random.Random(f"{self.faults.seed}:batch:{cid}").random() < self.faults.batch_item_error_rate:
                err.append({"id": f"req_{cid}", "custom_id": cid, "response": None,
                            "error": {"code": "server_error", "message": "injected batch item failure"}})
            else:
                body = self.chat_completion(item["body"])
                out.append({"id": f"req_{cid}", "custom_id": cid, "error": None,
                            "response": {"status_code": 200, "request_id": f"r_{cid}", "body": body}})
        for name, rows in (("output_file_id", out), ("error_file_id", err)):
            if rows:
                fid = f"file-out{len(self.files)}"
                self.files[fid] = "".join(json.dumps(r) + "\n" for r in rows).encode()
                batch[name] = fid
        batch["status"] = "completed"
        batch["completed_at"] = int(time.time())
        batch["request_counts"] = {"total": len(out) + len(err), "completed": len(out), "failed": len(err)}

    def finish_anthropic_batch(self, batch: dict[str, Any]) -> None:
        rows = []
        for item in batch["_requests"]:
            cid = item["custom_id"]
            if random.Random(f"{self.faults.seed}:batch:{cid}").random() < self.faults.batch_item_error_rate:
                rows.append({"custom_id": cid, "result": {"type": "errored", "error": {
                    "type": "error", "error": {"type": "api_error", "message": "injected batch item failure"}}}})
            else:
                rows.append({"custom_id": cid, "result": {"type": "succeeded",
                                                          "message": self.anthropic_message(item["params"])}})
        batch["_results"] = "".join(json.dumps(r) + "\n" for r in rows).encode()
        batch["processing_status"] = "ended"
        batch["ended_at"] = "2025-01-01T00:00:00Z"
        batch["results_url"] = f"{self.url}/v1/messages/batches/{batch['id']}/results"
        ok = sum(1 for r in rows if r["result"]["type"] == "succeeded")
        batch["request_counts"] = {"processing": 0, "succeeded": ok, "errored": len(rows) - ok,
                                   "canceled": 0, "expired": 0}


class _Server(ThreadingHTTPServer):
    request_queue_size = 1024  # listen backlog: 64+ clients connect at once
    daemon_threads = True
    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients that gave up (timeouts, tests killing processes) are expected: stay quiet."""
        return


def _public(batch: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in batch.items() if not k.startswith("_")}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out at once, no 40 ms delayed-ACK stalls
    provider: FakeProvider

    def log_message(self, *args: Any) -> None:  # keep test output clean
        return

    # ---- plumbing --------------------------------------------------------------------------
    def _send(self, status: int, payload: Any, headers: dict[str, str] | None = None,
              raw: bytes | None = None, content_type: str = "application/json") -> None:
        body = raw if raw is not None else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _error(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        self._send(status, {"error": {"message": message, "type": "fake_error", "code": str(status)},
                            "type": "error"}, headers)

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _key(self) -> str:
        auth = self.headers.get("Authorization", "")
        return auth.removeprefix("Bearer ").strip() or self.headers.get("x-api-key", "")

    def _authorized(self) -> bool:
        p = self.provider
        key = self._key()
        with p.lock:
            p.seen_keys.add(key)
        if p.api_key is not None and key != p.api_key:
            p.count("401")
            # Like the real API, the message quotes the key: our engine must scrub it from errors.
            self._error(401, f"Incorrect API key provided: {key}.")
            return False
        return True

    def _fault(self, raw: bytes) -> bool:
        """Apply the fault chosen for this body/attempt; True when the request was answered by it."""
        p = self.provider
        key = hashlib.sha256(raw).hexdigest()
        with p.lock:
            attempt = p.attempts[key]
            p.attempts[key] += 1
            kind = p.faults.script.pop(0) if p.faults.script else p.faults.pick(key, attempt)
            if kind:
                p.counts[f"fault:{kind}"] += 1
        if kind is None:
            return False
        if kind == "429":
            headers = {}
            if p.faults.retry_after_s is not None:
                headers["Retry-After"] = str(p.faults.retry_after_s)
            if p.faults.retry_after_ms is not None:
                headers["retry-after-ms"] = str(p.faults.retry_after_ms)
            self._error(429, "Rate limit reached (fake).", headers)
        elif kind in ("403", "404", "500", "503"):
            self._error(int(kind), "The server had an error (fake).")
        elif kind == "400key":
            key = self._key()
            self._error(400, f"Invalid request (fake) with Authorization: {self.headers.get('Authorization', '')}"
                             f"; key {key[:12]}...{key[-12:]} is not allowed this model")
        elif kind == "slow":
            time.sleep(p.faults.slow_s)
            return False  # answer normally, but late: the client has given up by now
        elif kind == "drop":
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
        elif kind == "malformed":
            self._send(200, None, raw=b'{"id": "chatcmpl-x", "choices": [{"index": 0, "mess')
        elif kind == "truncated":
            body = b'{"id": "x", "object": "chat.completion", "choices": []}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body) + 500))
            self.end_headers()
            self.wfile.write(body)
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
        return True

    def _admit(self, style: str, req: dict[str, Any]) -> dict[str, str] | None:
        """Quota check: the rate-limit headers for the reply, or None when a 429 was sent."""
        p = self.provider
        if p.quota is None:
            return {}
        if style == "openai":
            prompt = sum(len(p.tokens(_text(m.get("content")))) for m in req.get("messages", []))
            out = int(req.get("max_tokens") or req.get("max_completion_tokens") or 0) * int(req.get("n") or 1)
        else:
            prompt = len(p.tokens(_text(req.get("system")))) + sum(
                len(p.tokens(_text(m.get("content")))) for m in req.get("messages", []))
            out = int(req.get("max_tokens") or 0)
        wait, headers = p.admit(style, {"tokens": prompt + out, "input": prompt, "output": out})
        if wait:
            message = "Rate limit reached for requests (fake quota)."
            if style == "anthropic":
                self._send(429, {"type": "error", "error": {"type": "rate_limit_error", "message": message}}, headers)
            else:
                self._error(429, message, headers)
            return None
        return headers

    # ---- routes ----------------------------------------------------------------------------
    def do_GET(self) -> None:  # noqa: N802 (stdlib naming)
        p = self.provider
        path = self.path.split("?")[0]
        if path == "/_stats":  # for benchmarks running the fake in its own process
            with p.lock:
                return self._send(200, {"counts": dict(p.counts), "ok_times": list(p.ok_times),
                                        "now": time.monotonic()})
        if not self._authorized():
            return
        parts = path.strip("/").split("/")
        if path.startswith("/v1/files/") and path.endswith("/content"):
            p.count("files.content")
            data = p.files.get(parts[2])
            if data is None:
                return self._error(404, "no such file")
            return self._send(200, None, raw=data, content_type="application/octet-stream")
        if path.startswith("/v1/batches/"):
            p.count("batches.retrieve")
            with p.lock:
                batch = p.batches.get(parts[2])
                if batch is None:
                    return self._error(404, "no such batch")
                if batch["status"] == "in_progress" and p.batch_ready(batch):
                    p.finish_openai_batch(batch)
                return self._send(200, _public(batch))
        if path.startswith("/v1/messages/batches/"):
            with p.lock:
                batch = p.batches.get(parts[3])
                if batch is None:
                    return self._error(404, "no such batch")
                if path.endswith("/results"):
                    p.count("messages.batches.results")
                    return self._send(200, None, raw=batch.get("_results", b""),
                                      content_type="application/binary")
                p.count("messages.batches.retrieve")
                if batch["processing_status"] == "in_progress" and p.batch_ready(batch):
                    p.finish_anthropic_batch(batch)
                return self._send(200, _public(batch))
        self._error(404, f"unknown route {path}")

    def do_POST(self) -> None:  # noqa: N802
        p = self.provider
        path = self.path.split("?")[0]
        raw = self._read_body()
        if not self._authorized():
            return
        if path == "/v1/chat/completions":
            p.count("chat")
            if self._fault(raw):
                return
            try:
                req = json.loads(raw)
            except json.JSONDecodeError:
                return self._error(400, "invalid JSON body")
            if req.get("max_tokens") == 0 or not req.get("messages"):
                p.count("400")
                return self._error(400, "messages must be non-empty and max_tokens >= 1")
            headers = self._admit("openai", req)
            if headers is None:
                return
            if p.latency_s:
                time.sleep(p.latency_s)
            with p.lock:
                p.request_times.append(time.monotonic())
            reply = p.chat_completion(req)
            with p.lock:
                p.ok_times.append(time.monotonic())
            return self._send(200, reply, headers)
        if path == "/v1/messages":
            p.count("messages")
            if self._fault(raw):
                return
            req = json.loads(raw)
            if "max_tokens" not in req:
                return self._error(400, "max_tokens: Field required")
            if any(m.get("role") == "system" for m in req.get("messages", [])):
                return self._error(400, "messages: system role is not allowed; use the top-level system")
            marked = sum(1 for part in [req.get("system"), *(m.get("content") for m in req.get("messages", []))]
                         if isinstance(part, list) for b in part if isinstance(b, dict) and "cache_control" in b)
            if marked > 4:
                p.count("400")
                return self._error(400, f"A maximum of 4 blocks with cache_control may be provided. Found {marked}.")
            headers = self._admit("anthropic", req)
            if headers is None:
                return
            if p.latency_s:
                time.sleep(p.latency_s)
            reply = p.anthropic_message(req)
            with p.lock:
                p.ok_times.append(time.monotonic())
            return self._send(200, reply, headers)
        if path == "/v1/files":
            p.count("files.create")
            ctype = self.headers.get("Content-Type", "")
            msg = email.parser.BytesParser(policy=email.policy.default).parsebytes(
                b"Content-Type: " + ctype.encode() + b"\r\n\r\n" + raw)
            data = b""
            for part in msg.iter_parts():
                if part.get_param("name", header="content-disposition") == "file":
                    data = part.get_payload(decode=True) or b""
            with p.lock:
                fid = f"file-{len(p.files)}"
                p.files[fid] = data
            return self._send(200, {"id": fid, "object": "file", "bytes": len(data), "created_at": 0,
                                    "filename": "batch.jsonl", "purpose": "batch", "status": "processed"})
        if path == "/v1/batches":
            p.count("batches.create")
            req = json.loads(raw)
            data = p.files.get(req["input_file_id"])
            if data is None:
                return self._error(404, "no such input file")
            cids = [json.loads(x)["custom_id"] for x in data.decode().splitlines() if x.strip()]
            with p.lock:
                bid = f"batch_{len(p.batches)}"
                p.batch_custom_ids.append(cids)
                batch = {"id": bid, "object": "batch", "endpoint": req["endpoint"], "errors": None,
                         "input_file_id": req["input_file_id"], "completion_window": "24h",
                         "status": "in_progress", "output_file_id": None, "error_file_id": None,
                         "created_at": int(time.time()), "metadata": req.get("metadata"),
                         "request_counts": {"total": len(cids), "completed": 0, "failed": 0},
                         "_created": time.time()}
                p.batches[bid] = batch
            return self._send(200, _public(batch))
        if path == "/v1/messages/batches":
            p.count("messages.batches.create")
            req = json.loads(raw)
            with p.lock:
                bid = f"msgbatch_{len(p.batches)}"
                p.batch_custom_ids.append([r["custom_id"] for r in req["requests"]])
                batch = {"id": bid, "type": "message_batch", "processing_status": "in_progress",
                         "request_counts": {"processing": len(req["requests"]), "succeeded": 0,
                                            "errored": 0, "canceled": 0, "expired": 0},
                         "ended_at": None, "created_at": "2025-01-01T00:00:00Z",
                         "expires_at": "2025-01-02T00:00:00Z", "cancel_initiated_at": None,
                         "archived_at": None, "results_url": None,
                         "_requests": req["requests"], "_created": time.time()}
                p.batches[bid] = batch
            return self._send(200, _public(batch))
        self._error(404, f"unknown route {path}")


class running_provider:  # noqa: N801 (used like a function: ``with running_provider() as p``)
    """Start a provider for a test and stop it after.

    The server's threads share the test's GIL; a short switch interval keeps them from waiting
    5 ms for the event loop thread on every reply (benchmarks run the server in its own process).
    """

    def __init__(self, **kwargs: Any):
        self.provider = FakeProvider(**kwargs)
        self._old_interval = 0.005

    def __enter__(self) -> FakeProvider:
        import sys

        self._old_interval = sys.getswitchinterval()
        sys.setswitchinterval(1e-4)
        return self.provider.start()

    def __exit__(self, *exc: object) -> None:
        import sys

        self.provider.stop()
        sys.setswitchinterval(self._old_interval)


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description="Run the fake OpenAI/Anthropic provider.")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per chat/messages reply")
    parser.add_argument("--rpm", type=int, help="enforce and report a requests-per-minute quota")
    parser.add_argument("--tpm", type=int, help="enforce and report a tokens-per-minute quota")
    parser.add_argument("--window", type=float, default=60.0, help="seconds of the per-minute rate a bucket holds")
    parser.add_argument("--reply-words", type=int, default=0, help="pad replies to this many words")
    parser.add_argument("--reply-bytes", type=int, default=0,
                        help="pad replies to about this many bytes, within the request's max_tokens")
    parser.add_argument("--token-chars", type=float, help="characters per token (default: one token per word)")
    args = parser.parse_args()
    quota = Quota(rpm=args.rpm, tpm=args.tpm, window_s=args.window) if (args.rpm or args.tpm) else None
    provider = FakeProvider(latency_s=args.latency, quota=quota, reply_words=args.reply_words,
                            reply_bytes=args.reply_bytes, token_chars=args.token_chars).start(args.port)
    print(f"PORT {provider.port}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        provider.stop()


if __name__ == "__main__":
    main()
