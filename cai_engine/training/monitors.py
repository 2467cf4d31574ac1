"""RL run monitors: per-step reward, KL, response length and distinct-n, with warnings for two failure modes.

- **reward hacking**: the reward keeps rising while the mean response length explodes (the policy
  found that the reward model likes long answers, not better ones);
- **mode collapse**: distinct-n (unique n-grams / all n-grams over the step's samples) drops, i.e.
  the policy answers everything the same way.

The checks are plain functions over a list of :class:`StepStats` so they can be tested without a
trainer; :class:`RLMonitor` collects samples from the reward path during a run and turns them into
``monitor/*`` fields (and a ``warnings`` list) on each metrics line.
"""

from __future__ import annotations

import logging
import statistics
import threading
import warnings
from dataclasses import dataclass, field
from typing import Any, Sequence

from pydantic import BaseModel, ConfigDict, Field

from cai_engine.text_measures import distinct_n  # one definition, shared with evaluation (re-exported here)

log = logging.getLogger("cai_engine.training")


class RewardHackingWarning(UserWarning):
    """Reward rises while response length explodes."""


class ModeCollapseWarning(UserWarning):
    """Sample diversity (distinct-n) dropped sharply."""


class MonitorSettings(BaseModel):
    """Thresholds of the RL monitors (part of the PPO/GRPO configs)."""

    model_config = ConfigDict(extra="forbid")

    window: int = Field(2, ge=1, description="Steps averaged at the start (baseline) and at the end (recent).")
    length_ratio: float = Field(1.5, gt=1, description="Recent/baseline mean length that counts as exploding.")
    min_reward_gain: float = Field(0.0, description="Recent minus baseline reward must exceed this to count as rising.")
    diversity_drop: float = Field(0.6, gt=0, lt=1, description="Warn when recent distinct-2 < this x baseline distinct-2.")


@dataclass
class StepStats:
    step: int
    reward_mean: float
    response_length: float
    distinct_1: float
    distinct_2: float
    kl: float | None = None


def step_stats(step: int, token_ids: Sequence[Sequence[int]], rewards: Sequence[float], kl: float | None = None) -> StepStats:
    """Stats of one step's samples (token ids of the responses, their final rewards)."""
    valid = [r for r in rewards if r == r]  # drop NaN (missing judge scores)
    return StepStats(
        step=step,
        reward_mean=statistics.fmean(valid) if valid else float("nan"),
        response_length=statistics.fmean(len(t) for t in token_ids) if token_ids else 0.0,
        distinct_1=distinct_n(token_ids, 1),
        distinct_2=distinct_n(token_ids, 2),
        kl=kl,
    )


def _ends(history: Sequence[StepStats], window: int) -> tuple[list[StepStats], list[StepStats]] | None:
    if len(history) < 2 * window:
        return None
    return list(history[:window]), list(history[-window:])


def check_reward_hacking(history: Sequence[StepStats], settings: MonitorSettings) -> str | None:
    """A message when reward went up while mean length grew by ``length_ratio`` or more, else None."""
    ends = _ends(history, settings.window)
    if ends is None:
        return None
    base, recent = ends
    reward_gain = statistics.fmean(s.reward_mean for s in recent) - statistics.fmean(s.reward_mean for s in base)
    base_len = max(statistics.fmean(s.response_length for s in base), 1e-9)
    ratio = statistics.fmean(s.response_length for s in recent) / base_len
    if reward_gain > settings.min_reward_gain and ratio >= settings.length_ratio:
        return (
            f"possible reward hacking: reward +{reward_gain:.3f} while mean response length grew x{ratio:.2f} "
            f"(steps {base[0].step}-{recent[-1].step}); add a length_penalty or check the reward model for length bias"
        )
    return None


def check_mode_collapse(history: Sequence[StepStats], settings: MonitorSettings) -> str | None:
    """A message when distinct-2 fell below ``diversity_drop`` x its baseline, else None."""
    ends = _ends(history, settings.window)
    if ends is None:
        return None
    base, recent = ends
    before = statistics.fmean(s.distinct_2 for s in base)
    after = statistics.fmean(s.distinct_2 for s in recent)
    if before > 0 and after < settings.diversity_drop * before:
        return (
            f"possible mode collapse: distinct-2 fell from {before:.3f} to {after:.3f} "
            f"(steps {base[0].step}-{recent[-1].step}); raise the KL coefficient or lower the learning rate"
        )
    return None


@dataclass
class RLMonitor:
    """Collects samples from the reward path; each logging step becomes one :class:`StepStats`."""

    settings: MonitorSettings = field(default_factory=MonitorSettings)
    history: list[StepStats] = field(default_factory=list)
    _tokens: list[list[int]] = field(default_factory=list)
    _rewards: list[float] = field(default_factory=list)
    _warned: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, token_ids: Sequence[Sequence[int]], rewards: Sequence[float]) -> None:
        with self._lock:
            self._tokens.extend([list(t) for t in token_ids])
            self._rewards.extend(float(r) for r in rewards)

    def on_log(self, row: dict[str, Any]) -> dict[str, Any]:
        """Fields to add to a metrics line: ``monitor/*`` for the samples since the last line, and ``warnings``."""
        with self._lock:
            tokens, rewards = self._tokens, self._rewards
            self._tokens, self._rewards = [], []
        if not tokens:
            return {}
        kl = row.get("objective/kl", row.get("kl"))
        stats = step_stats(int(row.get("step", len(self.history) + 1)), tokens, rewards, kl=kl)
        self.history.append(stats)
        found = [m for m in (check_reward_hacking(self.history, self.settings), check_mode_collapse(self.history, self.settings)) if m]
        for message in found:
            kind = message.split(":")[0]
            if kind not in self._warned:  # warn once per kind; the metrics line carries it every step it holds
                self._warned.add(kind)
                category = RewardHackingWarning if "reward hacking" in kind else ModeCollapseWarning
                warnings.warn(message, category, stacklevel=2)
                log.warning(message)
        out: dict[str, Any] = {
            "monitor/reward_mean": stats.reward_mean,
            "monitor/kl": stats.kl,
            "monitor/response_length": stats.response_length,
            "monitor/distinct_1": stats.distinct_1,
            "monitor/distinct_2": stats.distinct_2,
        }
        if found:
            out["warnings"] = found
        return out
