PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# Written last by `make install`: an interrupted install leaves no stamp, so the next
# `make` installs again (pip repairs what is missing) instead of trusting a half-made venv.
STAMP := $(VENV)/.installed
LOCK := requirements.lock

.PHONY: install run chat doctor test lint typecheck docs fmt migrate bench lock clean

$(STAMP): pyproject.toml $(LOCK)
	@echo "==> installing the bot and its dev tools into $(VENV) (about a minute the first time)"
	@$(PY) -c "" 2>/dev/null || $(PYTHON) -m venv --clear $(VENV)
	$(PY) -m pip install --progress-bar on --upgrade pip
	$(PY) -m pip install --progress-bar on -c $(LOCK) -e '.[dev]'
	@touch $@
	@echo "==> installed; next: make doctor (checks the setup), make chat (this terminal), make run (the bot)"

install: $(STAMP)  ## create .venv and install the bot with dev tools (repairs an interrupted one)

run: install  ## run the bot (reads .env)
	$(PY) -m adapters.cli serve

# `chatbot chat` (like serve) creates or upgrades the database tables itself before the first
# question, so a fresh clone needs only `make chat`.
chat: install  ## talk to the bot in this terminal (installs first; creates the tables)
	$(PY) -m adapters.cli chat

doctor: install  ## check the configuration and every dependency
	$(PY) -m adapters.cli doctor

migrate: install  ## create or upgrade the database tables (chatbot db upgrade)
	$(PY) -m adapters.cli db upgrade

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -c "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"

typecheck: install
	$(PY) -m mypy bot inference adapters

# The manual (docs/, mkdocs.yml) into site/: a broken link or anchor, or a page missing from
# the nav, fails the build.
docs: install  ## build the manual into site/
	$(PY) -m mkdocs build --strict

test: install lint typecheck docs  ## everything CI checks
	$(PY) -m pytest -q

fmt: install
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

# Pins every dependency (runtime and dev) to what is installed now; the Dockerfile, CI and
# `make install` all install with it as constraints. Run after changing pyproject.toml.
lock: install
	@{ sed -n '1,2p' $(LOCK); $(PY) -m pip freeze --exclude-editable --exclude chatbot | LC_ALL=C sort; } > $(LOCK).new
	mv $(LOCK).new $(LOCK)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info site

bench: install  ## load benchmark (starts its own redis-server): the figures in docs/benchmarks.md
	$(PY) -m bench.load --levels 1,20,50 --answers 200 --workers 1 --start-up
	$(PY) -m bench.load --levels 1,20,50 --answers 200 --workers default
	$(PY) -m bench.load --levels 1 --answers 5 --reply-chars 600 --chunk-chars 4 --first-token-delay 0.3 --token-delay 0.02
	$(PY) -m bench.fleet_line
	$(PY) -m bench.slack_burst
	$(PY) -m bench.load --levels 20 --answers 20 --reply-chars 600 --chunk-chars 4 --first-token-delay 0.3 --token-delay 0.02 --max-concurrency 2
	$(PY) -m bench.api --answers 200
