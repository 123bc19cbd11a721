// Package render turns a SessionCluster into the Kubernetes objects it needs. Everything
// here is pure: a spec and a few inputs in, objects out, no client and no clock, so every
// object can be table-tested without a cluster and the data-path harness can run exactly
// what a pod would.
package render
