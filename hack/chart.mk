# Install paths: the Helm chart, the API reference, and the container images.
# Included by the Makefile (`-include hack/*.mk`).

TOOLS := $(BIN)/tools
HELM_VERSION ?= v3.22.0
CRD_REF_DOCS_VERSION ?= v0.3.0
HELM ?= $(TOOLS)/helm
CRD_REF_DOCS ?= $(TOOLS)/crd-ref-docs
CHART := charts/session-operator
IMAGES := $(BIN)/images

# tool-installed BINARY MODULE VERSION: true when BINARY was built from MODULE@VERSION.
tool-installed = [ -x "$(1)" ] && $(GO) version -m "$(1)" 2>/dev/null | grep -q "^[[:space:]]*mod[[:space:]]*$(2)[[:space:]]*$(3)[[:space:]]"

##@ Install paths

.PHONY: helm
helm: ## Install helm $(HELM_VERSION) into bin/tools (the binary; the operator's go.mod stays free of the Helm SDK).
	@$(call tool-installed,$(HELM),helm.sh/helm/v3,$(HELM_VERSION)) || \
		{ echo "installing helm $(HELM_VERSION) into $(TOOLS)"; GOBIN=$(TOOLS) $(GO) install helm.sh/helm/v3/cmd/helm@$(HELM_VERSION); }

.PHONY: crd-ref-docs
crd-ref-docs: ## Install crd-ref-docs $(CRD_REF_DOCS_VERSION) into bin/tools.
	@$(call tool-installed,$(CRD_REF_DOCS),github.com/elastic/crd-ref-docs,$(CRD_REF_DOCS_VERSION)) || \
		{ echo "installing crd-ref-docs $(CRD_REF_DOCS_VERSION) into $(TOOLS)"; GOBIN=$(TOOLS) $(GO) install github.com/elastic/crd-ref-docs@$(CRD_REF_DOCS_VERSION); }

.PHONY: helm-generate
helm-generate: ## Write the chart's CRD templates and RBAC rules from config/crd/bases and config/rbac.
	$(GO) run ./hack/chartgen

.PHONY: helm-crds
helm-crds: helm-generate ## Write the chart's CRD templates from config/crd/bases (with the RBAC rules).

.PHONY: helm-lint
helm-lint: helm ## helm lint --strict the chart, with default values and with a namespace list.
	$(HELM) lint --strict $(CHART)
	$(HELM) lint --strict $(CHART) --set 'watchNamespaces={web,shop}' --set serviceMonitor.enabled=true --set crds.keep=true

.PHONY: helm-template
helm-template: helm ## Print the chart rendered with default values into session-system.
	@$(HELM) template session-operator $(CHART) --namespace session-system

.PHONY: helm-install
helm-install: helm ## helm upgrade --install the chart into session-system of the cluster in KUBECONFIG.
	img='$(IMG)'; $(HELM) upgrade --install session-operator $(CHART) --namespace session-system --create-namespace \
		--set image.repository="$${img%:*}" --set image.tag="$${img##*:}" $(HELM_ARGS)

.PHONY: api-docs
api-docs: crd-ref-docs ## Write docs/api.md from the API types.
	CRD_REF_DOCS=$(CRD_REF_DOCS) CRD_REF_DOCS_VERSION=$(CRD_REF_DOCS_VERSION) hack/api-docs.sh docs/api.md

# image-tar-of NAME,OUT,BINARY: a single-layer OCI tarball holding BINARY as /NAME, run as
# 65532:65532 with /NAME as its entrypoint (what the Dockerfiles build, without a daemon).
define image-tar-of
	mkdir -p $(IMAGES)
	$(GO) run ./hack/imagetar --name $(2) --out $(3) \
		--file $(4):/$(1):0755 --user 65532:65532 --entrypoint /$(1) $(5)
	@echo "wrote $(3) ($(2)); import it with: hack/local-cluster.sh load $(3)"
endef

.PHONY: image-tar
image-tar: ## Build the operator image (IMG) as an OCI tarball, bin/images/session-operator.tar, with no daemon.
	mkdir -p $(IMAGES)/session-operator
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags='-s -w' -o $(IMAGES)/session-operator/session-operator .
	$(call image-tar-of,session-operator,$(IMG),$(IMAGES)/session-operator.tar,$(IMAGES)/session-operator/session-operator,--expose 8080/tcp --expose 8081/tcp)

.PHONY: app-image-tar
app-image-tar: ## Build the reference app image (APP_IMG) as an OCI tarball, bin/images/session-app.tar.
	mkdir -p $(IMAGES)/session-app
	cd examples/session-app && CGO_ENABLED=0 $(GO) build -trimpath -ldflags='-s -w' -o $(IMAGES)/session-app/session-app . \
		&& CGO_ENABLED=0 $(GO) build -trimpath -ldflags='-s -w' -o $(IMAGES)/session-app/sessionload ./cmd/sessionload
	$(call image-tar-of,session-app,$(APP_IMG),$(IMAGES)/session-app.tar,$(IMAGES)/session-app/session-app,--file $(IMAGES)/session-app/sessionload:/sessionload:0755 --expose 8080/tcp)

TOMCAT_IMG ?= session-tomcat:10.1
TOMCAT_TAR := $(IMAGES)/session-tomcat.tar

.PHONY: tomcat-image-tar
tomcat-image-tar: $(TOMCAT_TAR) ## Build the clustered Tomcat example (TOMCAT_IMG) from Debian's tomcat10 and openjdk-17 as bin/images/session-tomcat.tar (apt-get installs them when missing).

$(TOMCAT_TAR): $(shell find examples/tomcat -type f) hack/imagetar/main.go $(IMAGES)/session-tomcat.name
	examples/tomcat/build-image.sh $@.tmp $(TOMCAT_IMG)
	mv $@.tmp $@
	@echo "import it with: hack/local-cluster.sh load $@"

# The image name the tarball was built with: a different TOMCAT_IMG rebuilds it.
$(IMAGES)/session-tomcat.name: FORCE
	@mkdir -p $(IMAGES); echo '$(TOMCAT_IMG)' | cmp -s - $@ || echo '$(TOMCAT_IMG)' >$@

.PHONY: FORCE
FORCE:
