"""A fake OpenAI + Anthropic provider on 127.0.0.1 that speaks the real wire protocol, with fault knobs.

The SDKs talk to it over real sockets (the openai SDK runs on ``httpx2``, which httpx mocks do not
see), so the whole path — SDK, our backends, the engine's retries and limits — is exercised.

Endpoints: OpenAI ``/v1/chat/completions``, ``/v1/files`` (+ ``/v1/files/ID/content``),
``/v1/batches`` (+ ``/v1/batches/ID``, ``/v1/batches?...`` list); Anthropic ``/v1/messages``,
``/v1/messages/batches`` (+ retrieve and ``/results``).

Replies are deterministic functions of the request: ``"echo:" + last user message + " #" + hash``
so a test can check that every prompt got *its* answer. Faults are decided per request body and
attempt number (``hash(body, attempt) < p``), so they do not depend on scheduling order.

Run standalone (for benchmarks, so the server does not share the client's GIL)::

    python tests/fake_provider.py --latency 0.05      # prints "PORT <n>" then serves
"""

from __future__ import annotations

import email.parser
import email.policy
import hashlib
import json
import random
import socket
import threading
import time
from collections import Counter
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


class FakeProvider:
    """State shared by all handler threads: counters, faults, files and batches."""

    def __init__(self, latency_s: float = 0.0, faults: Faults | None = None, api_key: str | None = None):
        self.latency_s = latency_s
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

    def count(self, kind: str, n: int = 1) -> None:
        with self.lock:
            self.counts[kind] += n

    # ---- replies ---------------------------------------------------------------------------
    def chat_completion(self, req: dict[str, Any]) -> dict[str, Any]:
        last = _last_user(req.get("messages", []))
        text = reply_text(last)
        stop = req.get("stop")
        stops = [stop] if isinstance(stop, str) else (stop or [])
        finish = "stop"
        for s in stops:
            if s and s in text:
                text = text[: text.index(s)]
        words = _words(text)
        max_tokens = req.get("max_tokens") or req.get("max_completion_tokens") or 10_000
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
        prompt_tokens = sum(len(_words(str(m.get("content", "")))) for m in req.get("messages", []))
        return {
            "id": "chatcmpl-" + hashlib.sha256(json.dumps(req, sort_keys=True).encode()).hexdigest()[:12],
            "object": "chat.completion", "created": int(time.time()), "model": req.get("model", "fake"),
            "choices": choices,
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": len(words) * len(choices),
                      "total_tokens": prompt_tokens + len(words) * len(choices)},
        }

    def anthropic_message(self, req: dict[str, Any]) -> dict[str, Any]:
        last = _last_user(req.get("messages", []))
        text = reply_text(last)
        if req.get("system"):
            text = f"[sys:{len(str(req['system']))}] {text}"
        stop_reason, stop_seq = "end_turn", None
        for s in req.get("stop_sequences") or []:
            if s and s in text:
                text, stop_reason, stop_seq = text[: text.index(s)], "stop_sequence", s
                break
        words = _words(text)
        if len(words) > int(req.get("max_tokens", 10_000)):
            words = words[: int(req["max_tokens"])]
            text, stop_reason = " ".join(words), "max_tokens"
        prompt_tokens = sum(len(_words(str(m.get("content", "")))) for m in req.get("messages", []))
        return {
            "id": "msg_" + hashlib.sha256(json.dumps(req, sort_keys=True).encode()).hexdigest()[:12],
            "type": "message", "role": "assistant", "model": req.get("model", "fake"),
            "content": [{"type": "text", "text": text}],
            "stop_reason": stop_reason, "stop_sequence": stop_seq,
            "usage": {"input_tokens": prompt_tokens, "output_tokens": len(words),
                      "cache_creation_input_tokens": 0, "cache_read_input_tokens": 2},
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

    # ---- routes ----------------------------------------------------------------------------
    def do_GET(self) -> None:  # noqa: N802 (stdlib naming)
        p = self.provider
        path = self.path.split("?")[0]
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
            if p.latency_s:
                time.sleep(p.latency_s)
            with p.lock:
                p.request_times.append(time.monotonic())
            return self._send(200, p.chat_completion(req))
        if path == "/v1/messages":
            p.count("messages")
            if self._fault(raw):
                return
            req = json.loads(raw)
            if "max_tokens" not in req:
                return self._error(400, "max_tokens: Field required")
            if any(m.get("role") == "system" for m in req.get("messages", [])):
                return self._error(400, "messages: system role is not allowed; use the top-level system")
            if p.latency_s:
                time.sleep(p.latency_s)
            return self._send(200, p.anthropic_message(req))
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
    args = parser.parse_args()
    provider = FakeProvider(latency_s=args.latency).start(args.port)
    print(f"PORT {provider.port}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        provider.stop()


if __name__ == "__main__":
    main()
