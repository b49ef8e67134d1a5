# kvrocks-operator: the project's entry points. `make demo` and `make test` are the front door.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

CARGO ?= cargo
# Debian packages the tests need: real redis-server and redis-sentinel processes, redis-cli.
APT_PACKAGES := redis-server redis-sentinel redis-tools
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: help
help: ## List the targets.
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

.PHONY: deps
deps: ## Install the system packages the tests need (apt-get, only what is missing).
	@missing=""; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	command -v redis-sentinel >/dev/null || missing="$$missing redis-sentinel"; \
	command -v redis-cli >/dev/null || missing="$$missing redis-tools"; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(SUDO) apt-get update -qq; \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi; \
	redis-server --version
	@$(CARGO) --version

.PHONY: fmt
fmt: ## Format the code.
	$(CARGO) fmt --all

.PHONY: fmt-check
fmt-check: ## Fail when the code is not formatted.
	$(CARGO) fmt --all -- --check

.PHONY: clippy
clippy: ## Lint with clippy, every warning an error.
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

.PHONY: build
build: ## Build the operator binary.
	$(CARGO) build --locked -p kvrocks-operator

.PHONY: crds
crds: ## Write config/crd/*.yaml from the Rust types.
	$(CARGO) run --locked -q -p kvrocks-operator -- crd --output-dir config/crd

.PHONY: crds-check
crds-check: ## Fail when config/crd is stale.
	@tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	$(CARGO) run --locked -q -p kvrocks-operator -- crd --output-dir "$$tmp"; \
	if ! diff -ru config/crd "$$tmp"; then \
	  echo "config/crd is stale: run 'make crds' and commit the result" >&2; exit 1; \
	fi; \
	echo "config/crd is up to date"

.PHONY: unit
unit: ## Unit, property and client integration tests (real redis-server and redis-sentinel).
	@log=$$(mktemp); trap 'rm -f "$$log"' EXIT; \
	$(CARGO) test --workspace --locked 2>&1 | tee "$$log"; \
	awk '/^test result:/ {p += $$4; f += $$6} /^SKIPPED/ {s++} \
	  END {printf "\ntests: %d passed, %d failed, %d skipped\n", p, f, s}' "$$log"

.PHONY: test
test: deps fmt-check clippy crds-check unit ## Everything CI runs; the last line sums the tests.

.PHONY: e2e
e2e: ## End-to-end tests on the local testbed.
	@echo "make e2e: the local testbed (issue 3) has not landed yet; nothing to run" >&2; exit 1

.PHONY: demo
demo: ## Start the local testbed, install the CRDs, run the operator and apply examples/.
	@echo "make demo needs the local testbed (e2e/, issue 3), which has not landed yet." >&2
	@echo "Today you can: 'make crds' and 'kubectl apply -f config/crd -f config/rbac', then" >&2
	@echo "'cargo run -p kvrocks-operator -- run' against any cluster in your kubeconfig, and" >&2
	@echo "'kubectl apply -f examples/'." >&2
	@exit 2

.PHONY: demo-down
demo-down: ## Remove everything make demo started.
	@echo "make demo-down: nothing to remove until the testbed lands" >&2

.PHONY: bench
bench: ## Speed and memory measurements.
	@echo "make bench: no benchmarks yet (they need the testbed)" >&2; exit 1

.PHONY: lint-helm
lint-helm: ## Lint and dry-run the Helm chart.
	@echo "make lint-helm: the Helm chart (issue 6) has not landed yet" >&2; exit 1
