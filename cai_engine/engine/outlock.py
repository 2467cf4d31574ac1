"""One process per output folder: an advisory lock on ``OUT/.cai.lock``.

Why ``flock``: the kernel releases it when the holder dies, however it dies (kill -9 included), so
a stale lock is never a problem to clean up by hand: the next command simply gets it. The file
keeps the holder's pid, host and command so the refusal can say who holds it.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path

from cai_engine.errors import CaiError

LOCK_FILE = ".cai.lock"


class OutLocked(CaiError):
    """Another live process writes to this output folder."""


class OutLock:
    def __init__(self, out_dir: Path):
        self.out_dir = Path(out_dir)
        self.path = self.out_dir / LOCK_FILE
        self._fd: int | None = None
        self.took_over: dict[str, object] | None = None  # the dead holder's info, when there was one

    def acquire(self, command: str | None = None) -> "OutLock":
        import fcntl

        self.out_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            who = f"process {holder.get('pid', '?')}"
            if holder.get("host"):
                who += f" on {holder['host']}"
            what = f" ({holder['command']})" if holder.get("command") else ""
            raise OutLocked(
                f"{self.out_dir} is in use by {who}{what} since {holder.get('started', '?')}; "
                "wait for it to finish, stop it, or use another --out"
            ) from None
        previous = _read_holder(fd)
        if previous.get("pid") and previous.get("pid") != os.getpid():
            self.took_over = previous  # its holder died without releasing (kill -9, crash)
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "command": command or " ".join(["cai", *sys.argv[1:]])[:300],
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        import fcntl

        try:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "OutLock":
        return self.acquire() if self._fd is None else self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _read_holder(fd: int) -> dict[str, object]:
    try:
        raw = os.pread(fd, 4096, 0)
        return json.loads(raw) if raw.strip() else {}
    except (OSError, ValueError):
        return {}
