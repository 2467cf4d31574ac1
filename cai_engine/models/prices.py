"""USD per million tokens for known hosted models, for cost accounting and ``--max-cost``.

List prices change; these are the public list prices at the time of writing (standard tier),
with the prompt-cache prices beside them: OpenAI bills cached input at 50% (gpt-4o family, o1,
o3-mini), 25% (gpt-4.1 family, o3, o4-mini) or 10% (gpt-5 family) of the input price and charges
nothing extra to write; Anthropic bills cache reads at 0.1x and 5-minute cache writes at 1.25x the
input price. Override per model with ``ModelConfig.prices`` (YAML: ``prices: {input_per_mtok: ..,
output_per_mtok: .., cached_input_per_mtok: .., cache_write_per_mtok: ..}``; cache prices left out
bill at the input price). Batch APIs bill half price; the engine applies :data:`BATCH_DISCOUNT`
to batched requests. Unknown models cost 0 and the manifest says the price was unknown, so a
budget is never silently enforced against a made-up number.
"""

from __future__ import annotations

from cai_engine.models.base import ModelConfig, Prices

BATCH_DISCOUNT = 0.5
ANTHROPIC_CACHE_READ = 0.1
ANTHROPIC_CACHE_WRITE = 1.25  # 5-minute TTL (the default; 1-hour writes bill 2x)

# name prefix -> (input, output, cached input) USD per million tokens; cached None: no discount.
# The longest matching prefix wins, so dated snapshots ("gpt-4o-mini-2024-07-18") resolve to their family.
_OPENAI: dict[str, tuple[float, float, float | None]] = {
    "gpt-4o-mini": (0.15, 0.60, 0.075),
    "gpt-4o": (2.50, 10.00, 1.25),
    "gpt-4.1-nano": (0.10, 0.40, 0.025),
    "gpt-4.1-mini": (0.40, 1.60, 0.10),
    "gpt-4.1": (2.00, 8.00, 0.50),
    "gpt-4-turbo": (10.00, 30.00, None),
    "gpt-3.5-turbo": (0.50, 1.50, None),
    "gpt-5-nano": (0.05, 0.40, 0.005),
    "gpt-5-mini": (0.25, 2.00, 0.025),
    "gpt-5": (1.25, 10.00, 0.125),
    "o4-mini": (1.10, 4.40, 0.275),
    "o3-mini": (1.10, 4.40, 0.55),
    "o3": (2.00, 8.00, 0.50),
    "o1-mini": (1.10, 4.40, 0.55),
    "o1": (15.00, 60.00, 7.50),
}
# name prefix -> (input, output); cache reads and writes follow Anthropic's multipliers.
_ANTHROPIC: dict[str, tuple[float, float]] = {
    "claude-3-haiku": (0.25, 1.25),
    "claude-3-5-haiku": (0.80, 4.00),
    "claude-haiku-4-5": (1.00, 5.00),
    "claude-3-5-sonnet": (3.00, 15.00),
    "claude-3-7-sonnet": (3.00, 15.00),
    "claude-sonnet-4": (3.00, 15.00),
    "claude-3-opus": (15.00, 75.00),
    "claude-opus-4-1": (15.00, 75.00),
    "claude-opus-4-5": (5.00, 25.00),
    "claude-opus-4": (15.00, 75.00),
}


def _table() -> dict[str, Prices]:
    table = {name: Prices(input_per_mtok=i, output_per_mtok=o, cached_input_per_mtok=c)
             for name, (i, o, c) in _OPENAI.items()}
    for name, (i, o) in _ANTHROPIC.items():
        table[name] = Prices(input_per_mtok=i, output_per_mtok=o, cached_input_per_mtok=round(i * ANTHROPIC_CACHE_READ, 6),
                             cache_write_per_mtok=round(i * ANTHROPIC_CACHE_WRITE, 6))
    return table


_TABLE = _table()


def lookup(model_name: str) -> Prices | None:
    """List price for a model name by longest matching prefix; None when unknown."""
    best = max((p for p in _TABLE if model_name.startswith(p)), key=len, default=None)
    return None if best is None else _TABLE[best].model_copy()


def prices_for(config: ModelConfig) -> Prices | None:
    """``config.prices`` if set; free for local and self-hosted; the table entry for hosted
    providers; None when a hosted model is not in the table (cost unknown)."""
    if config.prices is not None:
        return config.prices
    provider, name = config.provider, config.model_name
    if provider not in ("openai", "anthropic") or (config.base_urls and provider == "openai"):
        # Local backends and self-hosted OpenAI-compatible servers cost nothing per token.
        return Prices()
    return lookup(name)
