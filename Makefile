# feepay: two commands for a fresh clone.
#   make run    local stack + every service + a realistic demo, Ctrl-C stops cleanly
#   make test   fmt, clippy -D warnings, unit and integration tests (starts the stack)
# Logic lives in scripts under deploy/ and in Rust; each target is one or two commands.

SHELL := /bin/bash
CARGO ?= cargo

.PHONY: run test up down status build lint unit integration fmt bench chaos tools

run: up build
	deploy/local/run.sh

test: tools up lint
	deploy/check.sh
	$(CARGO) build --bins
	$(CARGO) nextest run --workspace --no-fail-fast --profile ci

up:
	deploy/local/stack.sh up

down:
	deploy/local/stack.sh down

status:
	deploy/local/stack.sh status

build:
	$(CARGO) build --release --bins

lint: tools
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) machete

# The cargo tools the targets use, installed once if absent (pinned versions).
tools:
	@rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy rustfmt
	@$(CARGO) nextest --version >/dev/null 2>&1 || $(CARGO) install cargo-nextest --locked --version 0.9.151
	@command -v cargo-machete >/dev/null 2>&1 || $(CARGO) install cargo-machete --locked --version 0.9.2

unit: tools
	$(CARGO) nextest run --workspace --exclude feepay-tests

integration: tools up
	$(CARGO) build --bins
	$(CARGO) nextest run -p feepay-tests --profile ci

fmt:
	$(CARGO) fmt --all

# Throughput, latency, memory and correctness of the whole pipeline; see README.
# Parameters: make bench BENCH_ARGS="--rate 1000 --fixed-secs 30 --burst 60000"
bench: up build
	deploy/local/stack.sh bench-tools
	target/release/feepay-bench $(BENCH_ARGS)

# The fault suite alone: 20 000 payments and more through real processes while the issuer is
# killed, PostgreSQL restarts, SMTP stops, an issuer leaves, the broker connections are cut,
# and in a three-node Kafka cluster a broker is killed, another restarted and the quorum's
# leader killed.
chaos: tools up
	$(CARGO) build --bins
	$(CARGO) nextest run -p feepay-tests --test faults --no-capture
