"""``--ray``: revise and judge on Ray workers against the fake provider on 127.0.0.1.

One local Ray per module (``ray.init(num_cpus=2)``, a few seconds); each run starts its own worker
actors (separate processes, so a test can SIGKILL one) and its quota actor. Checked: every prompt
ends with exactly one good record whose id and text equal a single-process run's (10% faults on
the wire); a worker killed mid-run loses and duplicates nothing and costs at most its unreturned
items again; ``rpm: 120`` holds across two workers in every 60 s window; ``--max-cost`` holds
across workers and a rerun continues from the ledger; the CLI flags reach the executor; without
Ray installed ``--ray`` is one line saying how to install it.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml
from fake_provider import Faults, reply_text, running_provider
from judge_fake_server import running_judge

from cai_engine.engine.ledger import LEDGER_FILE
from cai_engine.engine.records import read_jsonl
from cai_engine.errors import BudgetExceeded

ray = pytest.importorskip("ray")

FAULT_RATES = {"429": 0.02, "500": 0.02, "503": 0.01, "drop": 0.015, "malformed": 0.015, "truncated": 0.015,
               "slow": 0.005}


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield
    ray.shutdown()


@pytest.fixture(autouse=True)
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-ray-0000")
    monkeypatch.setenv("CAI_HOME", str(tmp_path / "home"))


def model_config(tmp: Path, base_url: str, **extra: object) -> Path:
    path = tmp / "model.yaml"
    path.write_text(yaml.safe_dump({"base_urls": [base_url], "timeout_s": 1.0, "max_retries": 8, **extra}))
    return path


def prompts(n: int) -> list[str]:
    return [f"prompt number {i}: tell me about item {i * 7919 % 1000}" for i in range(n)]


def revise_on(config: Path, out: Path, items: list[str], **kwargs: object):
    from cai_engine.api.revise import revise

    args = {"model": "openai/fake", "model_config": config, "out": out, "rounds": 0, "few_shot": 0, "max_tokens": 32,
            "no_cache": True, "progress": False, "with_dataset": False, "constitution": "general"}
    return revise(items, **{**args, **kwargs})


def lines(path: Path) -> list[dict]:
    return list(read_jsonl(path))


def worker_pids(timeout: float = 60.0) -> dict[str, int]:
    """Name -> pid of the worker actors of the run in progress (named ``cai-RUN-worker-I``)."""
    from cai_engine.executors.settings import NAMESPACE

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        names = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
                 if a["namespace"] == NAMESPACE and "-worker-" in a["name"]]
        if names:
            return {name: ray.get(ray.get_actor(name, namespace=NAMESPACE).pid.remote(), timeout=30) for name in names}
        time.sleep(0.1)
    raise AssertionError("no Ray worker actor appeared")


def test_300_prompts_with_faults_on_two_workers_equal_a_single_process_run(tmp_path: Path) -> None:
    items = prompts(300)
    with running_provider(faults=Faults(rates=FAULT_RATES, slow_s=2.0, seed=7)) as provider:
        config = model_config(tmp_path, provider.openai_base)
        started = time.perf_counter()
        result = revise_on(config, tmp_path / "ray", items, concurrency=32, ray={"workers": 2, "batch_size": 16})
        ray_s = time.perf_counter() - started
        served = dict(provider.counts)
        single = revise_on(config, tmp_path / "one", items, concurrency=32)
    records = lines(tmp_path / "ray" / "revisions.jsonl")
    ids = Counter(r["id"] for r in records)
    injected = sum(v for k, v in served.items() if k.startswith("fault:"))
    print(f"\n300 prompts on 2 Ray workers in {ray_s:.1f} s: {len(records)} records, injected faults {injected}, "
          f"retries {result.stats[0]['retries']}, server requests {served['chat']}")
    assert injected >= 15  # the faults really fired
    assert len(records) == 300 and max(ids.values()) == 1
    assert all(r["status"] == "ok" for r in records)
    assert result.summary.done == 300 and result.summary.failed == 0
    for r in records:  # each record carries the answer to ITS prompt
        assert r["final_response"] == reply_text(r["prompt"])
    one = {r["id"]: r for r in lines(tmp_path / "one" / "revisions.jsonl")}
    assert set(one) == set(ids)
    assert all(one[r["id"]]["final_response"] == r["final_response"] for r in records)
    assert result.stats[0]["requests"] == 300  # the driver's counters are the workers' sums
    report = json.loads((tmp_path / "ray" / "manifest.json").read_text())["stages"]["revise"]["ray"]
    assert report["workers"] == 2 and report["batches_redone"] == 0 and report["duplicates_dropped"] == 0


def test_a_killed_worker_loses_nothing_and_repeats_at_most_its_unreturned_items(tmp_path: Path) -> None:
    n, per_worker, batch = 300, 4, 8
    items = prompts(n)
    out = tmp_path / "ray"
    killed: list[int] = []
    lines_at_kill: list[int] = []

    def kill_one() -> None:
        pids = worker_pids()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # mid-run: some records written, most to go
            if (out / "revisions.jsonl").exists() and sum(1 for _ in read_jsonl(out / "revisions.jsonl")) >= 60:
                break  # (60 of 300 done: at 0.2 s a request and 8 in flight, a few seconds of work are left)
            time.sleep(0.02)
        pid = sorted(pids.values())[0]
        lines_at_kill.append(sum(1 for _ in read_jsonl(out / "revisions.jsonl")))
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)

    with running_provider(latency_s=0.2) as provider:
        config = model_config(tmp_path, provider.openai_base, timeout_s=10)
        killer = threading.Thread(target=kill_one, daemon=True)
        killer.start()
        result = revise_on(config, out, items, concurrency=2 * per_worker, ray={"workers": 2, "batch_size": batch})
        killer.join(timeout=5)
        repeated = sum(1 for count in provider.attempts.values() if count > 1)
        requests = provider.counts["chat"]
    records = lines(out / "revisions.jsonl")
    ids = Counter(r["id"] for r in records)
    captured = json.loads((out / "manifest.json").read_text())["stages"]["revise"]["ray"]  # the executor's report
    print(f"\nkilled worker pid {killed} at {lines_at_kill} records: {len(records)} records, {requests} requests served, prompts served more "
          f"than once: {repeated} (bound: {per_worker} in flight + {batch} per batch), executor report {captured}")
    assert killed and lines_at_kill[0] < n - 50, "the worker was not killed mid-run"
    assert len(records) == n and len(ids) == n and max(ids.values()) == 1  # 0 lost, 0 duplicated
    assert all(r["status"] == "ok" and r["final_response"] == reply_text(r["prompt"]) for r in records)
    assert result.summary.done == n
    assert captured["batches_redone"] >= 1 and captured["worker_processes"] >= 3  # it died and was replaced
    assert repeated <= per_worker + batch  # at most the items the dead worker had started and not returned
    assert requests - n <= per_worker + batch


@pytest.mark.slow
def test_rpm_120_holds_across_two_workers_in_every_60s_window(tmp_path: Path) -> None:
    n = 140  # ~70 s at 2 requests/s: the first 60 s window is full, later ones slide over the end
    with running_provider() as provider:
        config = model_config(tmp_path, provider.openai_base, rpm=120, timeout_s=10)
        started = time.monotonic()
        result = revise_on(config, tmp_path / "ray", prompts(n), concurrency=8, ray={"workers": 2, "batch_size": 4},
                           progress=QuotaLine)
        elapsed = time.monotonic() - started
        times = sorted(provider.request_times)
    peak = max(sum(1 for t in times[i:] if t < start + 60.0) for i, start in enumerate(times))
    print(f"\n{n} requests under rpm 120 on 2 workers in {elapsed:.1f} s; most in any 60 s window: {peak}; "
          f"last progress quota: {QuotaLine.seen[-1]!r}")
    assert result.summary.done == n
    # the driver's progress line shows the workers' use together against the one quota
    shown = [int(t.split("/")[0].split()[-1].replace(",", "")) for t in QuotaLine.seen if t.endswith("/120")]
    assert shown and max(shown) >= 60, QuotaLine.seen[-5:]
    assert peak <= 120 * 1.05
    assert peak >= 100  # the limit was the bottleneck, not something slower


class QuotaLine:
    """A progress factory that keeps what the progress line's quota part says at every record."""

    seen: list[str] = []

    def __init__(self, description: str, total: int | None, engines: list) -> None:
        self.engines = engines

    def __enter__(self) -> "QuotaLine":
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def record(self, record: dict) -> None:
        QuotaLine.seen.append(" ".join(t for e in self.engines if (t := e.quota_text())))

    def skip(self, n: int) -> None:
        pass


