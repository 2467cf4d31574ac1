"""``runs/NAME/report.md`` with PNG plots: did the loop help, and what did it cost?

Everything is derived from files the stages wrote (state.json, metrics.jsonl, pairs.jsonl,
eval.json), so ``cai report`` can regenerate it at any time without touching a model.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cai_engine.engine.records import iter_latest, read_jsonl
from cai_engine.runs.state import RunState, read_json

CURVE_KEYS = ("loss", "rewards/margins", "reward_mean", "kl", "objective/kl", "response_length", "mean_length", "eval_accuracy", "accuracy")


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _training_curves(run_dir: Path, state: RunState, plots: Path) -> Path | None:
    series: dict[str, dict[str, list[tuple[float, float]]]] = {}
    for stage, entry in state.stages.items():
        metrics = entry.outputs.get("metrics")
        if not metrics or not Path(metrics).exists():
            continue
        for row in read_jsonl(Path(metrics)):
            step = row.get("step", row.get("global_step"))
            if step is None:
                continue
            for key in CURVE_KEYS:
                if isinstance(row.get(key), (int, float)):
                    series.setdefault(stage, {}).setdefault(key, []).append((float(step), float(row[key])))
    if not series:
        return None
    plt = _plt()
    keys = sorted({k for s in series.values() for k in s}, key=CURVE_KEYS.index)
    fig, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 3.4), squeeze=False)
    for ax, key in zip(axes[0], keys):
        for stage, by_key in series.items():
            if key in by_key:
                xs, ys = zip(*by_key[key])
                ax.plot(xs, ys, marker="o", markersize=3, label=stage)
        ax.set_title(key)
        ax.set_xlabel("step")
        ax.legend(fontsize=8)
    fig.suptitle("Training curves")
    fig.tight_layout()
    path = plots / "training_curves.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


@dataclass
class PairNumbers:
    """What the plots need of the ok pair records, streamed: 4-8 bytes a pair, no record kept."""

    consistent_confidence: array = field(default_factory=lambda: array("d"))
    inconsistent_confidence: array = field(default_factory=lambda: array("d"))
    chosen_chars: array = field(default_factory=lambda: array("i"))
    rejected_chars: array = field(default_factory=lambda: array("i"))

    @classmethod
    def read(cls, path: Path | None) -> "PairNumbers":
        from cai_engine.pipelines.aggregate import chosen_rejected

        numbers = cls()
        if path is None or not path.exists():
            return numbers
        for record in iter_latest(path, status="ok"):
            if isinstance(record.get("confidence"), (int, float)):
                side = numbers.consistent_confidence if record.get("consistent") else numbers.inconsistent_confidence
                side.append(record["confidence"])
            pair = chosen_rejected(record) if record.get("chosen") in ("a", "b") else None
            if pair:
                numbers.chosen_chars.append(len(pair[0]))
                numbers.rejected_chars.append(len(pair[1]))
        return numbers


def _judge_confidence(pairs: PairNumbers, plots: Path) -> Path | None:
    if not pairs.consistent_confidence and not pairs.inconsistent_confidence:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    ax.hist([pairs.consistent_confidence, pairs.inconsistent_confidence], bins=10, range=(0.5, 1.0), stacked=True,
            label=["position-consistent", "inconsistent"])
    ax.set_xlabel("judge confidence P(chosen better)")
    ax.set_ylabel("pairs")
    ax.set_title("Judge confidence")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = plots / "judge_confidence.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _lengths(pairs: PairNumbers, evaluation: dict[str, Any], plots: Path) -> Path | None:
    model_lengths = evaluation.get("lengths_chars", {})  # {"trained": [...], "base": [...]}
    panels = []
    if pairs.chosen_chars:
        panels.append(("pairs: chosen vs rejected", {"chosen": pairs.chosen_chars, "rejected": pairs.rejected_chars}))
    if model_lengths.get("trained") and model_lengths.get("base"):
        panels.append(("eval answers: base vs trained", {"base": model_lengths["base"], "trained": model_lengths["trained"]}))
    if not panels:
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 3.4), squeeze=False)
    for ax, (title, groups) in zip(axes[0], panels):
        ax.hist(list(groups.values()), bins=12, label=list(groups), alpha=0.8)
        ax.set_title(title)
        ax.set_xlabel("characters")
        ax.set_ylabel("answers")
        ax.legend(fontsize=8)
    fig.suptitle("Length distributions")
    fig.tight_layout()
    path = plots / "lengths.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _win_rates(evaluation: dict[str, Any], plots: Path) -> Path | None:
    rates = evaluation.get("rates_for_plot")  # [{"name", "value", "low", "high"}]
    if not rates:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    names = [r["name"] for r in rates]
    values = [r["value"] for r in rates]
    lows = [r["value"] - (r.get("low") if r.get("low") is not None else r["value"]) for r in rates]
    highs = [(r.get("high") if r.get("high") is not None else r["value"]) - r["value"] for r in rates]
    colours = ["#f58518" if "(base)" in n else "#4c78a8" if "(trained)" in n else "#54a24b" for n in names]
    bars = ax.bar(names, values, yerr=[lows, highs], capsize=4, color=colours)
    for bar, value in zip(bars, values):  # print each value: a zero-height bar is otherwise invisible
        ax.annotate(f"{value:.2f}", (bar.get_x() + bar.get_width() / 2, value), xytext=(0, 3), textcoords="offset points",
                    ha="center", fontsize=8)
    ax.set_ylim(0, 1.08)
    ax.axhline(0.5, color="grey", linestyle=":", linewidth=1)
    ax.set_ylabel("rate (95% CI)")
    ax.set_title("Evaluation: trained (blue) vs base (orange); win rate (green), 95% CI")
    ax.tick_params(axis="x", labelrotation=20, labelsize=8)
    fig.tight_layout()
    path = plots / "win_rates.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _evaluation(eval_json: Path) -> dict[str, Any]:
    """Headline, plotted rates and per-model answer lengths of the eval stage, recomputed from its files."""
    from cai_engine.evaluation import summary
    from cai_engine.evaluation.report import EvalReport
    from cai_engine.evaluation.runner import FILES

    if not eval_json.exists():
        return {}
    report = EvalReport.model_validate_json(eval_json.read_text())
    return {
        "headline": summary.headline(report),
        "rates_for_plot": summary.rates_for_plot(report),
        "lengths_chars": summary.answer_lengths(eval_json.parent / FILES["generations"], {"trained": report.model, "base": report.base_model}),
        "notes": report.notes,
    }


def _engine_stats(entry: Any) -> list[dict[str, Any]]:
    """A stage's engine counters: one stats dict (revise) or ``{spec: stats}`` (pairs, eval)."""
    if not isinstance(entry, dict):
        return []
    if "output_tokens" in entry or "cost_usd" in entry:
        return [entry]
    return [v for v in entry.values() if isinstance(v, dict)]


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    return "n/a" if value is None else str(value)


