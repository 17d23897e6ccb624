# Developer shortcuts. `make test` is the command the README and CI use.
PYTHON ?= python3
# The CPU wheel CI uses. On a GPU machine install your CUDA build of torch first and run
# `make test TORCH=torch` (any installed version then satisfies it).
TORCH ?= torch==2.13.0

.PHONY: install test test-fast lint format bench demo

install:
	$(PYTHON) -m pip install -q -e '.[test]' '$(TORCH)'

test: install
	$(PYTHON) -m pytest

test-fast: install
	$(PYTHON) -m pytest -m "not slow and not real"

lint:
	$(PYTHON) -m ruff check src tests benchmarks scripts
	$(PYTHON) -m ruff format --check src tests benchmarks scripts

format:
	$(PYTHON) -m ruff format src tests benchmarks scripts
	$(PYTHON) -m ruff check --fix src tests benchmarks scripts

bench: install
	$(PYTHON) -m pip install -q -e '.[bench]'
	$(PYTHON) benchmarks/ingest_throughput.py
	$(PYTHON) benchmarks/store_formats.py

demo: install
	medscale demo
