# The two commands that matter: `make test` and `make demo`. Both build their own virtualenv.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYVER := $(shell $(PY) -c 'import sys; print("%d.%d" % sys.version_info[:2])')
# The versions the dev and test venv installs, pinned per Python (the newest numpy for 3.10 is not 3.13's).
CONSTRAINTS ?= constraints/py$(PYVER).txt
LINTED := src tests checks examples benchmarks tools noxfile.py docs/hooks

.PHONY: venv test lint demo record record-emulator check-recorded bench clean lock test-latest test-pythons

# Why pip constraints and not uv or pip-tools: the install stays plain pip, which is what a user runs, what
# this machine's pip configuration (local wheels, the torch cap) applies to, and nothing to bootstrap first.
# `make lock` resolves in a fresh venv with no constraints and freezes the result, so the file is exactly an
# install that worked; a constraints file (not a requirements file) pins without adding packages, so extras
# keep deciding what is installed. `tools/lock.py check` fails the build when pyproject.toml gained a
# dependency the lock does not pin.
$(STAMP): pyproject.toml $(CONSTRAINTS)
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -qq --upgrade pip
	$(BIN)/python -m pip install -qq -c $(CONSTRAINTS) -e '.[all,dev]'
	$(BIN)/python tools/lock.py check $(CONSTRAINTS)
	touch $(STAMP)

venv: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check $(LINTED)
	$(BIN)/mypy src

test: lint docs
	$(BIN)/python -m pytest -q

# The documentation site (mkdocs-material + mkdocstrings), built strictly into build/site: a broken link, a
# missing page or a docstring mkdocstrings cannot render fails `make test` (about 10 s).
.PHONY: docs
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

# Re-pin constraints/py3.X.txt to the newest versions pyproject.toml allows today, for every Python its
# classifiers claim (`make lock PYTHONS=3.13` for one).
lock:
	$(PY) tools/lock.py write $(PYTHONS)

# The suite on the newest versions pyproject.toml allows, no lock, upgraded on every run: an upstream release
# that breaks us shows up here, on purpose. It first lists where those versions differ from the lock.
test-latest:
	$(PY) -m venv .venv-latest
	.venv-latest/bin/python -m pip install -qq --upgrade pip
	.venv-latest/bin/python -m pip install -qq --upgrade --upgrade-strategy eager -e '.[all,dev]'
	-.venv-latest/bin/python tools/lock.py check $(CONSTRAINTS)
	.venv-latest/bin/ruff check $(LINTED)
	.venv-latest/bin/mypy src
	NO_MKDOCS_2_WARNING=1 .venv-latest/bin/mkdocs build --strict --quiet
	.venv-latest/bin/python -m pytest -q

# The suite on the other Pythons pyproject.toml claims, each in its own locked venv (noxfile.py).
test-pythons: $(STAMP)
	$(BIN)/nox

demo: $(STAMP)
	$(BIN)/python examples/demo.py

# Re-record cassettes against the live APIs (needs NOMIC_API_KEY / JINA_API_KEY / GEMINI_API_KEY / GOOGLE_API_KEY
# + project / VOYAGE_API_KEY / COHERE_API_KEY; a provider without its key is skipped).
record: $(STAMP)
	MMEMBED_RECORD=live $(BIN)/python -m pytest -q tests/test_cassettes.py --record-mode=rewrite

# Re-record the cassettes against the offline emulator (what the committed cassettes are).
record-emulator: $(STAMP)
	MMEMBED_RECORD=emulator $(BIN)/python -m pytest -q tests/test_cassettes.py --record-mode=rewrite

# Replay the real Nomic/Jina recordings in ../shared/reference/recorded through our clients (not part of `test`).
check-recorded: $(STAMP)
	$(BIN)/python -m pytest -q checks

bench: $(STAMP)
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) .venv-latest .nox .mypy_cache .ruff_cache .pytest_cache
