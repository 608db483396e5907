# lmsi: `make demo` runs one LMSI round on this CPU; `make test` runs the tests.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
ARGS ?=
export TF_CPP_MIN_LOG_LEVEL ?= 3

.PHONY: install demo test test-slow clean

$(STAMP): setup.py requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -r requirements.lock
	$(BIN)/pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m lmsi.pipeline --gin_file=gin/experiments/demo.gin $(ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 -q tests/

clean:
	rm -rf runs/ $(VENV)