def test_max_cost_holds_across_workers_and_a_rerun_continues_from_the_ledger(tmp_path: Path) -> None:
    items = prompts(200)
    out = tmp_path / "ray"
    budget, concurrency = 1.0, 4  # about 115 requests of about 0.9 cents; a grant is 1/40 of it
    with running_provider() as provider:
        config = model_config(tmp_path, provider.openai_base, timeout_s=10,
                              prices={"input_per_mtok": 100.0, "output_per_mtok": 200.0})
        with pytest.raises(BudgetExceeded, match="--max-cost 1 USD reached"):
            revise_on(config, out, items, concurrency=concurrency, max_cost=budget, ray={"workers": 2, "batch_size": 4})
        spent = json.loads((out / LEDGER_FILE).read_text())
        records = lines(out / "revisions.jsonl")
        costs = [r["cost_usd"] for r in records]
        sent = provider.counts["chat"]
        print(f"\nbudget {budget}: spent {spent['spent_usd']:.4f} USD over {len(records)} records "
              f"({spent['outside_records_usd']:.4f} outside records), {sent} requests")
        assert 0 < len(records) < len(items)
        assert spent["records_usd"] == pytest.approx(sum(costs), abs=1e-6)
        # Stops at the budget: below it by at most the grants left unused, above it by at most the
        # requests in flight when it ran out (as in one process).
        assert 0.9 * budget <= spent["spent_usd"] <= budget + concurrency * max(costs)
        with pytest.raises(BudgetExceeded, match="earlier runs on this output"):
            revise_on(config, out, items, concurrency=concurrency, max_cost=budget, ray={"workers": 2})
        assert provider.counts["chat"] == sent  # the same budget sends nothing
        more = revise_on(config, out, items, concurrency=concurrency, max_cost=1000, ray={"workers": 2})
    assert more.summary.failed == 0
    assert len({r["id"] for r in lines(out / "revisions.jsonl") if r["status"] == "ok"}) == len(items)
    final = json.loads((out / LEDGER_FILE).read_text())
    assert final["records_usd"] == pytest.approx(sum(r["cost_usd"] for r in lines(out / "revisions.jsonl")), abs=1e-6)


