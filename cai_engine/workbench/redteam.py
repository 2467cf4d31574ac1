"""``cai redteam``: test prompts per principle - adversarial, borderline and benign look-alikes.

For each principle and kind the generator model is asked for a numbered list of user messages
(:mod:`cai_engine.prompts.redteam`); replies are parsed leniently (numbered, bulleted, quoted or
bare lines; preambles and answers dropped). Every candidate then goes through a quality filter
(:class:`PromptFilter`: length, mostly letters, no mojibake or symbol runs, no template
placeholders such as ``[Your Name]``, no e-mail scaffolding such as ``Subject:``, no forum/chat
timestamps such as ``22:38, May 2020``, not in the assistant's voice) and one near-duplicate filter
shared by the whole run (exact after normalisation, then character n-gram Jaccard), so the same
request is never kept twice, not even under two principles. Each dropped prompt is counted under
one reason. If a principle/kind is still short after a call, it asks again with a new seed, up to
``max_attempts`` calls.

The output is a JSONL prompt file that ``cai revise --prompts`` and ``cai judge`` read: one line
per prompt with ``prompt``, ``principle_id``, ``kind`` and provenance.
"""

from __future__ import annotations

import asyncio
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from cai_engine.constitution import Constitution, Principle
from cai_engine.engine.engine import Engine
from cai_engine.engine.records import stable_hash
from cai_engine.models.base import ChatRequest, SamplingParams, Usage
from cai_engine.prompts import redteam as templates
from cai_engine.text_measures import normalize
from cai_engine.workbench.textsim import NearDuplicateIndex

KINDS = templates.KINDS

# "1.", "1)", "(1)", "#1", "Prompt 1:", "Message 3 -", "-", "*", "•" at the start of a line.
_MARKER = re.compile(
    r"^\s*(?:(?:prompt|message|request|question|example|user)\s*#?\s*\d+\s*[:.)\-–]\s*"
    r"|\(?#?\d{1,3}\s*[.)\]:\-–]\s*|[-*•+]\s+)",
    re.IGNORECASE,
)
_LABEL = re.compile(r"^\s*(?:\*\*)?(?:user|prompt|message|request|human|q)(?:\*\*)?\s*:\s*", re.IGNORECASE)
_PREAMBLE = re.compile(
    r"^(?:here (?:are|is)|sure|certainly|of course|okay|ok|i (?:can|will|'ll)|these (?:are|messages)|note|"
    r"the following|below (?:are|is))\b",
    re.IGNORECASE,
)
_ANSWER = re.compile(r"^\s*(?:assistant|answer|response|ai)\s*:", re.IGNORECASE)
_QUOTES = "\"'“”‘’`"


def parse_list(text: str, *, min_words: int = 3, max_chars: int = 600) -> list[str]:
    """The user messages in a generated list, in order.

    Accepts numbered (``1.``, ``2)``, ``(3)``, ``Prompt 4:``), bulleted and bare lines; strips
    quotes, bold markers and ``User:`` labels; drops preambles ("Here are ..."), headings (lines
    ending in ``:``), answer lines (``Assistant: ...``), and fragments shorter than ``min_words``.
    A numbered item whose text wraps onto following unnumbered lines is joined back together.
    """
    items: list[str] = []
    numbered_mode = bool(re.search(r"^\s*\(?#?\d{1,3}\s*[.)\]:]", text, re.MULTILINE))
    current: list[str] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            current = None
            continue
        if _ANSWER.match(line):
            current = None
            continue
        marked = _MARKER.match(line)
        if marked:
            body = line[marked.end() :]
            again = _MARKER.match(body)  # "(4) Prompt 4: ..." carries two markers
            body = body[again.end() :] if again else body
            if _ANSWER.match(body.replace("**", "")):
                current = None
                continue
            current = [body]
            items.append(body)
            continue
        if numbered_mode and current is not None and items:
            items[-1] = items[-1] + " " + line  # a wrapped continuation of the last numbered item
            continue
        if not numbered_mode:
            items.append(line)
    out: list[str] = []
    for item in items:
        cleaned = _clean(item)
        if not cleaned or len(cleaned) > max_chars or len(cleaned.split()) < min_words:
            continue
        if _PREAMBLE.match(cleaned) or cleaned.endswith(":"):
            continue
        out.append(cleaned)
    return out


