# lineside: the two commands a new user types are `make demo` and `make test`.
# Everything they need is installed from here: a venv in .venv, the project and its test extras.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: venv demo test lint bench clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	@touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/lineside demo

# System peers the suite talks to (PostgreSQL, Chromium) are checked and, where missing,
# installed from the Debian archive by tools/test-deps.sh.
test: $(STAMP)
	@bash tools/test-deps.sh
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy kpi_core config buffer
	$(BIN)/mypy edge drivers sync

bench: $(STAMP)
	@set -e; for b in bench/*.py; do [ -e "$$b" ] || continue; echo "== $$b"; $(BIN)/python $$b; done

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache demo-data build *.egg-info
