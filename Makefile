# The two commands that work on a fresh machine: `make run` and `make test`.
# Both create .venv and install pinned dependencies themselves (uv, from PyPI).

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
UV     := $(VENV)/bin/uv
STAMP  := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

# Some machines set PYTHONDONTWRITEBYTECODE=1; then every Python process (each test worker,
# each server the tests start) compiles every module from source again: 4.8 s instead of
# 2.2 s to import the app here. Let the processes make started keep their bytecode.
unexport PYTHONDONTWRITEBYTECODE

.PHONY: install run test lint typecheck unit bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check uv==0.13.8
	$(UV) pip install --quiet --python $(PY) -e ".[dev]"
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

install: $(STAMP)

run: install ## serve on 8222 with SQLite + local files (migrates by itself)
	$(VENV)/bin/media-service serve

lint: install
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench

typecheck: install
	$(VENV)/bin/mypy

test: lint typecheck ## lint, type-check, then the whole suite on every backend
	$(PY) -m pytest -q -n 2 -p no:cacheprovider

bench: install ## side-by-side benchmarks; results go to docs/benchmarks.md by hand
	$(PY) bench/upload.py
	$(PY) bench/events.py
	$(PY) bench/preprocess.py
	$(PY) bench/metadata.py --gc-freeze
	$(PY) bench/playlists.py
	$(PY) bench/frames.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