def _clean(item: str) -> str:
    text = item.strip().replace("**", "").replace("__", "")
    text = _LABEL.sub("", text, count=1).strip()
    if len(text) >= 2 and text[0] in _QUOTES and text[-1] in _QUOTES:
        text = text[1:-1].strip()
    elif text and text[0] in _QUOTES and text.count(text[0]) == 1:
        text = text[1:].strip()
    return " ".join(text.split())


# -- the quality filter --------------------------------------------------------------------------

#: Why a generated prompt is dropped, in the order the checks run (a prompt counts under the first).
DROP_REASONS: dict[str, str] = {
    "too-short": "fewer than `min_words` words or `min_chars` characters",
    "too-long": "more than `max_words` words or `max_chars` characters",
    "placeholder": "a template slot left in: [Your Name], [Company], {name}, <insert ...>, XXX, lorem ipsum",
    "email": "e-mail or letter scaffolding: Subject:/To:/From:/Cc: lines, Dear Sir/Madam, Best regards",
    "timestamp": "a forum or chat timestamp: a time of day next to a date with a year (22:38, May 2020), or (UTC)",
    "assistant-voice": "written as the assistant, not a user: I'm here to help, As an AI ..., How can I help you",
    "not-letters": "fewer than `min_letter_share` of its non-space characters are letters (code dumps, numbers, symbols)",
    "symbols": "mojibake (â€™, Ã©, �) or more than `max_symbol_share` non-ASCII symbols (emoji runs, box drawing, ™)",
    "exact-duplicate": "the same words as a kept prompt (case and punctuation ignored)",
    "near-duplicate": "character 4-gram Jaccard similarity with a kept prompt at or above the threshold",
}

_PLACEHOLDER = re.compile(
    r"\[\s*(?:your|my|their|insert|enter|add|recipient|sender|first|last|full|company|organi[sz]ation|name|date|time|"
    r"address|email|e-mail|phone|number|title|topic|subject|product|city|country|location|link|url|x+|\.\.\.)\b[^\]]{0,40}\]"
    r"|\{\{?\s*[A-Za-z_]\w*\s*\}\}?"
    r"|<\s*(?:your|insert|enter|name|recipient|company)\b[^>]{0,40}>"
    r"|\bX{3,}\b|\blorem ipsum\b",
    re.IGNORECASE,
)
_EMAIL = re.compile(
    r"(?:^|\n)\s*(?:subject|to|from|cc|bcc|fwd?|re)\s*:"
    r"|\bdear\s+(?:sir|madam|sir/madam|team|hiring manager|customer)\b"
    r"|\b(?:best|kind|warm)\s+regards\b|\byours\s+(?:sincerely|faithfully|truly)\b|\bsent from my\b",
    re.IGNORECASE,
)
_MONTH = r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?"
_TIME = r"\b\d{1,2}:\d{2}(?::\d{2})?(?:\s*[ap]\.?m\.?)?"
# A date *with a year*: "May 2020", "22 May 2020", "May 22, 2020", "22/05/2020", "2020-05-22".
_DATE = (rf"(?:(?:\d{{1,2}}\s+)?{_MONTH}\s+\d{{4}}|{_MONTH}\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+\d{{4}}"
         r"|\d{1,2}[/.-]\d{1,2}[/.-]\d{4}|\d{4}-\d{2}-\d{2})")
