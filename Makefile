# kvrocks-operator: the project's entry points. `make demo` and `make test` are the front door.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

CARGO ?= cargo
# Debian packages the tests need (`make deps` installs the missing ones): real redis-server and
# redis-sentinel processes and redis-cli (the client's tests); openssl (the testbed's
# certificates), iproute2 and util-linux (its bridge, nsenter into pods); containerd, runc and
# containernetworking-plugins (the testbed's real nodes), conntrack and iptables (kube-proxy),
# mmdebstrap (the rootfs of its images).
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# The real kvrocks server the tests run on: $KVROCKS_BIN, else the one kept beside the project
# (../shared/kvrocks, see its README), else none (no kvrocks image: the kvrocks scenarios are
# then skipped, loudly).
KVROCKS_BIN ?= $(abspath $(wildcard ../shared/kvrocks/v2.10.1/bin/kvrocks))
export KVROCKS_BIN

.PHONY: help
help: ## List the targets.
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

.PHONY: deps
deps: ## Install the system packages the tests need (apt-get, only what is missing).
	@missing=""; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	command -v redis-sentinel >/dev/null || missing="$$missing redis-sentinel"; \
	command -v redis-cli >/dev/null || missing="$$missing redis-tools"; \
	command -v openssl >/dev/null || missing="$$missing openssl"; \
	command -v ip >/dev/null || missing="$$missing iproute2"; \
	command -v nsenter >/dev/null || missing="$$missing util-linux"; \
	command -v containerd >/dev/null || missing="$$missing containerd"; \
	command -v runc >/dev/null || missing="$$missing runc"; \
	test -x /usr/lib/cni/bridge || missing="$$missing containernetworking-plugins"; \
	command -v mmdebstrap >/dev/null || missing="$$missing mmdebstrap"; \
	command -v conntrack >/dev/null || missing="$$missing conntrack"; \
	command -v iptables >/dev/null || missing="$$missing iptables"; \
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
crds: ## Write config/crd/*.yaml from the Rust types (and their copies in the Helm chart).
	$(CARGO) run --locked -q -p kvrocks-operator -- crd --output-dir config/crd
	rm -f deploy/helm/kvrocks-operator/crds/*.yaml
	cp config/crd/*.yaml deploy/helm/kvrocks-operator/crds/

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
	$(CARGO) build --locked -p kvrocks-operator; \
	$(CARGO) test --workspace --locked 2>&1 | tee "$$log"; \
	awk '/^test result:/ {p += $$4; f += $$6; s += $$8} /^SKIPPED/ {s++} \
	  END {printf "\ntests: %d passed, %d failed, %d skipped\n", p, f, s}' "$$log"

.PHONY: testbed-binaries
testbed-binaries: ## Start finding or building the testbed's Kubernetes, etcd, helm and promtool in the background.
	@# On a new machine this is a Go build of about 20 minutes. It runs beside the Rust builds
	@# (the two share 2 cores better than either alone); the e2e tests run the same script, which
	@# waits on its lock until this one is done and then finds everything cached.
	@mkdir -p target
	@nohup bash e2e/tools/build-binaries.sh > target/testbed-binaries.log 2>&1 &
	@echo "testbed binaries: found or built in the background (log: target/testbed-binaries.log)"

.PHONY: test
test: deps testbed-binaries fmt-check clippy crds-check unit ## Everything CI runs; the last line sums the tests.

.PHONY: e2e
e2e: ## End-to-end tests on the local testbed (needs root: containerd, kubelets, a bridge, cgroups).
	$(CARGO) build --locked -p kvrocks-operator
	$(CARGO) test --locked -p kvrocks-e2e

# The testbed `make demo` starts; `make demo-down` removes it.
TESTBED_ROOT ?= $(or $(KVROCKS_TESTBED_ROOT),/tmp/kvrocks-testbed)
TESTBED := target/debug/testbed --root $(TESTBED_ROOT)
OPERATOR_NS := kvrocks-system

.PHONY: demo
demo: ## Start the local testbed, helm install the operator, apply examples/ and wait until Ready.
	$(CARGO) build --locked -p kvrocks-e2e -p kvrocks-operator
	$(TESTBED) up
	@# The chart installs the CRDs and the operator (2 replicas, leader election): real pods of
	@# the operator image the testbed built from the binary just built, under the chart's name.
	$(TESTBED) helm upgrade --install kvrocks-operator deploy/helm/kvrocks-operator \
	  --namespace $(OPERATOR_NS) --create-namespace --set test.namespace=default --wait --timeout 4m
	@# The examples run under the restricted Pod Security Standard.
	$(TESTBED) kubectl label namespace default pod-security.kubernetes.io/enforce=restricted --overwrite
	$(TESTBED) kubectl apply -f examples/
	@for kind in kvsentinel/sentinel kvstandard/standard kvcluster/cluster; do \
	  $(TESTBED) kubectl wait --for=create --timeout=60s $$kind >/dev/null; \
	done
	@# The sentinel group comes up Ready; Standard and Cluster too when there is a kvrocks image.
	@$(TESTBED) kubectl wait --for=condition=Ready --timeout=180s kvsentinel/sentinel >/dev/null \
	  || echo "note: kvsentinel/sentinel is not Ready yet (kubectl describe kvsentinel/sentinel)"
	@if [ -n "$${KVROCKS_BIN:-}" ]; then \
	  for kind in kvstandard/standard kvcluster/cluster; do \
	    $(TESTBED) kubectl wait --for=condition=Ready --timeout=180s $$kind >/dev/null \
	      || echo "note: $$kind is not Ready yet (kubectl describe $$kind; the operator's log below)"; \
	  done; \
	else \
	  echo "note: the standard and cluster examples need the apache/kvrocks image, built from a kvrocks binary"; \
	  echo "      (KVROCKS_BIN); without one their pods cannot start and they stay not Ready."; \
	fi
	@echo
	@$(TESTBED) kubectl -n $(OPERATOR_NS) get deploy,pods -o wide
	@echo
	@$(TESTBED) kubectl get kvsentinel,kvstandard,kvcluster -o wide
	@echo
	@$(TESTBED) kubectl get kvsentinel,kvstandard,kvcluster \
	  -o custom-columns='KIND:.kind,NAME:.metadata.name,READY:.status.conditions[?(@.type=="Ready")].status,REASON:.status.conditions[?(@.type=="Ready")].reason,MESSAGE:.status.conditions[?(@.type=="Ready")].message'
	@echo
	@echo "The testbed runs at $(TESTBED_ROOT); to use it:"
	@echo "  export KUBECONFIG=$(TESTBED_ROOT)/admin.kubeconfig   # or: target/debug/testbed kubectl ..."
	@echo "  target/debug/testbed status                         # processes, ports, network"
	@echo "  target/debug/testbed helm -n $(OPERATOR_NS) status kvrocks-operator"
	@echo "  target/debug/testbed logs $(OPERATOR_NS)/<operator pod>   # the operator's log"
	@echo "The operator's metrics, from this machine, at a pod IP of the operator:"
	@echo "  curl -s http://<operator pod IP>:8080/metrics | grep ^kvrocks_operator_"
	@echo "Reach kvrocks (once the pods run) from this machine, at the pod IPs:"
	@echo "  kubectl get pods -o wide -l app.kubernetes.io/instance=standard"
	@echo "  REDISCLI_AUTH=\"\$$(kubectl get secret standard-auth -o jsonpath='{.data.password}' | base64 -d)\" redis-cli -h <pod IP> -p 6379"
	@echo "Ask the sentinel group for the master, with the group's own password:"
	@echo "  kubectl get pods -o wide -l app.kubernetes.io/instance=sentinel"
	@echo "  REDISCLI_AUTH=\"\$$(kubectl get secret sentinel-auth -o jsonpath='{.data.password}' | base64 -d)\" redis-cli -h <sentinel pod IP> -p 26379 SENTINEL GET-MASTER-ADDR-BY-NAME standard_standard"
	@echo "Check it with the chart's test: target/debug/testbed helm -n $(OPERATOR_NS) test kvrocks-operator"
	@echo "Remove it all with: make demo-down"

.PHONY: demo-down
demo-down: ## Remove everything make demo started.
	@if [ -x target/debug/testbed ]; then $(TESTBED) down; \
	else $(CARGO) build --locked -q -p kvrocks-e2e && $(TESTBED) down; fi

.PHONY: bench
bench: ## Speed, memory and API traffic of the operator on the testbed (time to Ready, failover, RSS, CPU, API requests by verb, scale).
	@# Scale part: BENCH_STANDARDS standards and BENCH_CLUSTERS 3x1 clusters (default 50 and 5).
	$(CARGO) build --locked -p kvrocks-operator -p kvrocks-e2e
	$(CARGO) run --locked -q -p kvrocks-e2e --bin bench
	@# Failover part: a cluster master cut off BENCH_FAILOVERS times (default 10).
	$(CARGO) run --locked -q -p kvrocks-e2e --bin bench-failover

.PHONY: lint-helm
lint-helm: ## Helm chart: copies current, helm lint, helm template (defaults, every option), server-side dry run, promtool.
	$(CARGO) test --locked -p kvrocks-e2e --test chart -- \
	  the_chart_ships_current_copies helm_lint_and_template the_api_server_accepts_the_rendered_chart \
	  alert_rules_pass_promtool

.PHONY: chart-copies
chart-copies: ## Copy config/crd and deploy/dashboards into the Helm chart.
	rm -f deploy/helm/kvrocks-operator/crds/*.yaml deploy/helm/kvrocks-operator/files/dashboards/*.json
	cp config/crd/*.yaml deploy/helm/kvrocks-operator/crds/
	cp deploy/dashboards/*.json deploy/helm/kvrocks-operator/files/dashboards/
