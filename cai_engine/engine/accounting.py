"""Counters per model: requests, tokens, retries, errors, cost. Shown live and written to manifests.

``requests`` counts answers that came from the provider (directly or from a batch); ``cached``
counts answers served from the response cache, which cost nothing and add no tokens.
``input_tokens`` counts every prompt token; ``cached_input_tokens`` of them were read from the
provider's prompt cache and ``cache_write_input_tokens`` written to it, each billed at its own
price (:meth:`~cai_engine.models.base.Prices.cost`), so cost and ``--max-cost`` follow the bill.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from cai_engine.models.base import Prices, Usage


class ModelStats(BaseModel):
    spec: str
    requests: int = 0
    cached: int = 0
    batched: int = Field(0, description="Answers that came from a provider Batch API (billed at the batch discount).")
    retries: int = 0
    errors: int = Field(0, description="Requests that failed for good (after retries).")
    faults: dict[str, int] = Field(default_factory=dict, description="Failed attempts by kind (rate_limit, server, ...).")
    input_tokens: int = Field(0, description="Prompt tokens, cached ones included.")
    output_tokens: int = 0
    cached_input_tokens: int = Field(0, description="Prompt tokens read from the provider's prompt cache.")
    cache_write_input_tokens: int = Field(0, description="Prompt tokens written to the prompt cache (Anthropic).")
    cost_usd: float = 0.0
    price_known: bool = True
    busy_s: float = 0.0
    batches_submitted: int = 0
    batches_resumed: int = 0

    def add_usage(self, usage: Usage, prices: Prices | None, discount: float = 1.0) -> float:
        """Add tokens and their cost; returns the cost of this usage."""
        self.input_tokens += usage.input_tokens
        self.output_tokens += usage.output_tokens
        self.cached_input_tokens += usage.cached_input_tokens
        self.cache_write_input_tokens += usage.cache_write_input_tokens
        cost = 0.0
        if prices is not None:
            cost = discount * prices.cost(usage)
            self.cost_usd += cost
        return cost

    def note_fault(self, kind: str) -> None:
        self.faults[kind] = self.faults.get(kind, 0) + 1

    def progress_text(self) -> str:
        """Short live summary for a progress bar, e.g. ``req 120 (cache 30) retry 4 err 0 tok 51k/12k $0.0123``
        (with ``(38k cached)`` after the input tokens once the provider's prompt cache served some)."""
        def k(n: int) -> str:
            return f"{n / 1000:.1f}k" if n >= 1000 else str(n)

        cost = f"${self.cost_usd:.4f}" if self.price_known else "$?"
        cached = f" ({k(self.cached_input_tokens)} cached)" if self.cached_input_tokens else ""
        return (f"req {self.requests} (cache {self.cached}) retry {self.retries} err {self.errors} "
                f"tok {k(self.input_tokens)}{cached}/{k(self.output_tokens)} {cost}")
