# Day-2 operations on the data path: password rotations (and, from the rollout work,
# rollouts, scaling, restart-all) on the real redis-server / redis-sentinel processes of
# test/datapath, with the reference app writing with WAIT 1 and every acknowledged session
# read back at the end. Included by the Makefile; installs what it needs (Debian's Redis,
# Node.js for the express-session case) through hack/deps.sh.
#
#   make test-day2     # bin/results/day2.json: {"cases":[{name, acknowledged_writes,
#                      # failed_writes, acknowledged_lost, primary_changes, store_restarts,
#                      # masters_seen_max, seconds_without_primary}]}

DAY2_TIMEOUT ?= 20m

##@ Day 2

.PHONY: test-day2
test-day2: deps-redis deps-node ## Day-2 operations (password rotation, rollouts, scaling) under WAIT-1 session writes on real Redis/Sentinel processes. Writes bin/results/day2.json.
	@mkdir -p $(BIN)/results && rm -f $(BIN)/results/day2.json
	@rc=0; DATAPATH_RESULTS_DIR=$(BIN)/results $(GO) test -tags datapath ./test/datapath/ -run '^TestDay2' \
		-count=1 -v -timeout $(DAY2_TIMEOUT) || rc=$$?; \
	$(datapath_hosts_cleanup); \
	cat $(BIN)/results/day2.json 2>/dev/null || true; \
	exit $$rc
