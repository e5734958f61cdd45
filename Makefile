# Every target does its own set-up: a virtualenv in .venv with tradebot and its pinned dependencies.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: install demo backtest test lint typecheck bench clean

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c requirements.lock -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

## demo: the offline demo — the local exchange simulator replays a week of the shipped real candles over
## the Binance wire protocols, the daemon trades it (paper venue), and a summary ends the run
demo: $(STAMP)
	$(BIN)/tradebot demo --out out

## backtest: backtest the whole shipped 46-day sample (BTC/ETH/SOL 1m candles) and print the summary
backtest: $(STAMP)
	$(BIN)/tradebot backtest --data data/sample --out out

## test: lint, formatting, import contracts, types and the whole test suite (PostgreSQL tests need 127.0.0.1:5432)
test: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/lint-imports
	$(BIN)/mypy
	$(BIN)/python -m pytest -q

## typecheck: mypy over src/tradebot (strict for the core; settings in pyproject.toml [tool.mypy])
typecheck: $(STAMP)
	$(BIN)/mypy

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/lint-imports
	$(BIN)/mypy

## bench: full 5m backtest over the shared real data; prints candles/s and peak memory
bench: $(STAMP)
	$(BIN)/python benchmarks/bench_backtest.py --data ../shared/data --timeframe 5m

clean:
	rm -rf $(VENV) out demo.db .pytest_cache .ruff_cache
