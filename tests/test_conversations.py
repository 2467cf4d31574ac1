"""Conversations in: ``messages`` lists, multi-turn HH transcripts and ``hf:`` datasets through revise,
judge, eval, preview, view and every export; one line (file and 1-based row) for every bad input."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from cai_engine.cli import main
from cai_engine.constitution import Constitution
from cai_engine.engine.engine import Engine
from cai_engine.engine.records import latest_records, stable_hash
from cai_engine.errors import CaiError
from cai_engine.models.base import ChatRequest, ModelConfig, SamplingParams
from cai_engine.models.mock import MockModel
from cai_engine.pipelines.revise import ReviseSettings, record_id, run_revise
from cai_engine.sources import BadRow, Turn, iter_prompts, to_conversation

SYSTEM = "You are a careful assistant."
DOG = (
    "\n\nHuman: My dog ate something from the kitchen."
    "\n\nAssistant: What did he eat, and how much?"
    "\n\nHuman: A whole bar of chocolate. What should I do?"
    "\n\nAssistant: OLD ANSWER that must never reach a model."
)
CAKE = (  # shares its last user turn with DOG, differs before it
    "\n\nHuman: I am baking a cake for my dog."
    "\n\nAssistant: Lovely! Which ingredients?"
    "\n\nHuman: A whole bar of chocolate. What should I do?"
    "\n\nAssistant:"
)


def constitution() -> Constitution:
    return Constitution(
        name="t", system_prompt=SYSTEM,
        principles=[{"id": "harmless", "critique": "Find harmful advice.", "revision": "Remove it.",
                     "judge": "Which response is less harmful?"}],
        sampling={"principles_per_round": 1, "rounds": 1, "principles_per_judgment": 1},
    )


def settings() -> ReviseSettings:
    return ReviseSettings(constitution=constitution(), params=SamplingParams(max_tokens=32), rounds=1,
                          principles_per_round=1, few_shot=0, seed=0)


def responder(request: ChatRequest) -> str:
    last = request.messages[-1].content
    if last.startswith("Critique request:"):
        return "The advice could be safer."
    if last.startswith("Revision request:"):
        return "Call your vet now: chocolate is toxic to dogs."
    return "Give water and wait."


def jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


async def revise_file(path: Path, out: Path, **options) -> tuple[MockModel, list[dict]]:
    config = ModelConfig(spec="mock/policy")
    model = MockModel("policy", config, responder=responder)
    await run_revise(iter_prompts(path, **options), engine=Engine(model, config), settings=settings(),
                     out_path=out / "revisions.jsonl", concurrency=1)
    return model, latest_records(out / "revisions.jsonl")


# ------------------------------------------------------------------------------------------- reading


def test_hh_transcripts_messages_and_strings_are_conversations() -> None:
    dog = to_conversation(DOG)
    assert [t.role for t in dog] == ["user", "assistant", "user"]  # the final answer is cut
    assert dog[-1].content == "A whole bar of chocolate. What should I do?"
    assert [t.role for t in to_conversation(CAKE)] == ["user", "assistant", "user"]  # an empty "Assistant:" too
    sharegpt = [{"from": "system", "value": "Be brief."}, {"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"}]
    assert to_conversation(sharegpt) == (Turn("system", "Be brief."), Turn("user", "Hi"))
    assert to_conversation("  plain question  ") == (Turn("user", "plain question"),)
    # forced formats: text keeps a transcript as one turn; hh and messages refuse a plain string
    assert to_conversation(DOG, "text") == (Turn("user", DOG.strip()),)
    with pytest.raises(ValueError, match="no 'Human:' turn"):
        to_conversation("just a question", "hh")
    with pytest.raises(ValueError, match="--format messages expects a list"):
        to_conversation("just a question", "messages")


def test_single_turn_record_ids_are_the_plain_string_ids(tmp_path: Path) -> None:
    s = settings()
    legacy = stable_hash({"prompt": "What is 2+2?", **s.fingerprint("mock/p")})  # the id before conversations
    (item,) = iter_prompts(jsonl(tmp_path / "p.jsonl", [{"messages": [{"role": "user", "content": "What is 2+2?"}]}]))
    assert record_id("What is 2+2?", s, "mock/p") == record_id(item.messages, s, "mock/p") == legacy
    with_system = to_conversation([{"role": "system", "content": "x"}, {"role": "user", "content": "What is 2+2?"}])
    assert record_id(with_system, s, "mock/p") != legacy


async def test_a_multi_turn_transcript_is_revised_with_its_context(tmp_path: Path) -> None:
    prompts = jsonl(tmp_path / "hh.jsonl", [{"chosen": DOG}, {"chosen": CAKE}])
    model, records = await revise_file(prompts, tmp_path / "out", column="chosen")
    assert len(records) == 2 and len({r["id"] for r in records}) == 2  # same last turn, other context: two records
    assert {r["prompt"] for r in records} == {"A whole bar of chocolate. What should I do?"}
    dog = next(r for r in records if "kitchen" in r["messages"][0]["content"])
    assert [m["role"] for m in dog["messages"]] == ["user", "assistant", "user"]
    assert not any("OLD ANSWER" in m.content for call in model.calls for m in call.messages)
    first = model.calls[0]
    assert [m.role for m in first.messages] == ["system", "user", "assistant", "user"] and first.messages[0].content == SYSTEM
    critique = next(c for c in model.calls if c.messages[-1].content.startswith("Critique request:"))
    assert [m.role for m in critique.messages] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert critique.messages[-2].content == "Give water and wait."  # the answer being critiqued follows the context


async def test_a_messages_file_with_system_turns_combines_the_system_prompts(tmp_path: Path) -> None:
    from cai_engine.exports.sft import export_sft

    conversation = [{"role": "system", "content": "You are ACME's support bot."},
                    {"role": "user", "content": "My order is late."}, {"role": "assistant", "content": "Order number?"},
                    {"role": "user", "content": "It is 42."}]
    model, (record,) = await revise_file(jsonl(tmp_path / "m.jsonl", [{"messages": conversation}]), tmp_path / "out")
    system = model.calls[0].messages[0]
    assert system.role == "system" and system.content == f"{SYSTEM}\n\nYou are ACME's support bot."
    assert [m.role for m in model.calls[0].messages] == ["system", "user", "assistant", "user"]
    assert record["messages"] == conversation and record["prompt"] == "It is 42."

    plain = export_sft(tmp_path / "out", tmp_path / "sft")
    import datasets

    row = datasets.load_from_disk(str(tmp_path / "sft" / "dataset"))[0]
    assert row["messages"] == [*conversation, {"role": "assistant", "content": record["final_response"]}]
    assert plain["multi_turn_prompts"] == 1
    export_sft(tmp_path / "out", tmp_path / "sft-sys", with_system=True)
    row = datasets.load_from_disk(str(tmp_path / "sft-sys" / "dataset"))[0]
    assert row["messages"][0] == {"role": "system", "content": system.content} and len(row["messages"]) == 5


def hh_parquet_dir(root: Path) -> Path:
    """An ``Anthropic/hh-rlhf``-like local dataset: chosen/rejected whole transcripts in parquet files."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    root.mkdir(parents=True)
    rows = [
        {"chosen": DOG.replace("OLD ANSWER that must never reach a model.", "Call a vet."),
         "rejected": DOG.replace("OLD ANSWER that must never reach a model.", "Nothing, it is fine.")},
        {"chosen": "\n\nHuman: Hi there\n\nAssistant: Hello! How can I help?",
         "rejected": "\n\nHuman: Hi there\n\nAssistant: What."},
    ]
    pq.write_table(pa.Table.from_pylist(rows), root / "train-00000.parquet")
    return root


