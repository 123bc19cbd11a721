# session-operator. `make help` lists the targets.
SHELL := /usr/bin/env bash -o pipefail
.SHELLFLAGS := -ec
.DEFAULT_GOAL := help

IMG ?= ghcr.io/sessionops/session-operator:dev
APP_IMG ?= ghcr.io/sessionops/session-app:dev
K8S_VERSION ?= 1.37.2
GO ?= go
CONTROLLER_GEN ?= $(GO) tool controller-gen
BIN := $(CURDIR)/bin
# Found or built once per make run, when a recipe first needs it (the lazy-once idiom).
ENVTEST_ASSETS = $(eval ENVTEST_ASSETS := $$(shell K8S_VERSION=$(K8S_VERSION) hack/envtest-assets.sh))$(ENVTEST_ASSETS)
export GOTOOLCHAIN ?= local

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"} /^[a-zA-Z0-9_-]+:.*?##/ {printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

##@ Development

.PHONY: manifests
manifests: ## Generate the CRD and the manager's RBAC from the kubebuilder markers.
	$(CONTROLLER_GEN) rbac:roleName=manager-role crd paths="./api/..." paths="./controllers/..." \
		output:crd:artifacts:config=config/crd/bases output:rbac:artifacts:config=config/rbac

.PHONY: generate
generate: ## Generate the API types' DeepCopy methods.
	$(CONTROLLER_GEN) object:headerFile="hack/boilerplate.go.txt" paths="./api/..."

.PHONY: fmt
fmt: ## Run gofmt on the code.
	gofmt -l -w api controllers internal test main.go examples

.PHONY: vet
vet: ## Run go vet.
	$(GO) vet ./...
	cd examples/session-app && $(GO) vet ./...

.PHONY: check-generated
check-generated: ## Fail when generated files are stale.
	hack/check-generated.sh

.PHONY: envtest-assets
envtest-assets: ## Find or build etcd, kube-apiserver and kubectl for envtest (bin/k8s).
	@echo "KUBEBUILDER_ASSETS=$(ENVTEST_ASSETS)"

# deps-redis installs Debian's Redis packages when they are missing (one line says so), or
# stops at once with the command to run; every target that starts Redis depends on it.
.PHONY: deps-redis deps-node
deps-redis:
	@hack/deps.sh redis
deps-node:
	@hack/deps.sh node

.PHONY: test
test: deps-redis check-generated vet envtest-assets ## Unit and envtest suites, the reference app's tests (real Redis), and stale-file checks.
	KUBEBUILDER_ASSETS=$(ENVTEST_ASSETS) $(GO) test ./... -count=1 -timeout 30m
	cd examples/session-app && $(GO) test ./... -count=1 -timeout 15m

.PHONY: bench
bench: envtest-assets ## Benchmarks on envtest: create-to-children latency and writes per no-op reconcile.
	KUBEBUILDER_ASSETS=$(ENVTEST_ASSETS) $(GO) test ./controllers/ -run '^$$' -bench CreateToChildren -benchtime 1x -count=1
	KUBEBUILDER_ASSETS=$(ENVTEST_ASSETS) $(GO) test ./controllers/ -run '^$$' -bench NoOpReconcileWrites -benchtime 20x -count=1

##@ Build

.PHONY: build
build: ## Build the manager binary into bin/.
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN)/session-operator .

.PHONY: run
run: manifests generate ## Run the manager against the cluster in KUBECONFIG.
	$(GO) run . --leader-elect=false

.PHONY: install
install: manifests ## Install the CRD into the cluster in KUBECONFIG.
	$(KUBECTL) apply --server-side -f config/crd/bases

KUBECTL ?= $(shell command -v $(BIN)/k8s/$(K8S_VERSION)/kubectl || command -v kubectl)

-include hack/*.mk

.PHONY: bench-scale
bench-scale: envtest-assets ## A fleet of SessionClusters (SCALE_N, default 1000) on one manager; writes bin/results/scale.json.
	SCALE_DOC=$(CURDIR)/docs/benchmarks.md KUBEBUILDER_ASSETS=$(ENVTEST_ASSETS) $(GO) test -tags scale ./test/scale/ -run TestScale -count=1 -timeout 120m -v
