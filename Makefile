# Both targets create .venv and install what they need on a machine with only python3 and pip.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
INTEROP := $(VENV)/.interop
# LSL 4 dropped its TBF reader; the interop tests read TBF with the last LSL 3 kept beside it
LSL3 := $(VENV)/lsl3

.PHONY: test demo bench install interop clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test,prometheus]'
	touch $(STAMP)

install: $(STAMP)

# Optional: the independent decoders (LSL, baseband) and tshark for tests/test_interop_*.py
# and tests/test_dissector.py.  Each step may fail (no apt, no compiler, no network): the
# tests that need what is missing then skip and say why.
interop: $(STAMP)
	-bash tools/install-interop.sh $(BIN) $(LSL3)
	touch $(INTEROP)

test: $(STAMP)
	$(BIN)/python -m pytest -q tests

demo: $(STAMP)
	$(BIN)/python examples/demo.py

bench: $(STAMP)
	for b in benchmarks/*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info