def test_judge_on_ray_workers_equals_a_single_process_run(tmp_path: Path) -> None:
    from cai_engine.api.judge import judge

    pairs = [{"prompt": f"Capital of France? ({i})", "a": f"Paris, of course {i}.", "b": f"Lyon {i}."}
             for i in range(24)]
    with running_judge(mode="faithful") as provider:
        config = tmp_path / "judge.yaml"
        config.write_text(yaml.safe_dump({"base_urls": [provider.openai_base], "timeout_s": 10}))
        args = {"judge_model": "openai/judge", "judge_config": config, "no_cache": True, "progress": False,
                "with_dataset": False, "principles_per_judgment": 1}
        on_ray = judge(pairs, out=tmp_path / "ray", ray={"workers": 2, "batch_size": 4}, **args)
        single = judge(pairs, out=tmp_path / "one", **args)
    a = {r["id"]: r for r in lines(tmp_path / "ray" / "pairs.jsonl")}
    b = {r["id"]: r for r in lines(tmp_path / "one" / "pairs.jsonl")}
    assert on_ray.summary.done == single.summary.done == 24
    assert set(a) == set(b)
    assert all(a[k]["chosen"] == b[k]["chosen"] and a[k]["p_a_better"] == b[k]["p_a_better"] for k in a)


