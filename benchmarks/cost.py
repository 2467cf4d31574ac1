"""Input cost per SFT row with and without prefix reuse (issue 15), at list prices.

One ``cai revise -c general --rounds 2`` (the shipped few-shot examples, ~2 KB replies) through the
fake provider (tests/fake_provider.py in its own process, ``--reply-words 350``), per provider style:

* **Anthropic** (``anthropic/claude-sonnet-4-5``, minimum cacheable prefix 1,024 tokens; the fake
  counts a token per 3.5 characters, Anthropic's rule of thumb): ``prompt_cache: false`` (no
  ``cache_control``, what the engine sent before) vs the default (breakpoints on the stable prefix).
  Cache reads bill 0.1x, 5-minute writes 1.25x the input price.
* **OpenAI** (``openai/gpt-4o-mini``, a token per 4 characters): the list price of every input token
  (what the engine reported before it read ``cached_tokens``), automatic caching without a
  ``prompt_cache_key`` (requests sharing their first 256 tokens overflow onto other cache machines
  past ~15 a minute, as the provider documents), and with one key per conversation (the default
  on OpenAI's API). Cached input bills 50%.

Each figure is the engine's own accounting (manifest tokens x list prices, which the engine's cost
equals), divided by the SFT rows written. Printed: dollars per row and the reduction against the
figure without reuse measured in the same run (target: >= 50% lower on the Anthropic path).
Writes benchmarks/results/cost.json.

    python benchmarks/cost.py            # 40 prompts, ~1 min
    python benchmarks/cost.py --n 10     # smoke run
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _harness as h  # noqa: E402

ROOT = h.ROOT
FAKE = ROOT / "tests" / "fake_provider.py"
RESULT = h.RESULTS_DIR / "cost.json"
USAGE_FIELDS = ("input_tokens", "output_tokens", "cached_input_tokens", "cache_write_input_tokens")


def start_server(*args: str) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen([sys.executable, str(FAKE), *args], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline().split()
    if len(line) != 2 or line[0] != "PORT":
        proc.kill()
        raise RuntimeError(f"fake provider did not start: {line!r}")
    return proc, int(line[1])


def run_revise(cai: list[str], env: dict[str, str], work: Path, name: str, prompts: Path, model: str,
               config: str) -> dict[str, Any]:
    model_yaml = work / f"{name}.yaml"
    model_yaml.write_text(config, encoding="utf-8")
    out = work / name
    cmd = [*cai, "revise", "-c", "general", "-p", str(prompts), "-o", str(out), "-m", model,
           "--model-config", str(model_yaml), "--rounds", "2", "--no-cache", "--max-tokens", "1024"]
    proc = subprocess.run(cmd, env=env, cwd=work, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{name}: cai revise failed:\n{proc.stderr[-3000:]}")
    engine = json.loads((out / "manifest.json").read_text())["stages"]["revise"]["engine"]
    rows = sum(1 for line in (out / "revisions.jsonl").read_text().splitlines()
               if json.loads(line).get("status") == "ok")
    return {"rows": rows, **{k: engine[k] for k in (*USAGE_FIELDS, "requests", "cost_usd")}}


def input_usd(stats: dict[str, Any], prices: Any, cached: bool = True) -> float:
    """Dollars for the input side of ``stats`` (cache reads/writes at their prices unless ``cached`` is off)."""
    from cai_engine.models.base import Usage

    usage = Usage(input_tokens=stats["input_tokens"],
                  cached_input_tokens=stats["cached_input_tokens"] if cached else 0,
                  cache_write_input_tokens=stats["cache_write_input_tokens"] if cached else 0)
    return prices.cost(usage)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=40, help="prompts per run")
    parser.add_argument("--reply-words", type=int, default=350, help="reply size in words (~2 KB)")
    parser.add_argument("--cai", help="the cai command (default: this venv's)")
    args = parser.parse_args()

    from cai_engine.models.prices import lookup

    cai, extra_env = h.cai_prefix(args.cai)
    anthropic_prices, openai_prices = lookup("claude-sonnet-4-5"), lookup("gpt-4o-mini")
    assert anthropic_prices is not None and openai_prices is not None
    result: dict[str, Any] = {"machine": h.machine_info(), "source": h.source_info(cai, extra_env), "n": args.n,
                              "reply_words": args.reply_words}
    with tempfile.TemporaryDirectory(prefix="cai-cost-") as tmp:
        work = Path(tmp)
        env = h.cai_env(work / "home", {**extra_env, "ANTHROPIC_API_KEY": "sk-ant-bench"})
        prompts = h.write_prompts(work / "prompts.jsonl", args.n)
        anth, anth_port = start_server("--latency", "0.02", "--reply-words", str(args.reply_words), "--token-chars", "3.5")
        oai, oai_port = start_server("--latency", "0.02", "--reply-words", str(args.reply_words), "--token-chars", "4")
        try:
            a_base = f"base_urls: [http://127.0.0.1:{anth_port}]\n"
            a_plain = run_revise(cai, env, work, "anthropic-plain", prompts, "anthropic/claude-sonnet-4-5",
                                 a_base + "prompt_cache: false\n")
            a_reuse = run_revise(cai, env, work, "anthropic-reuse", prompts, "anthropic/claude-sonnet-4-5", a_base)
            # base_urls make an openai/ model "self-hosted" (free): give it gpt-4o-mini's list prices.
            o_base = (f"base_urls: [http://127.0.0.1:{oai_port}/v1]\nprices: "
                      f"{json.dumps(openai_prices.model_dump())}\n")
            o_auto = run_revise(cai, env, work, "openai-nokey", prompts, "openai/gpt-4o-mini", o_base + "prompt_cache: false\n")
            o_key = run_revise(cai, env, work, "openai-key", prompts, "openai/gpt-4o-mini", o_base + "prompt_cache: true\n")
        finally:
            for proc in (anth, oai):
                proc.terminate()
                proc.wait(5)

    def per_row(stats: dict[str, Any], prices: Any, cached: bool = True) -> float:
        return input_usd(stats, prices, cached) / max(1, stats["rows"])

    a_without, a_with = per_row(a_plain, anthropic_prices), per_row(a_reuse, anthropic_prices)
    o_list, o_auto_row, o_key_row = (per_row(o_auto, openai_prices, cached=False), per_row(o_auto, openai_prices),
                                     per_row(o_key, openai_prices))
    for stats, prices in ((a_plain, anthropic_prices), (a_reuse, anthropic_prices), (o_auto, openai_prices),
                          (o_key, openai_prices)):
        from cai_engine.models.base import Usage

        billed = prices.cost(Usage(**{k: stats[k] for k in USAGE_FIELDS}))
        assert abs(billed - stats["cost_usd"]) <= 1e-6 * max(1.0, billed), (billed, stats["cost_usd"])
    result["anthropic"] = {
        "model": "anthropic/claude-sonnet-4-5", "prices": anthropic_prices.model_dump(), "without_reuse": a_plain,
        "with_reuse": a_reuse, "input_usd_per_row_without": round(a_without, 7),
        "input_usd_per_row_with": round(a_with, 7), "reduction": round(1 - a_with / a_without, 3), "target": 0.5,
    }
    result["openai"] = {
        "model": "openai/gpt-4o-mini", "prices": openai_prices.model_dump(), "no_key": o_auto, "with_key": o_key,
        "input_usd_per_row_list_price": round(o_list, 7), "input_usd_per_row_no_key": round(o_auto_row, 7),
        "input_usd_per_row_with_key": round(o_key_row, 7), "reduction_vs_list": round(1 - o_key_row / o_list, 3),
        "reduction_vs_no_key": round(1 - o_key_row / o_auto_row, 3),
    }
    print(f"{args.n} prompts, cai revise --rounds 2, shipped few-shot, ~{args.reply_words} words a reply; input $ per SFT row:")
    print(f"  anthropic/claude-sonnet-4-5: without prefix reuse ${a_without:.5f}, with ${a_with:.5f} "
          f"({1 - a_with / a_without:.0%} lower; target >= 50%)  "
          f"[cache reads {a_reuse['cached_input_tokens']:,} / writes {a_reuse['cache_write_input_tokens']:,} "
          f"of {a_reuse['input_tokens']:,} input tokens]")
    print(f"  openai/gpt-4o-mini: list price of every input token ${o_list:.5f}, automatic caching without a key "
          f"${o_auto_row:.5f} ({1 - o_auto_row / o_list:.0%} lower), with prompt_cache_key ${o_key_row:.5f} "
          f"({1 - o_key_row / o_list:.0%} lower)  [cached {o_auto['cached_input_tokens']:,} vs "
          f"{o_key['cached_input_tokens']:,} of {o_key['input_tokens']:,}]")
    h.write_json(RESULT, result)
    print(f"wrote {RESULT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
