# Local single-node Kubernetes cluster (hack/local-cluster.sh; kind where Docker works).
# Included by the Makefile. See hack/README-cluster.md.
CLUSTER_HACK := $(abspath $(dir $(lastword $(MAKEFILE_LIST))))
LOCAL_CLUSTER_SH ?= $(CLUSTER_HACK)/local-cluster.sh
# kubeconfig of the local cluster (apiserver on https://127.0.0.1:16443)
CLUSTER_KUBECONFIG ?= $(abspath $(CLUSTER_HACK)/../bin/cluster/kubeconfig)
# the kubectl built with the cluster (hack/build-k8s.sh)
CLUSTER_KUBECTL ?= $(abspath $(CLUSTER_HACK)/../bin/k8s/1.37.2/kubectl)

.PHONY: cluster-up cluster-down cluster-status cluster-images cluster-load cluster-smoke

cluster-up: ## Start the local cluster (idempotent; writes bin/cluster/kubeconfig).
	$(LOCAL_CLUSTER_SH) up

cluster-down: ## Stop the local cluster and remove everything it made.
	$(LOCAL_CLUSTER_SH) down

cluster-status: ## Show what of the local cluster runs.
	$(LOCAL_CLUSTER_SH) status

cluster-images: ## Build the cluster's image tarballs (pause, coredns, session-redis:7.0) in bin/cluster/images.
	$(LOCAL_CLUSTER_SH) images

cluster-load: ## Import image tarballs into the running cluster: make cluster-load TARS="a.tar b.tar".
	$(LOCAL_CLUSTER_SH) load $(TARS)

cluster-smoke: ## Prove the running cluster: PSS, StatefulSet DNS, PVCs, Services, logs/exec/port-forward.
	KUBECONFIG=$(CLUSTER_KUBECONFIG) KUBECTL=$(CLUSTER_KUBECTL) $(CLUSTER_HACK)/cluster/smoke-test.sh