def test_eval_on_ray_workers_equals_a_single_process_run(tmp_path: Path) -> None:
    """All three phases of ``cai eval`` (answers of both models, win-rate pairs, harm classifications)
    as Ray jobs: the same record ids and statuses and the same figures as in one process."""
    from cai_engine.cli import main

    with running_provider() as policy, running_judge(mode="faithful", good_word="echo:") as judge_server:
        trained = model_config(tmp_path, policy.openai_base)
        judge_config = tmp_path / "judge.yaml"
        judge_config.write_text(yaml.safe_dump({"base_urls": [judge_server.openai_base], "timeout_s": 10}))
        for name, extra in (("one", []), ("ray", ["--ray-workers", "2"])):
            main(["eval", "-m", "openai/fake", "--model-config", str(trained), "-b", "mock/base",
                  "-j", "openai/judge", "--judge-config", str(judge_config), "-o", str(tmp_path / name),
                  "--limit", "5", "--max-tokens", "16", "--no-cache", "-k", "1", *extra])
    for file in ("generations.jsonl", "winrate_pairs.jsonl", "classifications.jsonl"):
        one = {r["id"]: r["status"] for r in lines(tmp_path / "one" / file)}
        on_ray = {r["id"]: r["status"] for r in lines(tmp_path / "ray" / file)}
        assert one and one == on_ray, file
    a, b = (json.loads((tmp_path / name / "eval.json").read_text()) for name in ("one", "ray"))
    for key in ("winrate", "sycophancy", "text"):
        assert a[key] == b[key], key
    assert a["safety"]["trained"] == b["safety"]["trained"] and a["winrate"]["wins"] > 0
    runs = json.loads((tmp_path / "ray" / "manifest.json").read_text())["stages"]["eval"]["ray"]
    assert len(runs) == 3 and all(r["workers"] == 2 for r in runs)  # answers, pairs, classifications
    assert sum(sum(r["records_by_process"].values()) for r in runs) == sum(
        len(lines(tmp_path / "ray" / f)) for f in ("generations.jsonl", "winrate_pairs.jsonl", "classifications.jsonl"))


def test_cli_ray_flags_run_the_command_on_ray(tmp_path: Path) -> None:
    from cai_engine.cli import main

    path = tmp_path / "prompts.jsonl"
    path.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in prompts(10)))
    with running_provider() as provider:
        config = model_config(tmp_path, provider.openai_base)
        main(["revise", "-c", "general", "-p", str(path), "-o", str(tmp_path / "out"), "-m", "openai/fake",
              "--model-config", str(config), "--rounds", "0", "--few-shot", "0", "--max-tokens", "16", "--no-cache",
              "--ray-workers", "2"])
    records = lines(tmp_path / "out" / "revisions.jsonl")
    assert len(records) == 10 and all(r["status"] == "ok" for r in records)
    report = json.loads((tmp_path / "out" / "manifest.json").read_text())["stages"]["revise"]["ray"]
    assert report["workers"] == 2 and sum(report["records_by_process"].values()) == 10


