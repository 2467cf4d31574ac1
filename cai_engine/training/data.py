"""Reading our exports into TRL's dataset formats, with every check done before a model is loaded.

Accepted inputs: an export dir (``OUT/dataset/`` saved by ``save_to_disk``), a ``save_to_disk`` dir
itself, or a ``.parquet`` / ``.jsonl`` / ``.json`` file. Formats (TRL conversational):

- SFT: ``messages`` = [{role, content}, ...]: the prompt conversation (a system turn first allowed,
  context turns) + the final assistant answer, which ``completion_only`` alone trains on
- preference (DPO / ORPO / reward / KTO source): ``prompt`` = the prompt conversation as messages
  (system first allowed, user/assistant context turns, ending with the user's turn),
  ``chosen`` / ``rejected`` = [{role: assistant, ...}], optional ``confidence``, ``consistent``, ``margin``, ``id``
- RL prompts (PPO / GRPO / RLOO): the ``prompt`` column of a preference export, or ``messages`` of an SFT
  export minus its final assistant turn.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cai_engine.errors import CaiError

SFT_COLUMNS = ("messages",)
PREFERENCE_COLUMNS = ("prompt", "chosen", "rejected")


def load_dataset_any(path: Path, *, limit: int | None = None) -> Any:
    """A ``datasets.Dataset`` from any of the accepted layouts; one error line when there is none."""
    import datasets

    path = Path(path)
    if not path.exists():
        raise CaiError(f"dataset {path} not found; pass an export dir (from `cai export ...`), a save_to_disk dir or a .parquet/.jsonl file")
    try:
        if path.is_dir():
            target = path / "dataset" if (path / "dataset").is_dir() else path
            if (target / "dataset_info.json").is_file() or (target / "state.json").is_file():
                if not any(target.glob("*.arrow")):  # datasets saves no shard for 0 rows and then cannot load it
                    raise CaiError(f"dataset {path} is empty; export some records first (`cai export ...`)")
                ds = datasets.load_from_disk(str(target))
            elif (path / "data.parquet").is_file():
                ds = datasets.Dataset.from_parquet(str(path / "data.parquet"))
            else:
                raise CaiError(f"dataset dir {path} has neither dataset/ (save_to_disk) nor data.parquet; point at a `cai export` output")
        elif path.suffix == ".parquet":
            ds = datasets.Dataset.from_parquet(str(path))
        elif path.suffix in (".jsonl", ".json"):
            if not path.read_text().strip():
                raise CaiError(f"dataset {path} is empty; export some records first (`cai export ...`)")
            ds = datasets.Dataset.from_json(str(path))
        else:
            raise CaiError(f"dataset {path}: unsupported file type {path.suffix!r}; use .parquet, .jsonl or an export dir")
    except CaiError:
        raise
    except Exception as exc:  # corrupt files, wrong arrow schema, ...
        raise CaiError(f"dataset {path} could not be read ({type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:160]})") from None
    if isinstance(ds, datasets.DatasetDict):
        if "train" not in ds:
            raise CaiError(f"dataset {path} is a DatasetDict without a 'train' split; save the split you want to train on")
        ds = ds["train"]
    if len(ds) == 0:
        raise CaiError(f"dataset {path} is empty; export some records first (`cai export ...`)")
    if limit is not None and limit < len(ds):
        ds = ds.select(range(limit))
    return ds


def require_columns(ds: Any, required: tuple[str, ...], *, path: Path, stage: str, hint: str) -> None:
    missing = [c for c in required if c not in ds.column_names]
    if missing:
        raise CaiError(
            f"dataset {path} lacks column(s) {', '.join(missing)} needed by `train {stage}` "
            f"(it has: {', '.join(ds.column_names)}); {hint}"
        )


def _check_turns(value: Any, *, column: str, path: Path, roles: set[str] | None = None) -> None:
    ok = isinstance(value, list) and value and all(isinstance(m, dict) and "role" in m and "content" in m for m in value)
    if not ok:
        raise CaiError(f"dataset {path}: column {column!r} must be a list of {{role, content}} messages (TRL conversational format)")
    if roles is not None and not {m["role"] for m in value} <= roles:
        raise CaiError(f"dataset {path}: column {column!r} may only hold {sorted(roles)} messages, found {sorted({m['role'] for m in value})}")


def load_sft(path: Path, *, stage: str = "sft", limit: int | None = None) -> Any:
    ds = load_dataset_any(path, limit=limit)
    require_columns(ds, SFT_COLUMNS, path=path, stage=stage, hint="use `cai export sft` output")
    _check_turns(ds[0]["messages"], column="messages", path=path)
    return ds.select_columns(["messages"])


def to_prompt_completion(ds: Any, path: Path) -> Any:
    """``messages`` -> TRL prompt/completion: everything before the last assistant turn (the whole
    context of a multi-turn conversation) is the prompt, the last assistant turn the completion.
    Mapped on the Arrow table (rows are not gathered in a Python list)."""
    rows = (m for batch in ds.select_columns(["messages"]).iter(batch_size=1000) for m in batch["messages"])
    for n, messages in enumerate(rows, 1):
        if len(messages) < 2 or messages[-1]["role"] != "assistant":
            raise CaiError(f"dataset {path}: row {n}: every conversation must end with an assistant turn after a prompt "
                           "(set completion_only: false to train on whole texts)")
    return ds.map(lambda row: {"prompt": row["messages"][:-1], "completion": row["messages"][-1:]},
                  remove_columns=list(ds.column_names))


def load_preference(
    path: Path,
    *,
    stage: str,
    limit: int | None = None,
    min_confidence: float | None = None,
    consistent_only: bool = False,
) -> Any:
    """Pairs in TRL's prompt/chosen/rejected format; optional filtering on the judge's confidence and consistency."""
    ds = load_dataset_any(path, limit=limit)
    require_columns(ds, PREFERENCE_COLUMNS, path=path, stage=stage, hint="use `cai export dpo` (or `cai export reward`) output")
    first = ds[0]
    _check_turns(first["prompt"], column="prompt", path=path, roles={"system", "user", "assistant"})
    if first["prompt"][-1]["role"] != "user":
        raise CaiError(f"dataset {path}: column 'prompt' must end with the user's turn (the turn chosen/rejected answer)")
    _check_turns(first["chosen"], column="chosen", path=path, roles={"assistant"})
    _check_turns(first["rejected"], column="rejected", path=path, roles={"assistant"})
    if min_confidence is not None:
        require_columns(ds, ("confidence",), path=path, stage=stage, hint="drop min_confidence or export with the judge's confidence")
        ds = ds.filter(lambda row: row["confidence"] is not None and row["confidence"] >= min_confidence)
    if consistent_only:
        require_columns(ds, ("consistent",), path=path, stage=stage, hint="drop consistent_only or export with position consistency")
        ds = ds.filter(lambda row: bool(row["consistent"]))
    if len(ds) == 0:
        raise CaiError(f"dataset {path}: no pairs left after filtering (min_confidence={min_confidence}, consistent_only={consistent_only})")
    return ds


def to_kto(ds: Any) -> Any:
    """Unpaired good/bad answers from pairs: each pair gives (prompt, chosen, True) and (prompt, rejected, False)."""
    import datasets

    rows: list[dict[str, Any]] = []
    for row in ds:
        rows.append({"prompt": row["prompt"], "completion": row["chosen"], "label": True})
        rows.append({"prompt": row["prompt"], "completion": row["rejected"], "label": False})
    return datasets.Dataset.from_list(rows)


def load_prompts(path: Path, *, stage: str, limit: int | None = None) -> Any:
    """RL prompts as a ``prompt`` column of messages, from a preference export or an SFT export."""
    import datasets

    ds = load_dataset_any(path, limit=limit)
    if "prompt" in ds.column_names:
        _check_turns(ds[0]["prompt"], column="prompt", path=path, roles={"system", "user", "assistant"})
        return ds.select_columns(["prompt"])
    if "messages" in ds.column_names:
        _check_turns(ds[0]["messages"], column="messages", path=path)
        prompts = []
        for messages in ds["messages"]:
            turns = list(messages)
            while turns and turns[-1]["role"] == "assistant":
                turns.pop()
            if turns:
                prompts.append({"prompt": turns})
        if not prompts:
            raise CaiError(f"dataset {path}: no conversation has a user turn to use as a prompt")
        return datasets.Dataset.from_list(prompts)
    raise CaiError(
        f"dataset {path} lacks a 'prompt' (preference export) or 'messages' (SFT export) column needed by `train {stage}` "
        f"(it has: {', '.join(ds.column_names)})"
    )


def split_eval(ds: Any, fraction: float, *, seed: int, min_eval: int = 1) -> tuple[Any, Any]:
    """A seeded train/held-out split; the held-out part has at least ``min_eval`` rows and train keeps at least one."""
    if len(ds) < 2:
        raise CaiError(f"need at least 2 rows to hold some out for evaluation, got {len(ds)}; add data or set eval_fraction: 0")
    n_eval = min(len(ds) - 1, max(min_eval, round(len(ds) * fraction)))
    parts = ds.train_test_split(test_size=n_eval, seed=seed, shuffle=True)
    return parts["train"], parts["test"]
