// Package install tests the operator's install paths against a real kube-apiserver
// (envtest): the Helm chart rendered by the helm binary for several sets of values, and
// `kubectl kustomize config/default`, each object applied with a strict server-side dry
// run; that the chart's CRDs and RBAC are the generated ones; that values.schema.json
// refuses bad values; that the Dockerfile's build context builds a static manager which
// starts with the chart's arguments; that this manager, running as the chart's
// ServiceAccount under the apiserver's RBAC, reconciles SessionClusters in every scope the
// chart offers (all namespaces, a list); and that the generated API reference and the
// README keep up with the code.
//
// The tools it needs (helm, crd-ref-docs) are installed into bin/tools with `go install`
// when missing; nothing is skipped.
package install