def test_without_ray_installed_ray_is_one_line_saying_how_to_install_it(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    from cai_engine.cli import main

    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    path = tmp_path / "prompts.jsonl"
    path.write_text(json.dumps({"prompt": "hi"}) + "\n")
    with pytest.raises(SystemExit) as exit_info:
        main(["revise", "-c", "general", "-p", str(path), "-o", str(tmp_path / "out"), "-m", "mock/echo", "--ray"])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert exit_info.value.code == 2
    assert len(err) == 1 and "pip install 'cai-engine[ray]'" in err[0], err
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_judge_on_the_embedded_model_with_two_workers_gives_the_same_records(tmp_path: Path,
                                                                             embedded_checkpoint: Path) -> None:
    """The transformers backend on Ray: each worker loads its own replica of the embedded model."""
    from cai_engine.api.judge import judge

    pairs = [{"prompt": "What is the capital of France?", "a": "The capital of France is Paris.", "b": f"I am not sure {i}."}
             for i in range(4)]
    args = {"judge_model": f"local/{embedded_checkpoint}", "no_cache": True, "progress": False, "with_dataset": False,
            "principles_per_judgment": 1, "concurrency": 4}
    on_ray = judge(pairs, out=tmp_path / "ray", ray={"workers": 2, "batch_size": 2}, **args)
    single = judge(pairs, out=tmp_path / "one", **args)
    a = lines(tmp_path / "ray" / "pairs.jsonl")
    b = lines(tmp_path / "one" / "pairs.jsonl")
    print(f"\nembedded judge on 2 Ray workers: {on_ray.summary}, engine {on_ray.stats[0]['requests']} requests")
    assert on_ray.summary.done + on_ray.summary.failed == single.summary.done + single.summary.failed == 4
    assert len(a) == len(b) == 4 and {r["id"] for r in a} == {r["id"] for r in b}
    assert on_ray.summary.done == single.summary.done


def test_cai_run_with_a_ray_section_gives_the_same_record_counts(tmp_path: Path) -> None:
    from cai_engine.runs.orchestrator import run

    path = tmp_path / "prompts.jsonl"
    path.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in prompts(12)))
    with running_provider() as policy, running_judge(mode="faithful", good_word="Revision") as judge_server:
        counts = {}
        for name, extra in (("plain", {}), ("onray", {"ray": {"workers": 2, "batch_size": 4}})):
            config = {
                "name": name, "constitution": "general", "prompts": {"train": str(path)},
                "models": {"policy": {"spec": "openai/fake", "base_urls": [policy.openai_base], "timeout_s": 10},
                           "judge": {"spec": "openai/judge", "base_urls": [judge_server.openai_base], "timeout_s": 10}},
                "generation": {"max_tokens": 512}, "stages": ["revise", "pairs"],
                "revise": {"rounds": 1, "few_shot": 0}, "pairs": {"principles_per_judgment": 1}, "use_cache": False,
                **extra,
            }
            yaml_path = tmp_path / f"{name}.yaml"
            yaml_path.write_text(yaml.safe_dump(config))
            run(yaml_path, echo=lambda *a, **k: None)
            counts[name] = {stage: Counter(r["status"] for r in lines(tmp_path / name / stage / file))
                            for stage, file in (("revise", "revisions.jsonl"), ("pairs", "pairs.jsonl"))}
    print(f"\ncai run record counts: {counts}")
    assert counts["onray"] == counts["plain"] and counts["plain"]["revise"]["ok"] == 12


@pytest.mark.slow
def test_the_demo_runs_generation_stages_on_ray_with_the_same_record_counts(tmp_path: Path,
                                                                            embedded_checkpoint: Path) -> None:
    """The shipped demo run (embedded model, transformers backend), its generation stages with and
    without ``ray: {workers: 2}`` (shortened: 4 prompts, 32 tokens)."""
    from cai_engine.paths import data_path
    from cai_engine.runs.orchestrator import run

    demo = yaml.safe_load(data_path("demo", "demo.yaml").read_text())
    demo["prompts"] = {**demo["prompts"], "train": str(data_path("demo", "prompts.jsonl")), "limit": 4}
    # the converted checkpoint of the test session (local/smollm2 would convert it again under this test's CAI_HOME)
    demo["models"] = {"policy": f"local/{embedded_checkpoint}", "judge": f"local/{embedded_checkpoint}"}
    demo["generation"] = {**demo["generation"], "max_tokens": 32}
    demo["stages"] = ["revise", "pairs"]
    counts = {}
    for name, extra in (("plain", {}), ("onray", {"ray": {"workers": 2, "batch_size": 2}})):
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump({**demo, "name": name, **extra}))
        run(path, echo=lambda *a, **k: None)
        counts[name] = {stage: Counter(r["status"] for r in lines(tmp_path / name / stage / file))
                        for stage, file in (("revise", "revisions.jsonl"), ("pairs", "pairs.jsonl"))}
    print(f"\ndemo generation stages, record counts: {counts}")
    assert counts["onray"] == counts["plain"] and sum(counts["plain"]["revise"].values()) == 4
