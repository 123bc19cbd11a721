# End-to-end suite on a real cluster (test/e2e, build tag e2e). Included by the Makefile.
#
#   make test-e2e                       # brings the local cluster up (kind where Docker
#                                       # works), runs everything, brings it down (a
#                                       # cluster that was already up stays up)
#   E2E_KEEP_CLUSTER=1 make test-e2e    # leave the cluster up afterwards
#   KUBECONFIG=... make test-e2e        # use a running cluster (hack/local-cluster.sh's, or
#                                       # one that already has the images: E2E_LOAD_IMAGES=0)
#   E2E_RUN=TestE2E/tomcat make test-e2e  # only the steps named tomcat/... (setup, images and
#                                       # the chart still happen; other steps are skipped)
#   E2E_RUN='TestE2E/store/(ready|day2)' make test-e2e  # the day-2 scenario alone (rollout,
#                                       # scale 3-5-3, restart-all, grow-claims): e2e.json "day2"
#   E2E_RUN='TestE2E/store/(ready|chaos)' make test-e2e  # status under chaos alone (primary
#                                       # frozen, every Redis pod deleted, a failover while the
#                                       # operator is scaled to 0): e2e.json chaos_* figures
#
# Writes bin/results/e2e.json; on a failure also bin/results/e2e-dump/ (events, pods, pod
# and operator logs). The local cluster's daemons log to bin/cluster/logs.

E2E_TIMEOUT ?= 80m
E2E_RUN ?= TestE2E

##@ End to end

.PHONY: test-e2e
test-e2e: ## End-to-end suite on a real cluster: chart, samples, failover, day-2 operations, operator restart, GC, uninstall. Writes bin/results/e2e.json.
	IMG='$(IMG)' APP_IMG='$(APP_IMG)' TOMCAT_IMG='$(TOMCAT_IMG)' $(GO) test -tags e2e ./test/e2e/ -run '$(E2E_RUN)' -count=1 -timeout $(E2E_TIMEOUT) -v
