"""Shared plumbing for benchmarks/scale.py and benchmarks/kill_resume.py (not a benchmark itself).

* the fake OpenAI server (tests/fake_provider.py with ``--reply-bytes``: long replies) in its own process;
* the prompts file, model-config YAML and environment of a `cai revise` run;
* ``run_phase``: one `cai` command as its own process, watched every 0.2 s: its RSS (psutil, plus
  the kernel's high-water mark VmHWM where /proc has it, plus ru_maxrss from wait4 at exit), and
  the sampled peaks of its anonymous and file-backed parts (RssAnon/RssFile), and
  the line count of a records file read incrementally (only the appended bytes), with the peak RSS
  so far noted when the count first reaches given marks, and an optional SIGKILL at a count.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "benchmarks" / "results"
MB = 1_000_000  # figures are in MB (10^6 bytes); the targets are "< 100 MB"
SAMPLE_S = 0.2

_TOPICS = ("least privilege", "photosynthesis", "compound interest", "TCP congestion control", "the French Revolution",
           "vaccines", "sorting algorithms", "plate tectonics", "inflation", "password hygiene", "black holes",
           "sourdough baking", "unit testing", "the water cycle", "contract law", "neural networks")
_ASKS = ("Explain {t} to a curious teenager", "Give three common misconceptions about {t}",
         "Summarise {t} in one paragraph", "What should a beginner read first about {t}",
         "Write a short FAQ about {t}", "Compare two viewpoints on {t}")


def prompt_text(i: int) -> str:
    """Prompt i: unique (the index is in it) and a little varied."""
    t = _TOPICS[i % len(_TOPICS)]
    ask = _ASKS[(i // len(_TOPICS)) % len(_ASKS)].format(t=t)
    return f"[{i}] {ask}."


def write_prompts(path: Path, n: int) -> Path:
    with path.open("w", encoding="utf-8") as f:
        for start in range(0, n, 10_000):
            f.write("".join(json.dumps({"prompt": prompt_text(i)}) + "\n" for i in range(start, min(n, start + 10_000))))
    return path


def write_model_config(path: Path, port: int, concurrency: int = 64) -> Path:
    path.write_text(
        f"base_urls: [http://127.0.0.1:{port}/v1]\n"
        f"max_concurrency: {concurrency}\n"
        "prices: {input_per_mtok: 0.15, output_per_mtok: 0.6}\n",
        encoding="utf-8",
    )
    return path


class Server:
    """tests/fake_provider.py in its own process, each reply padded to about ``reply_bytes`` bytes."""

    def __init__(self, latency: float, reply_bytes: int, log: Path):
        self.log = log.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "tests" / "fake_provider.py"),
             "--latency", str(latency), "--reply-bytes", str(reply_bytes)],
            stdout=subprocess.PIPE, stderr=self.log, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().split()
        if len(line) != 2 or line[0] != "PORT":
            self.stop()
            raise RuntimeError(f"fake server did not start (said {line!r}); see {log}")
        self.port = int(line[1])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def cai_prefix(spec: str | None) -> tuple[list[str], dict[str, str]]:
    """The command prefix for `cai` and env assignments in front of it (``--cai "PYTHONPATH=X python -m cai_engine"``).

    Default: the `cai` script beside this interpreter, else ``python -m cai_engine``.
    """
    if not spec:
        script = Path(sys.executable).with_name("cai")
        return ([str(script)] if script.exists() else [sys.executable, "-m", "cai_engine"]), {}
    words = shlex.split(spec)
    env: dict[str, str] = {}
    while words and "=" in words[0] and not words[0].startswith(("/", ".")) and words[0].split("=", 1)[0].isidentifier():
        key, value = words.pop(0).split("=", 1)
        env[key] = value
    if not words:
        raise SystemExit(f"--cai {spec!r} has no command")
    return words, env


def cai_env(home: Path, extra: dict[str, str]) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"CAI_HOME": str(home), "OPENAI_API_KEY": "sk-bench", "PYTHONUNBUFFERED": "1",
                "COLUMNS": "120", "NO_COLOR": "1"})
    env.update(extra)
    return env


def revise_args(prompts: Path, out: Path, model_config: Path, concurrency: int, max_tokens: int) -> list[str]:
    return ["revise", "-c", "general", "-p", str(prompts), "-o", str(out), "-m", "openai/bench",
            "--model-config", str(model_config), "--rounds", "0", "--few-shot", "0", "--no-cache",
            "--concurrency", str(concurrency), "--max-tokens", str(max_tokens)]


def _proc_status(pid: int) -> dict[str, int]:
    """VmHWM (the kernel's peak RSS), RssAnon and RssFile of pid in bytes; {} where /proc lacks them."""
    found: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                key = line.split(b":", 1)[0]
                if key in (b"VmHWM", b"RssAnon", b"RssFile"):
                    found[key.decode()] = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return found


@dataclass
class PhaseResult:
    name: str
    cmd: list[str]
    rc: int | None
    wall_s: float
    peak_rss_mb: float
    # sampled peaks of the anonymous (heap) and file-backed (mmap'd files, e.g. Arrow) parts of RSS (Linux)
    peak_rss_anon_mb: float | None = None
    peak_rss_file_mb: float | None = None
    lines: int = 0
    first_line_s: float | None = None
    marks: dict[str, dict[str, float]] = field(default_factory=dict)  # "10%" -> {lines, t_s, peak_rss_mb}
    killed_at_lines: int | None = None
    summary: str = ""  # the command's own "done ..." / "exported ..." line
    stdout_tail: str = ""
    stderr_tail: str = ""

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _tail(path: Path, nbytes: int = 2000) -> str:
    try:
        data = path.read_bytes()[-nbytes:]
    except OSError:
        return ""
    return data.decode("utf-8", "replace")


def run_phase(name: str, cmd: list[str], env: dict[str, str], cwd: Path, log_dir: Path, *,
              records: Path | None = None, n: int | None = None, marks: tuple[float, ...] = (),
              kill_at: int | None = None, timeout_s: float | None = None) -> PhaseResult:
    """Run cmd to its end (or SIGKILL it once ``records`` has ``kill_at`` lines), watching RSS and lines.

    cwd should be a neutral dir: ``python -m cai_engine`` puts cwd first on sys.path, which would
    shadow a PYTHONPATH given by --cai when run from a checkout.
    """
    out_log, err_log = log_dir / f"{name}.stdout", log_dir / f"{name}.stderr"
    base_lines = 0
    offset = 0
    if records is not None and records.exists():
        with records.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                base_lines += chunk.count(b"\n")
                offset += len(chunk)
    lines = base_lines
    pending = {f"{round(m * 100)}%": max(1, int(m * n)) for m in marks} if n else {}
    result = PhaseResult(name=name, cmd=cmd, rc=None, wall_s=0.0, peak_rss_mb=0.0)
    peak = peak_anon = peak_file = 0
    handle = None
    with out_log.open("wb") as so, err_log.open("wb") as se:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=so, stderr=se)
        ps = psutil.Process(proc.pid)
        exited = threading.Event()
        reaped: dict[str, Any] = {}

        def waiter() -> None:  # blocks in wait4 so the exit time (and ru_maxrss) is exact, not 0.2 s late
            _, st, ru = os.wait4(proc.pid, 0)
            reaped.update(status=st, rusage=ru, t=time.perf_counter())
            exited.set()

        threading.Thread(target=waiter, daemon=True).start()

        def read_new() -> None:
            nonlocal handle, lines
            if records is None:
                return
            if handle is None:
                if not records.exists():
                    return
                handle = records.open("rb")
                handle.seek(offset)
            while chunk := handle.read(1 << 20):
                lines += chunk.count(b"\n")

        while not exited.is_set():
            try:
                rss = ps.memory_info().rss
                st = _proc_status(proc.pid)
                if rss and st.get("RssAnon") is not None:  # a zombie reports nothing
                    peak_anon = max(peak_anon, st["RssAnon"])
                    peak_file = max(peak_file, st.get("RssFile", 0))
                peak = max(peak, rss, st.get("VmHWM", 0))
            except (psutil.NoSuchProcess, psutil.ZombieProcess):
                pass
            read_new()
            now = time.perf_counter() - started
            if result.first_line_s is None and lines > base_lines:
                result.first_line_s = round(now, 3)
            for label, at in list(pending.items()):
                if lines >= at:
                    result.marks[label] = {"lines": lines, "t_s": round(now, 2), "peak_rss_mb": round(peak / MB, 1)}
                    del pending[label]
            if kill_at is not None and result.killed_at_lines is None and lines >= kill_at:
                result.killed_at_lines = lines
                os.kill(proc.pid, signal.SIGKILL)
            if timeout_s is not None and now > timeout_s and result.killed_at_lines is None:
                print(f"  {name}: timed out after {timeout_s:.0f} s; killing it", flush=True)
                result.killed_at_lines = lines
                os.kill(proc.pid, signal.SIGKILL)
            exited.wait(SAMPLE_S)
        status, rusage = reaped["status"], reaped["rusage"]
        result.wall_s = round(reaped["t"] - started, 3)
        proc.returncode = os.waitstatus_to_exitcode(status)
    result.rc = proc.returncode
    if rusage is not None:  # ru_maxrss: KiB on Linux, bytes on macOS
        maxrss = rusage.ru_maxrss * (1 if sys.platform == "darwin" else 1024)
        peak = max(peak, maxrss)
    read_new()
    if handle is not None:
        handle.close()
    result.lines = lines
    result.peak_rss_mb = round(peak / MB, 1)
    if peak_anon:
        result.peak_rss_anon_mb = round(peak_anon / MB, 1)
        result.peak_rss_file_mb = round(peak_file / MB, 1)
    for label, at in pending.items():  # reached between the last sample and the exit, or never
        reached = lines >= at
        result.marks[label] = {"lines": lines, "t_s": result.wall_s if reached else None,
                               "peak_rss_mb": result.peak_rss_mb if reached else None, "at_exit": True}
    result.stdout_tail = _tail(out_log)
    result.stderr_tail = _tail(err_log)
    result.summary = summary_line(result.stderr_tail + "\n" + result.stdout_tail)
    return result