# A time of day right next to a dated day (a forum signature, a chat log, a mail header), or "(UTC)".
# A time alone ("my flight leaves at 10:30") or a date alone ("in May 2020") is a normal request.
_TIMESTAMP = re.compile(rf"{_TIME},?\s+{_DATE}\b|\b{_DATE},?\s+(?:at\s+)?{_TIME}|\(\s*UTC\s*\)", re.IGNORECASE)
_ASSISTANT_VOICE = re.compile(
    r"\bi(?:'| a)?m here to help\b|\bi am here to help\b|^\s*as an? (?:ai|language model|assistant)\b"
    r"|\bhow (?:can|may) i (?:help|assist) you\b|\bi(?: can(?:not|'t)| am unable to| won't) (?:help|assist) with (?:that|this)\b",
    re.IGNORECASE,
)
_MOJIBAKE = re.compile("â€|Ã[\u0080-\u00bf]|\ufffd")


def _unspaced(char: str) -> bool:
    return "\u3040" <= char <= "\u30ff" or "\u3400" <= char <= "\u9fff" or "\uf900" <= char <= "\ufaff"


@dataclass
class PromptFilter:
    """The documented quality filter every generated prompt passes before it is kept.

    Cheap heuristics for what small generator models write instead of a user message; a prompt is
    dropped under the first reason of :data:`DROP_REASONS` that applies. ``enabled=False`` keeps
    everything but duplicates.
    """

    enabled: bool = True
    min_words: int = 3
    min_chars: int = 12
    max_words: int = 120
    max_chars: int = 600
    min_letter_share: float = 0.5  # letters / non-space characters (any script counts as letters)
    max_symbol_share: float = 0.1  # non-ASCII symbols / non-space characters (punctuation of any script is fine)

    def reason(self, prompt: str) -> str | None:
        """Why ``prompt`` fails the filter (a key of :data:`DROP_REASONS`), or None if it passes."""
        if not self.enabled:
            return None
        text = prompt.strip()
        # Scripts written without spaces (Chinese, Japanese) count about two characters a word.
        words = len(text.split()) + sum(1 for c in text if _unspaced(c)) // 2
        if words < self.min_words or len(text) < self.min_chars:
            return "too-short"
        if words > self.max_words or len(text) > self.max_chars:
            return "too-long"
        for name, pattern in (("placeholder", _PLACEHOLDER), ("email", _EMAIL), ("timestamp", _TIMESTAMP),
                              ("assistant-voice", _ASSISTANT_VOICE)):
            if pattern.search(text):
                return name
        chars = [c for c in text if not c.isspace()]
        letters = sum(1 for c in chars if c.isalpha())
        if letters < self.min_letter_share * len(chars):
            return "not-letters"
        # Non-ASCII symbols (emoji, box drawing, currency and trade marks) and control or private-use
        # characters; punctuation of any script (curly quotes, dashes, 。？) and accents are fine.
        symbols = sum(1 for c in chars if ord(c) > 127 and unicodedata.category(c)[0] in "SC")
        if _MOJIBAKE.search(text) or symbols > self.max_symbol_share * len(chars):
            return "symbols"
        return None


@dataclass
class RedteamSettings:
    """What to generate: ``n`` kept prompts per principle and kind."""

    n: int = 5
    kinds: Sequence[str] = KINDS
    per_call: int = 8  # how many messages one call asks for (small models lose count beyond ~10)
    max_attempts: int = 4  # calls per principle/kind before giving up on reaching n
    threshold: float = 0.7  # near-duplicate Jaccard threshold on character 4-grams
    params: SamplingParams = field(default_factory=lambda: SamplingParams(max_tokens=320, temperature=0.9, top_p=0.95))
    seed: int = 0
    principle_ids: Sequence[str] | None = None  # only these principles (default: all)
    filter: PromptFilter = field(default_factory=PromptFilter)


@dataclass
class RedteamResult:
    records: list[dict[str, Any]]
    calls: int = 0
    parsed: int = 0
    duplicates: int = 0  # exact + near duplicates (also in ``dropped``)
    dropped: dict[str, int] = field(default_factory=dict)  # reason (DROP_REASONS key) -> prompts dropped
    examples: dict[str, str] = field(default_factory=dict)  # reason -> the first prompt dropped for it
    short: dict[str, int] = field(default_factory=dict)  # "principle/kind" -> how many were missing
    usage: Usage = field(default_factory=Usage)

    @property
    def filtered(self) -> int:
        """Prompts dropped by the quality filter (not counting duplicates)."""
        return sum(v for k, v in self.dropped.items() if not k.endswith("-duplicate"))

    def drop(self, reason: str, prompt: str) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1
        self.examples.setdefault(reason, prompt)
        if reason.endswith("-duplicate"):
            self.duplicates += 1


