PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install run chat test lint typecheck fmt migrate bench clean

$(BIN)/chatbot: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

install: $(BIN)/chatbot  ## create .venv and install the bot with dev tools

run: install  ## run the bot (reads .env)
	$(BIN)/chatbot serve

chat: install  ## talk to the bot in this terminal
	$(BIN)/chatbot chat

migrate: install
	$(BIN)/chatbot db upgrade

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: install
	$(BIN)/mypy bot inference

test: install lint typecheck  ## everything CI checks
	$(BIN)/python -m pytest -q

fmt: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info

bench: install  ## load benchmark (needs Redis on 127.0.0.1:6379): figures for the README
	$(BIN)/python -m bench.load --levels 1,20,100 --answers 300 --chunk-chars 200
	$(BIN)/python -m bench.load --levels 1,20,100 --answers 300 --chunk-chars 6
	$(BIN)/python -m bench.load --levels 1,20,50 --answers 100 --first-token-delay 0.3 --token-delay 0.03
	$(BIN)/python -m bench.load --levels 50 --answers 100 --first-token-delay 0.3 --token-delay 0.03 --max-concurrency 2
