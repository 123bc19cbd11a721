# make demo / make demo-down (hack/demo.sh). Included by the Makefile.

##@ Demo

.PHONY: demo
demo: ## Cluster up, images, chart, the hybrid sample with the reference app; prints how to open it and watch a failover.
	IMG='$(IMG)' APP_IMG='$(APP_IMG)' hack/demo.sh up

.PHONY: demo-down
demo-down: ## Remove the demo cluster and everything it made.
	hack/demo.sh down
