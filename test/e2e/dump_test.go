//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// dump writes what a failure needs to be understood to bin/results/e2e-dump/ and prints
// the events and the operator's last log lines: every namespace's events, the pods, the
// SessionClusters, every pod's log in the test namespaces (and the previous container's),
// and the operator's log.
func (e *env) dump(step string) {
	e.mu.Lock()
	if e.dumped {
		e.mu.Unlock()
		return
	}
	e.dumped = true
	e.mu.Unlock()

	dir := filepath.Join(e.root, "bin/results/e2e-dump")
	_ = os.RemoveAll(dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		logf("dump: %v", err)
		return
	}
	save := func(name string, args ...string) string {
		out, err := e.kc(args...)
		if err != nil {
			out += "\n" + err.Error() + "\n"
		}
		_ = os.WriteFile(filepath.Join(dir, name), []byte(out), 0o644)
		return out
	}
	logf("step %s failed: dumping the cluster's state into %s", step, dir)
	events := save("events.txt", "get", "events", "-A", "--sort-by=.metadata.creationTimestamp",
		"-o", "custom-columns=TIME:.metadata.creationTimestamp,LAST:.lastTimestamp,COUNT:.count,NS:.metadata.namespace,OBJECT:.involvedObject.name,KIND:.involvedObject.kind,TYPE:.type,REASON:.reason,MESSAGE:.message")
	save("pods.txt", "get", "pods", "-A", "-o", "wide")
	save("sessionclusters.yaml", "get", "sessionclusters", "-A", "-o", "yaml")
	save("objects.txt", "get", "all,pvc,pdb,networkpolicy,ingress,configmap,secret,serviceaccount,role,rolebinding,lease", "-A", "-o", "wide")
	save("describe-pods.txt", "describe", "pods", "-A")
	save("nodes.txt", "describe", "nodes")
	// The local cluster's addons: what enforced NetworkPolicy and what served Ingresses.
	save("logs-kube-system-kube-network-policies.txt", "logs", "-n", "kube-system", "ds/kube-network-policies", "--timestamps", "--tail=2000")
	save("logs-kube-system-traefik.txt", "logs", "-n", "kube-system", "deploy/traefik", "--timestamps", "--tail=2000")

	var opLog string
	for _, ns := range []string{nsStore, nsSticky, nsClustered, nsTomcat, nsCluster, operatorNS} {
		out, err := e.kc("get", "pods", "-n", ns, "-o", "jsonpath={range .items[*]}{.metadata.name}{\"\\n\"}{end}")
		if err != nil {
			continue
		}
		for _, pod := range strings.Fields(out) {
			log := save(fmt.Sprintf("logs-%s-%s.txt", ns, pod), "logs", "-n", ns, pod, "--all-containers", "--timestamps", "--tail=2000")
			save(fmt.Sprintf("logs-%s-%s-previous.txt", ns, pod), "logs", "-n", ns, pod, "--all-containers", "--timestamps", "--previous", "--tail=2000")
			if ns == operatorNS {
				opLog += log
			}
		}
	}
	// The local cluster's daemons log to bin/cluster/logs (kept by down).
	fmt.Fprintf(os.Stderr, "---- events (last 80) ----\n%s\n", tail(events, 80))
	fmt.Fprintf(os.Stderr, "---- operator log (last 60 lines) ----\n%s\n", tail(opLog, 60))
	fmt.Fprintf(os.Stderr, "---- pod logs and more in %s; cluster daemons in bin/cluster/logs ----\n", dir)
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
