# The two commands that matter: `make test` and `make demo`. Both build their own virtualenv.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv test lint demo record record-emulator check-recorded bench clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[all,dev]'
	touch $(STAMP)

venv: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check src tests checks examples benchmarks
	$(BIN)/mypy src

test: lint docs
	$(BIN)/python -m pytest -q

# The documentation site (mkdocs-material + mkdocstrings), built strictly into build/site: a broken link, a
# missing page or a docstring mkdocstrings cannot render fails `make test` (about 10 s).
.PHONY: docs
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

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
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
