"""tests/fake_provider.py with long replies, for the scale benchmarks (run standalone).

``FakeProvider`` answers ``"echo:" + last user message + " #hash"``, so its reply is as short as the
prompt; it has no reply-size knob. This subclasses it (the file is not edited) and pads each
OpenAI chat reply with deterministic filler words (a function of the echo text) to about
``--reply-bytes`` bytes, never more words than the request's ``max_tokens`` (1 word = 1 token, as in
the fake's usage), and fixes ``usage.completion_tokens`` to match. Everything else (latency, wire
protocol, other endpoints) is the fake provider's own.

    python benchmarks/fake_openai_server.py --latency 0.05 --reply-bytes 3000   # prints "PORT <n>"
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from fake_provider import FakeProvider  # noqa: E402

_VOCAB = ("alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa "
          "quebec romeo sierra tango uniform victor whiskey xray yankee zulu principle answer careful honest "
          "helpful harmless context detail example reason").split()


def padding(seed_text: str, nbytes: int, max_words: int) -> list[str]:
    """Deterministic filler: about ``nbytes`` bytes of words drawn by a hash of ``seed_text``."""
    digest = hashlib.sha256(seed_text.encode()).digest()
    words: list[str] = []
    size = 0
    i = 0
    while size < nbytes and len(words) < max_words:
        w = _VOCAB[(digest[i % 32] + i * 7) % len(_VOCAB)]
        words.append(w)
        size += len(w) + 1
        i += 1
    return words


class PaddedProvider(FakeProvider):
    def __init__(self, latency_s: float = 0.0, reply_bytes: int = 3000):
        super().__init__(latency_s=latency_s)
        self.reply_bytes = reply_bytes

    def chat_completion(self, req: dict[str, Any]) -> dict[str, Any]:
        out = super().chat_completion(req)
        if out["choices"][0]["finish_reason"] == "length":
            return out
        max_tokens = int(req.get("max_tokens") or req.get("max_completion_tokens") or 10_000)
        added = 0
        for choice in out["choices"]:
            text = choice["message"]["content"]
            have = len(text.split())
            pad = padding(text, self.reply_bytes - len(text.encode()), max(0, max_tokens - have))
            if pad:
                choice["message"]["content"] = text + " " + " ".join(pad)
                added += len(pad)
        usage = out["usage"]
        usage["completion_tokens"] += added
        usage["total_tokens"] += added
        return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.05, help="seconds per reply")
    parser.add_argument("--reply-bytes", type=int, default=3000, help="target size of each reply's content")
    args = parser.parse_args()
    provider = PaddedProvider(latency_s=args.latency, reply_bytes=args.reply_bytes).start(args.port)
    print(f"PORT {provider.port}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        provider.stop()


if __name__ == "__main__":
    main()
