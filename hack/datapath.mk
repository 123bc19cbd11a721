# Data path: what the operator renders for a Store-mode SessionCluster, run on real
# redis-server / redis-sentinel processes with the reference app (test/datapath, build tag
# datapath; see test/datapath/README.md). Included by the Makefile.
#
#   make test-datapath     # app instance loss, primary SIGKILLs under writes, restarted
#                          # primaries, a planned handover; bin/results/datapath.json;
#                          # the sharded store (Redis Cluster): a shard primary killed, a
#                          # server back on a new address, shards 3 -> 4 -> 3 under writes;
#                          # bin/results/datapath-cluster.json
#   make bench-datapath    # session throughput and latency through the app beside
#                          # redis-benchmark; bin/results/bench-datapath.json and the
#                          # "Data path" section of docs/benchmarks.md; the sharded store
#                          # with 1 and 3 shards side by side: bench-datapath-sharded.json
#
# Needs root (the run maps the rendered host names to 127.0.0.x in /etc/hosts and restores
# the file afterwards) and Debian's redis-server, redis-sentinel and redis-tools.
# DATAPATH_DOWN_AFTER (default 3s) sets spec.store.sentinel.downAfter, and
# DATAPATH_CLUSTER_NODE_TIMEOUT (default 2s) the sharded store's cluster-node-timeout; DATAPATH_KEEP=1
# keeps the run directory (configs, logs) even when the run passes.

DATAPATH_TIMEOUT ?= 15m
DATAPATH_HOSTS_MARK := BEGIN session-operator data-path harness

# Removes the harness's /etc/hosts block if a run died without its cleanup (SIGKILL or a
# go test timeout); the harness does this itself at its next start too. A block whose
# process is still alive belongs to another run going on (another worktree's) and stays.
define datapath_hosts_cleanup
if grep -q '$(DATAPATH_HOSTS_MARK)' /etc/hosts 2>/dev/null; then \
  awk '/^# BEGIN session-operator data-path harness/{ pid = $$0; sub(/.*[(]pid /, "", pid); sub(/[)].*/, "", pid); \
         skip = (pid == "" || system("kill -0 " pid " 2>/dev/null") != 0); if (skip) dropped = 1 } \
       !skip { print } /^# END session-operator data-path harness/{ skip = 0 } \
       END { if (dropped) print "datapath: removed a leftover block from /etc/hosts" > "/dev/stderr" }' /etc/hosts >/tmp/datapath-hosts.$$$$ \
    && cat /tmp/datapath-hosts.$$$$ >/etc/hosts; rm -f /tmp/datapath-hosts.$$$$; \
fi
endef

##@ Data path

.PHONY: test-datapath
test-datapath: deps-redis ## Rendered store on real redis-server/redis-sentinel + reference app: kills, failovers, no lost session or acknowledged write. Writes bin/results/datapath.json.
	@mkdir -p $(BIN)/results && rm -f $(BIN)/results/datapath.summary $(BIN)/results/datapath-cluster.summary $(BIN)/results/bench-datapath.summary
	@rc=0; DATAPATH_RESULTS_DIR=$(BIN)/results $(GO) test -tags datapath ./test/datapath/ -skip '^(TestBenchDataPath|TestBenchSharded|TestDay2.*)$$' \
		-count=1 -v -timeout $(DATAPATH_TIMEOUT) || rc=$$?; \
	$(datapath_hosts_cleanup); \
	cat $(BIN)/results/datapath.summary $(BIN)/results/datapath-cluster.summary 2>/dev/null || true; \
	exit $$rc

.PHONY: bench-datapath
bench-datapath: deps-redis ## Session throughput and p50/p99 through the reference app beside redis-benchmark GET/SET (1 KB) on the same primary, and on a sharded store of 1 and 3 shards side by side. Writes bin/results/bench-datapath{,-sharded}.json and their docs/benchmarks.md sections.
	@mkdir -p $(BIN)/results && rm -f $(BIN)/results/datapath.summary $(BIN)/results/bench-datapath.summary $(BIN)/results/bench-datapath-sharded.summary
	@rc=0; DATAPATH_RESULTS_DIR=$(BIN)/results DATAPATH_BENCH_DOC=$(CURDIR)/docs/benchmarks.md \
		$(GO) test -tags datapath ./test/datapath/ -run '^(TestBenchDataPath|TestBenchSharded)$$' -count=1 -v -timeout $(DATAPATH_TIMEOUT) || rc=$$?; \
	$(datapath_hosts_cleanup); \
	cat $(BIN)/results/bench-datapath.summary $(BIN)/results/bench-datapath-sharded.summary 2>/dev/null || true; \
	exit $$rc