@pytest.mark.parametrize("streaming", [False, True])
def test_an_hh_rlhf_like_parquet_folder_through_hf_column_chosen_drops_the_answers(tmp_path: Path, streaming: bool) -> None:
    folder = hh_parquet_dir(tmp_path / "hh")
    items = list(iter_prompts(f"hf:{folder}", "chosen", streaming=streaming))
    assert [[t.role for t in i.messages] for i in items] == [["user", "assistant", "user"], ["user"]]
    assert all("Call a vet" not in t.content for i in items for t in i.messages)
    assert items[1].text == "Hi there" and items[1].row == 1


def test_hf_folder_through_the_cli_and_pairs_from_whole_transcripts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from cai_engine.pipelines.candidates import file_pairs

    folder = hh_parquet_dir(tmp_path / "hh")
    out = tmp_path / "out"
    main(["revise", "-c", "general", "-p", f"hf:{folder}", "--column", "chosen", "-o", str(out), "-m", "mock/echo", "--rounds", "1"])
    records = latest_records(out / "revisions.jsonl")
    assert sorted(len(r["messages"]) for r in records) == [1, 3]
    assert "done 2 new" in capsys.readouterr().err
    # hh-rlhf as labelled pairs (judge-eval --labels / --pairs-from file:): the shared part is the prompt
    first, second = file_pairs(f"hf:{folder}")
    assert [t.role for t in first.conversation] == ["user", "assistant", "user"] and first.label == "a"
    assert (first.a.text, first.b.text) == ("Call a vet.", "Nothing, it is fine.")  # type: ignore[union-attr]
    assert second.messages == () and second.prompt == "Hi there"  # single turn: the plain-string pair id