def write_report(run_dir: Path) -> Path:
    """(Re)write ``run_dir/report.md`` and ``run_dir/plots/*.png``; returns the report path."""
    state = RunState.load(run_dir)
    manifest = read_json(run_dir / "manifest.json")
    plots = run_dir / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    pairs_file = state.stages.get("pairs") and state.stages["pairs"].outputs.get("records")
    pairs = PairNumbers.read(Path(pairs_file) if pairs_file else None)
    eval_state = state.stages.get("eval")
    evaluation = _evaluation(Path(eval_state.outputs["eval_json"])) if eval_state and eval_state.outputs.get("eval_json") else {}

    headline: list[tuple[str, Any]] = []
    revise = state.stages.get("revise")
    if revise and revise.status == "done":
        headline.append(("SFT rows (revisions)", revise.outputs.get("rows")))
    pairs_state = state.stages.get("pairs")
    if pairs_state and pairs_state.status == "done":
        figures = pairs_state.outputs.get("figures", {}).get("all_pairs", {})
        headline += [
            ("preference pairs judged / exported", f"{figures.get('pairs')} / {pairs_state.outputs.get('rows')}"),
            ("judge position consistency", figures.get("position_consistency_rate")),
            ("judge mean confidence", figures.get("mean_confidence")),
            ("longer answer wins", figures.get("longer_wins_rate")),
        ]
    for stage, entry in state.stages.items():
        loss = entry.outputs.get("final_metrics", {}).get("train_loss") if entry.outputs else None
        if loss is not None:
            headline.append((f"{stage} final train loss", loss))
    headline += [(name, value) for name, value in evaluation.get("headline", {}).items()]
    engine_stats = [stats for s in manifest.get("stages", {}).values() for stats in _engine_stats(s.get("engine"))]
    cost = sum(stats.get("cost_usd") or 0 for stats in engine_stats)
    tokens = sum(stats.get("output_tokens") or 0 for stats in engine_stats)

    images = [
        p for p in (
            _training_curves(run_dir, state, plots),
            _judge_confidence(pairs, plots),
            _win_rates(evaluation, plots),
            _lengths(pairs, evaluation, plots),
        ) if p is not None
    ]
    lines = [f"# Run report: {run_dir.name}", "", "| figure | value |", "|---|---|"]
    lines += [f"| {name} | {_fmt(value)} |" for name, value in headline]
    lines += [f"| generated tokens (all stages) | {tokens} |", f"| cost (USD) | {cost:.4f} |", "", "## Stages", "",
              "| stage | status | wall s |", "|---|---|---|"]
    lines += [f"| {stage} | {entry.status} | {_fmt(entry.wall_s)} |" for stage, entry in state.stages.items()]
    lines += ["", "## Plots", ""]
    lines += [f"![{p.stem}](plots/{p.name})" for p in images]
    if evaluation.get("notes"):
        lines += ["", "## Evaluation notes", ""] + [f"- {note}" for note in evaluation["notes"]]
    lines.append("")
    path = run_dir / "report.md"
    path.write_text("\n".join(lines))
    return path
