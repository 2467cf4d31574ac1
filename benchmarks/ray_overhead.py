"""What ``--ray`` costs: the same requests single-process and on Ray workers, same total concurrency.

The fake provider (tests/fake_provider.py) runs in its own process with a fixed latency. Each
round runs the Python API's ``revise`` (one request per prompt: ``rounds=0``; records written to
OUT, cache off) over the same N prompts twice: in process at ``--concurrency C``, and with
``ray={"workers": W}`` (C/W items in flight per worker, the same C in all). Ray is started once,
before the rounds (a cluster is started once, not per command); each ``--ray`` run still starts
its own worker actors and quota actor, and that start-up is inside its time. Rounds alternate and
the best of each mode is kept (the machine is shared). Reported: both throughputs (requests / wall
time of the command), the ratio, and the steady-state rate the server saw during the Ray run
(first to last answered request, i.e. without the actors' start-up).

On a 2-core machine Ray cannot add cores, only cost (its processes compete for the same two):
the target is ratio >= 0.8. Writes benchmarks/results/ray_overhead.json.

    python benchmarks/ray_overhead.py [--n 5000] [--concurrency 64] [--workers 2] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "ray_overhead.json"


def start_server(latency: float) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "fake_provider.py"), "--latency", str(latency)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    port = proc.stdout.readline().split()[1]
    return proc, f"http://127.0.0.1:{port}"


def server_times(url: str) -> list[float]:
    with urllib.request.urlopen(f"{url}/_stats") as reply:
        return json.loads(reply.read())["ok_times"]


def prompt(i: int) -> str:
    return f"benchmark prompt {i}: summarise the principle of least privilege in one line"


def run(mode: str, config: Path, out: Path, n: int, concurrency: int, workers: int, batch_size: int) -> float:
    from cai_engine.api.revise import revise

    ray = {"workers": workers, "batch_size": batch_size} if mode == "ray" else None
    started = time.perf_counter()
    result = revise([prompt(i) for i in range(n)], constitution="general", model="openai/fake", model_config=config,
                    out=out, rounds=0, few_shot=0, max_tokens=32, no_cache=True, concurrency=concurrency,
                    progress=False, with_dataset=False, ray=ray)
    wall = time.perf_counter() - started
    assert result.summary.done == n, result.summary
    return wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--latency", type=float, default=0.05)
    args = parser.parse_args()

    import ray

    os.environ.setdefault("OPENAI_API_KEY", "sk-bench")
    tmp = Path(tempfile.mkdtemp(prefix="ray-overhead-"))
    os.environ["CAI_HOME"] = str(tmp / "home")
    proc, url = start_server(args.latency)
    try:
        config = tmp / "model.yaml"
        config.write_text(yaml.safe_dump({"base_urls": [f"{url}/v1"], "max_concurrency": args.concurrency,
                                          "timeout_s": 30, "max_retries": 3}))
        started = time.perf_counter()
        ray.init(num_cpus=os.cpu_count() or 2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
        init_s = time.perf_counter() - started
        walls: dict[str, list[float]] = {"single": [], "ray": []}
        steady: list[float] = []
        for k in range(args.rounds):
            for mode in ("single", "ray"):
                before = len(server_times(url))
                wall = run(mode, config, tmp / f"{mode}-{k}", args.n, args.concurrency, args.workers, args.batch_size)
                walls[mode].append(wall)
                if mode == "ray":
                    times = server_times(url)[before:]
                    steady.append(len(times) / max(1e-9, times[-1] - times[0]))
                print(f"round {k} {mode:6s}: {args.n / wall:7.1f} requests/s ({wall:.1f} s)", flush=True)
        ray.shutdown()
    finally:
        proc.terminate()
    single = args.n / min(walls["single"])
    on_ray = args.n / min(walls["ray"])
    result = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "ray": ray.__version__},
        "config": {"n": args.n, "concurrency": args.concurrency, "workers": args.workers,
                   "batch_size": args.batch_size, "latency_s": args.latency, "rounds": args.rounds},
        "ray_init_s": round(init_s, 2),
        "single_requests_per_s": round(single, 1),
        "ray_requests_per_s": round(on_ray, 1),
        "ratio": round(on_ray / single, 3),
        "ray_steady_requests_per_s": round(max(steady), 1),
        "walls_s": {mode: [round(w, 2) for w in ws] for mode, ws in walls.items()},
        "target_ratio": 0.8,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print(f"wrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