def test_hf_specs_for_pairs_and_an_unreachable_hub_dataset(tmp_path: Path) -> None:
    from cai_engine.pipelines.candidates import parse_pairs_from

    assert parse_pairs_from(f"file:hf:{tmp_path}") == ("file", f"hf:{tmp_path}")
    assert parse_pairs_from("samples:hf:Anthropic/hh-rlhf/harmless-base") == ("samples", "hf:Anthropic/hh-rlhf/harmless-base")
    with pytest.raises(CaiError, match="revisions: takes the --out dir"):
        parse_pairs_from("revisions:hf:x/y")
    with pytest.raises(CaiError, match=r"^hf:nobody/no-such-dataset: could not load the dataset .*HF cache"):
        list(iter_prompts("hf:nobody/no-such-dataset", "chosen"))  # offline in tests: one line, with what to do


def test_save_to_disk_splits_and_a_missing_split(tmp_path: Path) -> None:
    import datasets

    saved = tmp_path / "saved"
    datasets.DatasetDict({"train": datasets.Dataset.from_list([{"prompt": "a"}]),
                          "test": datasets.Dataset.from_list([{"prompt": "b"}, {"prompt": DOG}])}).save_to_disk(str(saved))
    assert [i.text for i in iter_prompts(saved)] == ["a"]
    assert [i.text for i in iter_prompts(f"hf:{saved}", split="test")][0] == "b"
    with pytest.raises(CaiError, match="no split 'dev'"):
        list(iter_prompts(saved, split="dev"))


# ------------------------------------------------------------------------------------------- bad input

GOOD = {"prompt": "A fine question?"}


