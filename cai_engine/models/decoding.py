"""Batched decoding for the local backend: one KV-cached forward per step over all live rows.

Why our own loop instead of ``model.generate``: every row of a micro-batch comes from a different
request, with its own temperature, top-p, seed, stop strings, token budget and logprob needs.
``generate`` takes one sampling config per call and draws all rows from one global RNG, so a
seeded request would sample differently depending on which other requests share its batch. Here
each row has its own ``torch.Generator`` and sampling happens on CPU float32 logits, so a seeded
row draws the same random numbers whatever its neighbours (and on any device); greedy rows take
the argmax. The model call itself is the standard
``model(input_ids, attention_mask, position_ids, past_key_values, use_cache=True)``.

Left padding: prompts are padded on the left so every row's next token sits in the last column;
``position_ids`` come from the attention mask's cumulative sum, so a padded row sees the same
positions as it would alone, and pad keys are masked out. Results therefore match unbatched
decoding up to floating-point reordering inside batched matmuls (tested: greedy outputs are equal).

Finished rows (EOS, stop string, token budget) are dropped from the batch and its KV cache at the
next step, so they stop costing compute; the loop ends when no row is left.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class RowSpec:
    """One sequence to generate (a request with ``n=3`` contributes three rows)."""

    prompt_ids: list[int]
    max_tokens: int
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    top_logprobs: int | None = None  # None: no logprobs; 0: chosen token only; k: plus k alternatives


@dataclass
class RowResult:
    text: str
    finish_reason: str  # 'stop' | 'length'
    token_ids: list[int]
    sampled: int
    logprobs: list[tuple[str, float, dict[str, float]]] | None = None


@dataclass
class _Row:
    spec: RowSpec
    generator: torch.Generator | None
    ids: list[int] = field(default_factory=list)
    logprobs: list[tuple[str, float, dict[str, float]]] = field(default_factory=list)
    text: str | None = None
    finish: str | None = None
    sampled: int = 0  # tokens drawn, including a final end-of-turn token (what the compute cost)


def _make_generator(seed: int | None) -> torch.Generator | None:
    gen = torch.Generator(device="cpu")
    if seed is None:
        gen.seed()  # fresh entropy: unseeded requests must still differ from each other
    else:
        gen.manual_seed(seed & 0x7FFF_FFFF_FFFF_FFFF)
    return gen


def _sample(logits: torch.Tensor, row: _Row) -> int:
    """Pick the next token for one row from its float32 CPU logits."""
    spec = row.spec
    if spec.temperature <= 0.0:
        return int(torch.argmax(logits))
    probs = torch.softmax(logits / spec.temperature, dim=-1)
    if spec.top_p < 1.0:
        sorted_probs, order = torch.sort(probs, descending=True)
        cumulative = torch.cumsum(sorted_probs, dim=-1)
        # keep the smallest prefix whose mass reaches top_p (always at least the top token)
        keep = (cumulative - sorted_probs) < spec.top_p
        sorted_probs = torch.where(keep, sorted_probs, torch.zeros_like(sorted_probs))
        pick = torch.multinomial(sorted_probs, 1, generator=row.generator)
        return int(order[pick])
    return int(torch.multinomial(probs, 1, generator=row.generator))


class Decoder:
    """Runs batches of :class:`RowSpec` through one causal LM and tokenizer."""

    def __init__(self, model: Any, tokenizer: Any, device: torch.device):
        self.model = model
        self.tokenizer = tokenizer
        self.device = device
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.eos_ids = self._eos_ids(model, tokenizer)
        self._token_text: dict[int, str] = {}
        # Only the last position's scores are used: asking for just those skips the vocabulary
        # projection of every prompt position (a [batch, prompt_len, vocab] tensor: ~1 GB for 8x780
        # tokens on SmolLM2). Architectures whose forward lacks the argument get all positions.
        import inspect

        forward = inspect.signature(model.forward).parameters
        self._last_logits_only = {"logits_to_keep": 1} if "logits_to_keep" in forward else {}

    @staticmethod
    def _eos_ids(model: Any, tokenizer: Any) -> set[int]:
        ids: set[int] = set()
        for source in (getattr(model, "generation_config", None), getattr(model, "config", None), tokenizer):
            value = getattr(source, "eos_token_id", None) if source is not None else None
            if isinstance(value, int):
                ids.add(value)
            elif isinstance(value, (list, tuple)):
                ids.update(int(v) for v in value)
        return ids

    def token_text(self, token_id: int) -> str:
        text = self._token_text.get(token_id)
        if text is None:
            text = self.tokenizer.decode([token_id], skip_special_tokens=False)
            self._token_text[token_id] = text
        return text

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    @torch.inference_mode()
    def run(self, specs: list[RowSpec]) -> list[RowResult]:
        rows = [_Row(spec=s, generator=_make_generator(s.seed) if s.temperature > 0 else None) for s in specs]
        width = max(len(s.prompt_ids) for s in specs)
        input_ids = torch.full((len(specs), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(specs), width), dtype=torch.long)
        for i, s in enumerate(specs):
            input_ids[i, width - len(s.prompt_ids) :] = torch.tensor(s.prompt_ids, dtype=torch.long)
            mask[i, width - len(s.prompt_ids) :] = 1
        input_ids, mask = input_ids.to(self.device), mask.to(self.device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        live = list(range(len(rows)))  # row index of each batch position
        past = None
        can_prune = True
        while live:
            out = self.model(
                input_ids=input_ids,
                attention_mask=mask,
                position_ids=positions,
                past_key_values=past,
                use_cache=True,
                **self._last_logits_only,
            )
            past = out.past_key_values
            logits = out.logits[:, -1, :].float().cpu()
            next_ids: list[int] = []
            for pos, idx in enumerate(live):
                token = self._step_row(rows[idx], logits[pos])
                next_ids.append(token)
            still = [pos for pos, idx in enumerate(live) if rows[idx].finish is None]
            if not still:
                break
            if can_prune and len(still) < len(live):
                try:
                    past.batch_select_indices(torch.tensor(still, device=self.device))
                except (AttributeError, NotImplementedError, TypeError):
                    can_prune = False  # exotic cache type: keep computing finished rows, ignore them
            if can_prune:
                keep = torch.tensor(still, device=self.device)
                mask, positions = mask[keep], positions[keep]
                next_ids = [next_ids[p] for p in still]
                live = [live[p] for p in still]
            input_ids = torch.tensor(next_ids, dtype=torch.long, device=self.device).unsqueeze(-1)
            mask = torch.cat([mask, torch.ones((mask.shape[0], 1), dtype=mask.dtype, device=self.device)], dim=-1)
            positions = positions[:, -1:] + 1
        return [self._result(r) for r in rows]

    def _step_row(self, row: _Row, logits: torch.Tensor) -> int:
        """Choose, record and check one row's next token; sets ``row.finish`` when it is done."""
        if row.finish is not None:  # only when pruning is unavailable
            return self.pad_id
        token = _sample(logits, row)
        row.sampled += 1
        if token in self.eos_ids:  # the end-of-turn token is neither text nor a reported logprob
            row.finish = "stop"
            return token
        spec = row.spec
        if spec.top_logprobs is not None:
            logp = torch.log_softmax(logits, dim=-1)
            top: dict[str, float] = {}
            if spec.top_logprobs > 0:
                values, indices = torch.topk(logp, spec.top_logprobs)
                for value, index in zip(values.tolist(), indices.tolist()):
                    top.setdefault(self.token_text(index), value)  # two ids may decode alike: keep the likelier
            row.logprobs.append((self.token_text(token), float(logp[token]), top))
        row.ids.append(token)
        if spec.stop:
            text = self._decode(row.ids)
            cut = min((i for i in (text.find(s) for s in spec.stop) if i >= 0), default=-1)
            if cut >= 0:
                row.text = text[:cut]
                row.finish = "stop"
                return token
        if len(row.ids) >= spec.max_tokens:
            row.finish = "length"
        return token

    def _result(self, row: _Row) -> RowResult:
        text = row.text if row.text is not None else self._decode(row.ids)
        logprobs = row.logprobs if row.spec.top_logprobs is not None else None
        if logprobs is not None and row.text is not None and len(row.ids) > 1:
            # a stop string ended the row: drop logprobs of tokens wholly past the returned text
            while len(logprobs) > 1 and len(self._decode(row.ids[: len(logprobs) - 1])) >= len(text):
                logprobs = logprobs[:-1]
        return RowResult(text=text, finish_reason=row.finish or "length", token_ids=row.ids, sampled=row.sampled, logprobs=logprobs)
