# Thin wrappers over scripts/; each script says what it does at its top.
#   make run     start PostgreSQL and Redis when needed, migrate, run the server
#   make test    the same services, then `make check` and the whole test suite
# ARGS="..." passes extra arguments to pytest, e.g. make test ARGS="-k token -x".

SHELL := /bin/bash
.DEFAULT_GOAL := help
.PHONY: help install format check test test-debug test-unit cov run bench bench-fanout bench-read benchmark services services-stop clean

help:
	@echo "make run            start the services when needed, migrate, run the server (Ctrl-C stops)"
	@echo "make test           make check + the whole test suite against real PostgreSQL and Redis"
	@echo "make test-debug     the same suite with PYTHONASYNCIODEBUG=1"
	@echo "make test-unit      tests/unit only (no services)"
	@echo "make check          ruff format --check, ruff check, mypy --strict, import contracts"
	@echo "make format         ruff format + ruff check --fix"
	@echo "make cov            the whole suite under coverage (branches)"
	@echo "make bench          the write-side benchmark beside the raw ceilings (ARGS=\"--write-docs\")"
	@echo "make bench-fanout   the real-time fan-out benchmark beside a bare websockets floor (ARGS=\"--write-docs\")"
	@echo "make bench-read     the read-side benchmark: projection, rebuild of 1M events, GET latencies (ARGS=\"--write-docs\")"
	@echo "make benchmark      the standard load-test set beside the raw ceilings (ARGS=\"--write-docs\")"
	@echo "make install        create .venv and install the project (skipped when up to date)"
	@echo "make services       settle on PostgreSQL and Redis; prints export lines to eval"
	@echo "make services-stop  stop the project-local PostgreSQL and Redis under .data/"
	@echo "make clean          remove caches (keeps .venv and .data)"

install:
	@scripts/install.sh

format:
	@scripts/format.sh

check:
	@scripts/check.sh

test:
	@scripts/test.sh -- $(ARGS)

test-debug:
	@scripts/test.sh --debug -- $(ARGS)

test-unit:
	@scripts/test.sh --unit -- $(ARGS)

cov:
	@scripts/test.sh --cov -- $(ARGS)

run:
	@scripts/run.sh

bench:
	@scripts/bench.sh $(ARGS)

bench-fanout:
	@scripts/bench_fanout.sh $(ARGS)

bench-read:
	@scripts/bench_read.sh $(ARGS)

benchmark:
	@scripts/benchmark $(ARGS)

services:
	@scripts/services.sh start

services-stop:
	@scripts/services.sh stop

clean:
	@scripts/clean.sh