def _bad_cases() -> list[tuple[str, str, bytes, list[str], list[str]]]:
    def lines(*rows: object) -> bytes:
        return "".join(json.dumps(r) + "\n" for r in rows).encode()

    return [
        ("binary", "p.jsonl", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", [], ["binary file"]),
        ("not-utf8", "p.jsonl", lines(GOOD) + b'{"prompt": "caf\xe9"}\n', [], ["not UTF-8"]),
        ("empty", "p.jsonl", b"\n\n", [], ["empty file"]),
        ("no-prompt-column", "p.jsonl", lines({"q": "x"}), [], ["row 1", "no prompt column"]),
        ("last-turn-assistant", "p.jsonl", lines(GOOD, {"messages": [
            {"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "assistant", "content": "c"}]}),
         [], ["row 2", "not the user's"]),
        ("unknown-role", "p.jsonl", lines(GOOD, GOOD, {"messages": [{"role": "tool", "content": "x"}]}), [], ["row 3", "unknown role 'tool'"]),
        ("empty-content", "p.jsonl", lines({"messages": [
            {"role": "user", "content": "a"}, {"role": "assistant", "content": " "}, {"role": "user", "content": "c"}]}),
         [], ["row 1", "turn 2 (assistant) has empty content"]),
        ("empty-prompt", "p.csv", b"prompt\nfine\n\"\"\n", [], ["row 2", "empty prompt"]),
        ("no-human-turn", "p.jsonl", lines(GOOD, {"prompt": "Assistant: hello"}), ["--format", "hh"], ["row 1", "no 'Human:' turn"]),
        ("invalid-json", "p.jsonl", lines(GOOD) + b"{oops\n", [], ["row 2", "invalid JSON on line 2"]),
    ]


@pytest.mark.parametrize(("name", "filename", "content", "extra", "expected"), _bad_cases(), ids=[c[0] for c in _bad_cases()])
def test_bad_input_is_one_line_with_file_and_row_before_any_request(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, filename: str, content: bytes, extra: list[str],
    expected: list[str],
) -> None:
    path = tmp_path / filename
    path.write_bytes(content)
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_info:
        main(["revise", "-c", "general", "-p", str(path), "-o", str(out), "-m", "mock/echo", *extra])
    assert exit_info.value.code != 0
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and str(path) in err and "Traceback" not in err, err
    for fragment in expected:
        assert fragment in err
    assert not (out / "revisions.jsonl").exists()  # nothing was asked of a model


def test_an_empty_parquet_has_no_usable_prompt(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "p.parquet"
    pq.write_table(pa.table({"prompt": pa.array([], pa.string())}), path)
    with pytest.raises(SystemExit):
        main(["revise", "-c", "general", "-p", str(path), "-o", str(tmp_path / "out"), "-m", "mock/echo"])
    assert f"{path}: no usable prompt" in capsys.readouterr().err


def test_a_binary_file_through_the_installed_cli_is_one_line(tmp_path: Path) -> None:
    import subprocess
    import sys

    path = tmp_path / "p.txt"
    path.write_bytes(bytes(range(256)) * 4)
    result = subprocess.run([sys.executable, "-m", "cai_engine", "revise", "-c", "general", "-p", str(path), "-o",
                             str(tmp_path / "o"), "-m", "mock/echo"], capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert [line for line in result.stderr.splitlines() if line.strip()] == [
        f"error: {path}: binary file (it holds NUL bytes), not UTF-8 text; pass a .jsonl/.csv/.txt text file, "
        ".parquet or a datasets dir"]


def test_skip_bad_rows_warns_counts_and_goes_on(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                caplog: pytest.LogCaptureFixture) -> None:
    import cai_engine

    rows = [GOOD, {"messages": [{"role": "tool", "content": "x"}]}, {"prompt": "Second?"}, {"prompt": ""}, {"prompt": DOG}]
    path = jsonl(tmp_path / "p.jsonl", rows)
    with caplog.at_level(logging.WARNING, logger="cai_engine.sources"):
        main(["revise", "-c", "general", "-p", str(path), "-o", str(tmp_path / "cli"), "-m", "mock/echo", "--rounds", "0",
              "--skip-bad-rows"])
    warnings = [r.getMessage() for r in caplog.records]
    assert warnings == [f"warning: skipped {path}: row 2: turn 1 has unknown role 'tool'; use system, user or assistant",
                        f"warning: skipped {path}: row 4: empty prompt"]
    assert "skipped 2 bad input rows" in capsys.readouterr().err
    assert len(latest_records(tmp_path / "cli" / "revisions.jsonl")) == 3
    result = cai_engine.revise(path, model="mock/echo", out=tmp_path / "api", rounds=0, skip_bad_rows=True, progress=False)
    assert result.bad_rows == 2 and len(result) == 3  # type: ignore[attr-defined]
    with pytest.raises(BadRow, match=r"p.jsonl: row 2: turn 1 has unknown role"):
        cai_engine.revise(path, model="mock/echo", out=tmp_path / "api2", rounds=0, progress=False)
    with pytest.raises(CaiError, match="no usable prompt; 1 bad rows skipped"):
        cai_engine.revise([{"messages": []}], model="mock/echo", out=tmp_path / "api3", skip_bad_rows=True, progress=False)


def test_python_api_lists_of_conversations(tmp_path: Path) -> None:
    import cai_engine
    from cai_engine.models.base import Message

    prompts = [DOG, [Message(role="user", content="Hi"), Message(role="assistant", content="Hello"),
                     Message(role="user", content="Tell me a joke.")], "plain"]
    result = cai_engine.revise(prompts, model="mock/echo", out=tmp_path / "o", rounds=0, progress=False)
    assert sorted(len(json.loads(m)) for m in result["messages"]) == [1, 3, 3]


# ------------------------------------------------------------------------------------------- judge, eval, view


async def test_the_judge_sees_the_conversation_and_the_dpo_export_keeps_it(tmp_path: Path) -> None:
    import datasets

    from cai_engine.exports.preference import export_preference
    from cai_engine.pipelines.candidates import revision_pairs
    from cai_engine.pipelines.judge import JudgeSettings, run_judge
    from cai_engine.training.data import load_preference, to_kto

    await revise_file(jsonl(tmp_path / "hh.jsonl", [{"prompt": DOG}]), tmp_path / "rev")
    config = ModelConfig(spec="mock/judge")
    judge = MockModel("judge", config, responder=lambda r: "A" if "vet" in r.messages[-1].content.split("<response_A>")[1].split("</response_A>")[0] else "B")
    await run_judge(revision_pairs(tmp_path / "rev"), engine=Engine(judge, config), settings=JudgeSettings(constitution=constitution()),
                    out_path=tmp_path / "pairs" / "pairs.jsonl", concurrency=1)
    shown = judge.calls[0].messages[-1].content
    assert ("<conversation>\nHuman: My dog ate something from the kitchen.\n\nAssistant: What did he eat, and how much?"
            "\n\nHuman: A whole bar of chocolate. What should I do?\n</conversation>") in shown
    (pair,) = latest_records(tmp_path / "pairs" / "pairs.jsonl")
    assert pair["status"] == "ok" and len(pair["messages"]) == 3
    export_preference(tmp_path / "pairs", tmp_path / "dpo", kind="dpo")
    row = datasets.load_from_disk(str(tmp_path / "dpo" / "dataset"))[0]
    assert row["prompt"] == pair["messages"] and row["chosen"] == [{"role": "assistant", "content": "Call your vet now: chocolate is toxic to dogs."}]
    kto = to_kto(load_preference(tmp_path / "dpo", stage="kto"))
    assert kto[0]["prompt"] == pair["messages"] and {r["label"] for r in kto} == {True, False}


async def test_eval_items_keep_their_conversation(tmp_path: Path) -> None:
    from cai_engine.evaluation.generate import GenJob, GenSettings, generate_item, generation_id, model_fingerprint
    from cai_engine.evaluation.sets import load_set

    path = jsonl(tmp_path / "heldout.jsonl", [{"prompt": DOG}, {"prompt": "plain?"}, {"messages": [{"role": "user", "content": "plain?"}]}])
    conversational, plain, same = load_set("heldout", path)
    assert len(conversational.messages) == 3 and conversational.prompt.startswith("A whole bar") and plain.messages == ()
    config = ModelConfig(spec="mock/m")
    engine = Engine(MockModel("m", config), config)
    gen = GenSettings(params=SamplingParams(max_tokens=8), system_prompt=SYSTEM)
    fp = model_fingerprint(engine)
    assert generation_id(fp, plain, gen) == generation_id(fp, same, gen) != generation_id(fp, conversational, gen)
    record = await generate_item(GenJob(0, engine.spec, fp, conversational), "x", engine, gen)
    assert [m.role for m in engine.model.calls[0].messages] == ["system", "user", "assistant", "user"]  # type: ignore[attr-defined]
    assert record["messages"][0]["content"] == "My dog ate something from the kitchen."


async def test_preview_and_view_show_the_context(tmp_path: Path) -> None:
    from rich.console import Console

    from cai_engine.workbench.preview import render_preview, run_preview
    from cai_engine.workbench.viewer import build_items, find_files, write_viewer

    config = ModelConfig(spec="mock/policy")
    engine = Engine(MockModel("policy", config, responder=responder), config)
    (item,) = list(iter_prompts(jsonl(tmp_path / "p.jsonl", [{"prompt": DOG}])))
    (shown,) = await run_preview([item], engine=engine, settings=settings())
    assert shown.revision["status"] == "ok" and len(shown.context) == 2
    console = Console(record=True, width=160)
    render_preview([shown], console)
    text = console.export_text()
    assert "What did he eat, and how much?" in text and "(3 turns)" in text

    await revise_file(tmp_path / "p.jsonl", tmp_path / "rev")
    (view,) = build_items(find_files(tmp_path / "rev"))
    assert [t["role"] for t in view["context"]] == ["user", "assistant"]
    page, _ = write_viewer(tmp_path / "rev")
    assert "What did he eat, and how much?" in page.read_text()


def test_run_yaml_takes_hf_sources(tmp_path: Path) -> None:
    from cai_engine.runs.config import load_run_config

    folder = hh_parquet_dir(tmp_path / "data" / "hh")
    path = tmp_path / "run.yaml"
    path.write_text("name: x\nconstitution: general\nstages: [revise]\n"
                    "prompts: {train: 'hf:data/hh', column: chosen, format: hh, split: train, skip_bad_rows: true}\n")
    config, _ = load_run_config(path)
    assert config.prompts.train == folder and config.prompts.reading()["format"] == "hh"  # a local folder: its path
    assert [len(i.messages) for i in iter_prompts(config.prompts.train, config.prompts.column, **config.prompts.reading())] == [3, 1]
    path.write_text("name: x\nconstitution: general\nstages: [revise]\nprompts: {train: 'hf:Anthropic/hh-rlhf:x'}\n")
    assert load_run_config(path)[0].prompts.train == "hf:Anthropic/hh-rlhf:x"  # a Hub id stays as written


# ------------------------------------------------------------------------------------------- end to end

from helpers_models import tiny_models  # noqa: E402,F401 (fixture)

TRANSCRIPTS = [
    DOG,
    CAKE,
    "\n\nHuman: Can you help me with my essay?\n\nAssistant: Sure, what is it about?\n\nHuman: Rivers. Give me a first line."
    "\n\nAssistant: Rivers are nice.",
    "\n\nHuman: What is a good name for a cat?\n\nAssistant: Whiskers.\n\nHuman: Something less common?\n\nAssistant:",
]
TRAIN = ["--set", "max_steps=1", "--set", "per_device_train_batch_size=2", "--set", "max_length=128", "--set", "learning_rate=1e-3"]


def _steps(stage_dir: Path) -> list[int]:
    rows = [json.loads(line) for line in (stage_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return [r["step"] for r in rows if "loss" in r]


def test_multi_turn_hh_through_revise_sft_judge_dpo_and_training(tmp_path: Path, tiny_models: dict) -> None:  # noqa: F811
    import asyncio

    import datasets

    from cai_engine.pipelines.candidates import revision_pairs
    from cai_engine.pipelines.judge import JudgeSettings, run_judge
    from cai_engine.training.data import load_preference, load_sft, to_prompt_completion

    prompts = jsonl(tmp_path / "hh.jsonl", [{"chosen": t} for t in TRANSCRIPTS])
    rev = tmp_path / "rev"
    main(["revise", "-c", "general", "-p", str(prompts), "--column", "chosen", "-o", str(rev), "-m", "mock/echo", "--rounds", "1"])
    main(["export", "sft", str(rev), "--out", str(tmp_path / "sft")])
    sft = datasets.load_from_disk(str(tmp_path / "sft" / "dataset"))
    assert len(sft) == 4 and all(len(m) == 4 for m in sft["messages"])  # 3 prompt turns + the final revision
    assert not any("OLD ANSWER" in t["content"] or t["content"] == "Rivers are nice." for m in sft["messages"] for t in m)
    completion = to_prompt_completion(load_sft(tmp_path / "sft"), tmp_path / "sft")
    assert [len(p) for p in completion["prompt"]] == [3, 3, 3, 3]  # the trainer trains on the last answer, sees the context
    main(["train", "sft", "--set", f"model={tiny_models['causal']}", "--set", f"dataset={tmp_path / 'sft'}",
          "--out", str(tmp_path / "train-sft"), *TRAIN])
    assert _steps(tmp_path / "train-sft") == [1]

    config = ModelConfig(spec="mock/judge")
    judge = MockModel("judge", config, responder=lambda r: "A" if "Revision request" in r.messages[-1].content.split(
        "<response_A>")[1].split("</response_A>")[0] else "B")  # mock/echo's revisions quote the revision request
    asyncio.run(run_judge(revision_pairs(rev), engine=Engine(judge, config), settings=JudgeSettings(constitution=constitution()),
                          out_path=tmp_path / "pairs" / "pairs.jsonl", concurrency=2))
    main(["export", "dpo", str(tmp_path / "pairs"), "--out", str(tmp_path / "dpo")])
    dpo = load_preference(tmp_path / "dpo", stage="dpo")
    assert len(dpo) == 4 and all([t["role"] for t in p] == ["user", "assistant", "user"] for p in dpo["prompt"])
    main(["train", "dpo", "--set", f"model={tiny_models['causal']}", "--set", f"dataset={tmp_path / 'dpo'}",
          "--out", str(tmp_path / "train-dpo"), *TRAIN])
    assert _steps(tmp_path / "train-dpo") == [1]
