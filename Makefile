# Two commands do all the set-up: `make serve` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: serve test test-fast lint format bench-overhead bench-local bench-translation bench-chaos bench-gateway bench-router clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,local,guardrails,onnx,otel]'
	touch $(STAMP)

serve: $(STAMP)
	$(BIN)/crossroads serve $(ARGS)

test: $(STAMP)
	$(BIN)/pytest $(ARGS)

# Everything but the tests that run the embedded engine (marker `engine`): for quick rounds
# while developing; `make test` and CI run them all.
test-fast: $(STAMP)
	$(BIN)/pytest -m "not engine" $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff check --fix src tests benchmarks
	$(BIN)/ruff format src tests benchmarks

bench-overhead: $(STAMP)
	$(BIN)/python benchmarks/overhead.py

bench-local: $(STAMP)
	$(BIN)/python benchmarks/local_engine.py

bench-translation: $(STAMP)
	$(BIN)/python benchmarks/translation.py

bench-chaos: $(STAMP)
	$(BIN)/python benchmarks/chaos.py

bench-gateway: $(STAMP)
	$(BIN)/python benchmarks/gateway/run.py

bench-router: $(STAMP)
	$(BIN)/python benchmarks/router/run.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