def summary_line(text: str) -> str:
    """The last "done ..." or "exported ..." line a `cai` command printed ('' if none)."""
    found = ""
    for line in text.replace("\r", "\n").splitlines():
        if line.startswith(("done ", "exported ")):
            found = line.strip()
    return found


def _git(args: list[str], cwd: Path) -> str | None:
    try:
        return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def source_info(cai_cmd: list[str], cai_env_extra: dict[str, str]) -> dict[str, Any]:
    """git commit of the benchmark checkout and of the tree the `cai` command imports (PYTHONPATH, if given)."""
    info: dict[str, Any] = {"cai_command": shlex.join([f"{k}={v}" for k, v in cai_env_extra.items()] + cai_cmd)}
    trees = {"benchmarks": ROOT}
    if cai_env_extra.get("PYTHONPATH"):
        trees["cai_engine"] = Path(cai_env_extra["PYTHONPATH"].split(os.pathsep)[0])
    for label, tree in trees.items():
        commit = _git(["rev-parse", "HEAD"], tree)
        dirty = _git(["status", "--porcelain", "--untracked-files=no"], tree)
        info[label] = {"path": str(tree), "commit": commit, "dirty": bool(dirty) if dirty is not None else None}
    if "cai_engine" not in info:
        info["cai_engine"] = info["benchmarks"]
    return info


def machine_info() -> dict[str, Any]:
    vm = psutil.virtual_memory()
    return {
        "platform": platform.platform(), "python": platform.python_version(), "cpu": platform.processor() or platform.machine(),
        "cpus_logical": psutil.cpu_count(), "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "memory_total_gb": round(vm.total / 1e9, 1), "load_avg_at_start": [round(x, 2) for x in os.getloadavg()],
        "hostname": platform.node(),
    }


def write_json(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
