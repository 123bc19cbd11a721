package install

import (
	"bytes"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sessionops/session-operator/internal/metrics"
)

// TestAPIDocsUpToDate regenerates the API reference and compares it with docs/api.md.
func TestAPIDocsUpToDate(t *testing.T) {
	tool := tool(t, "crd-ref-docs", crdRefDocsModule, crdRefDocsModule, crdRefDocsVersion)
	out := filepath.Join(t.TempDir(), "api.md")
	cmd := exec.Command(filepath.Join(root, "hack", "api-docs.sh"), out)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CRD_REF_DOCS="+tool, "CRD_REF_DOCS_VERSION="+crdRefDocsVersion)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("hack/api-docs.sh: %v\n%s", err, b)
	}
	want, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(root, "docs", "api.md"))
	if err != nil || !bytes.Equal(got, want) {
		t.Fatal("docs/api.md is stale; run `make api-docs` and commit it")
	}
	for _, field := range []string{"`mode`", "`store`", "`sentinel`", "`sticky`", "`clustering`", "`conditions`"} {
		if !bytes.Contains(want, []byte(field)) {
			t.Errorf("docs/api.md does not document %s", field)
		}
	}
}

// TestREADMEDocumentsMetrics fails when the operator registers a metric the README does
// not describe.
func TestREADMEDocumentsMetrics(t *testing.T) {
	readme := readREADME(t)
	fqName := regexp.MustCompile(`fqName: "([^"]+)"`)
	for _, c := range []prometheus.Collector{
		metrics.Failovers, metrics.FailoverDuration, metrics.ReconcileErrors,
		metrics.StoreReplicasReady, metrics.SessionsStored,
	} {
		ch := make(chan *prometheus.Desc, 4)
		c.Describe(ch)
		close(ch)
		for d := range ch {
			m := fqName.FindStringSubmatch(d.String())
			if m == nil {
				t.Fatalf("no name in %s", d)
			}
			if !strings.Contains(readme, m[1]) {
				t.Errorf("README.md does not document the metric %s", m[1])
			}
		}
	}
}

// TestREADMEDocumentsConditions fails when a condition type or reason in
// api/v1alpha1/conditions.go is missing from the README's status section.
func TestREADMEDocumentsConditions(t *testing.T) {
	readme := readREADME(t)
	fs := token.NewFileSet()
	f, err := parser.ParseFile(fs, filepath.Join(root, "api", "v1alpha1", "conditions.go"), nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, decl := range f.Decls {
		g, ok := decl.(*ast.GenDecl)
		if !ok || g.Tok != token.CONST {
			continue
		}
		for _, spec := range g.Specs {
			vs := spec.(*ast.ValueSpec)
			for i, name := range vs.Names {
				if !strings.HasPrefix(name.Name, "Condition") && !strings.HasPrefix(name.Name, "Reason") {
					continue
				}
				lit, ok := vs.Values[i].(*ast.BasicLit)
				if !ok {
					continue
				}
				v, _ := strconv.Unquote(lit.Value)
				n++
				if !strings.Contains(readme, "`"+v+"`") {
					t.Errorf("README.md does not explain %s (%q)", name.Name, v)
				}
			}
		}
	}
	if n == 0 {
		t.Fatal("found no condition constants in api/v1alpha1/conditions.go")
	}
}

func readREADME(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
