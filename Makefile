.PHONY: run stop test test-unit test-integration test-e2e setup bench bench-quick bench-api

run:
	bash deploy/local/run.sh

stop:
	bash deploy/local/stop.sh

setup:
	bash deploy/local/setup.sh

# Every test layer on real Kafka and PostgreSQL, started by the test session itself.
test: setup
	.venv/bin/python -m pytest

test-unit: setup
	.venv/bin/python -m pytest -m "unit or handler"

test-integration: setup
	.venv/bin/python -m pytest -m integration

test-e2e: setup
	.venv/bin/python -m pytest -m e2e

# The fault-injection suite with every cycle and duration (tests/faults); `make test` runs its quick subset.
.PHONY: test-faults
test-faults: setup
	TOUCHPOINT_FAULTS=full .venv/bin/python -m pytest -m faults tests/faults

# Every layer at full scale: the full fault suite, up to 5 kills during 2,000 notification sends, 50,000 feedback
# responses (tests/support/scale.py); `make test` runs the smaller CI scale.
.PHONY: test-full
test-full: setup
	TOUCHPOINT_TEST_SCALE=full .venv/bin/python -m pytest

# Benchmarks (never part of `make test`); see docs/benchmarks.md.
bench: setup
	.venv/bin/python -m bench.e2e

bench-quick: setup
	.venv/bin/python -m bench.e2e --quick

bench-api: setup
	.venv/bin/python -m bench.timeline_api

.PHONY: bench-console
bench-console: setup
	.venv/bin/python -m bench.console_render

.PHONY: bench-routing
bench-routing: setup
	.venv/bin/python -m bench.routing_sim

# Identity quality on FEBRL 1–4 beside Splink (installs the benchmark extras: bench/requirements.txt).
.PHONY: bench-identity-quality
bench-identity-quality: setup
	.venv/bin/pip install -q -r bench/requirements.txt
	.venv/bin/python -m bench.identity_quality