def _selected(constitution: Constitution, settings: RedteamSettings) -> list[Principle]:
    if settings.principle_ids is None:
        return list(constitution.principles)
    return [constitution.principle(pid) for pid in settings.principle_ids]  # raises with a hint on typos


async def generate_redteam(
    constitution: Constitution,
    engine: Engine,
    settings: RedteamSettings,
    on_progress: Callable[[int], None] | None = None,
) -> RedteamResult:
    """Generate, parse and dedupe red-team prompts for every selected principle and kind.

    Work goes in rounds: each round sends one call for every principle/kind still short of ``n``,
    all at once (the engine bounds how many are in flight; local backends batch them), then
    dedupes the replies in constitution order. So a deterministic model gives the same file every
    time, and of two duplicates under different principles the earlier principle keeps it.
    ``on_progress`` gets the number of prompts kept after each round.
    """
    for kind in settings.kinds:
        if kind not in KINDS:
            raise ValueError(f"unknown kind {kind!r}; use one of {', '.join(KINDS)}")
    principles = _selected(constitution, settings)
    index = NearDuplicateIndex(threshold=settings.threshold)
    exact: set[str] = set()  # normalised kept prompts, to tell exact from near duplicates
    result = RedteamResult(records=[])
    kept: dict[tuple[str, str], list[dict[str, Any]]] = {(p.id, k): [] for p in principles for k in settings.kinds}

    async def call(principle: Principle, kind: str, attempt: int) -> tuple[int, str, Usage]:
        seed = int(stable_hash({"seed": settings.seed, "p": principle.id, "k": kind, "try": attempt}, length=8), 16)
        missing = settings.n - len(kept[(principle.id, kind)])
        count = min(settings.per_call, max(missing + 2, 3))  # a few spare: some get dropped
        messages = templates.generation_messages(principle.critique, principle.judge, kind, count)
        params = settings.params.model_copy(update={"seed": seed, "n": 1})
        response = await engine.generate(ChatRequest(messages=messages, params=params))
        return seed, response.text, response.usage

    for attempt in range(settings.max_attempts):
        todo = [(p, k) for p in principles for k in settings.kinds if len(kept[(p.id, k)]) < settings.n]
        if not todo:
            break
        replies = await asyncio.gather(*(call(p, k, attempt) for p, k in todo))
        for (principle, kind), (seed, text, usage) in zip(todo, replies):
            result.calls += 1
            result.usage = result.usage + usage
            bucket = kept[(principle.id, kind)]
            # Parse without length limits: the filter's bounds decide, and count what they drop.
            candidates = parse_list(text, min_words=1, max_chars=1_000_000)
            result.parsed += len(candidates)
            for prompt in candidates:
                if len(bucket) >= settings.n:
                    break
                reason = settings.filter.reason(prompt)
                if reason is None and index.add(prompt) is not None:
                    reason = "exact-duplicate" if normalize(prompt) in exact else "near-duplicate"
                if reason is not None:
                    result.drop(reason, prompt)
                    continue
                exact.add(normalize(prompt))
                bucket.append(
                    {
                        "id": stable_hash({"prompt": prompt}),
                        "prompt": prompt,
                        "principle_id": principle.id,
                        "kind": kind,
                        "constitution": {"name": constitution.name, "hash": constitution.hash},
                        "model": engine.spec,
                        "seed": seed,
                    }
                )
        if on_progress is not None:
            on_progress(sum(len(b) for b in kept.values()))

    for p in principles:
        for kind in settings.kinds:
            bucket = kept[(p.id, kind)]
            result.records.extend(bucket)
            if len(bucket) < settings.n:
                result.short[f"{p.id}/{kind}"] = settings.n - len(bucket)
    return result
