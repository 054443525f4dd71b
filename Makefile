# Two commands set up everything on a fresh machine:
#   make run    start capsvc on the embedded default (one host, no ZooKeeper, ./data);
#               `make run PORT=8081` listens on another port
#   make test   run the whole test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PORT   ?=

.PHONY: run test test-fast lint venv clean

$(BIN)/capsvc: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

venv: $(BIN)/capsvc

run: venv
	$(BIN)/capsvc serve --config config.toml $(if $(PORT),--port $(PORT))

test: venv
	./scripts/test-deps.sh
	$(BIN)/ruff check .
	$(BIN)/pytest -q

# daily work: unit and contract tests, real SQLite files but no processes (under a minute)
test-fast: venv
	$(BIN)/ruff check .
	$(BIN)/pytest -q tests/unit tests/contract

lint: venv
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
