# One command each: `make demo` sets up and runs the main job; `make test` sets up and runs the tests.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test test-slow benchmarks zoo sweep speed cost clean

setup: $(STAMP)

$(STAMP): setup.cfg pyproject.toml requirements-lock.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet -c requirements-lock.txt -e ".[test,distributed,transformers]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/compressor demo

test: $(STAMP)
	$(BIN)/python -m pytest -m "not slow" -q

test-slow: $(STAMP)
	$(BIN)/python -m pytest -m slow -q

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache

benchmarks: $(STAMP)
	$(BIN)/python -m tools.benchmark_suite --write BENCHMARKS.md

zoo: $(STAMP)
	$(BIN)/python -m tools.zoo --write ZOO.md

sweep: $(STAMP)
	$(BIN)/python -m tools.recipe_sweep --write RECIPES.md

speed: $(STAMP)
	$(BIN)/python -m tools.speed --write SPEED.md

cost: $(STAMP)
	$(BIN)/python -m tools.sensitivity_cost --write COST.md
	$(BIN)/python -m tools.overhead --write COST.md --append
	$(BIN)/python -m tools.cost_table --write COST.md --append
	$(BIN)/python -m tools.encoder_cost --write COST.md
