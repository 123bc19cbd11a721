#!/usr/bin/env bash
# Fails when generated files (CRDs, RBAC, deepcopy, the chart's CRDs and RBAC rules,
# docs/api.md) are
# stale: it regenerates them and compares. On failure the fresh files are left in place,
# ready to commit.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
generated() {
  find config/crd/bases config/rbac/role.yaml api -name '*.yaml' -o -name 'zz_generated*.go' 2>/dev/null
  [ -d charts/session-operator/templates/crds ] && find charts/session-operator/templates/crds -type f
  [ -f charts/session-operator/templates/_rbac_rules.tpl ] && echo charts/session-operator/templates/_rbac_rules.tpl
  [ -f docs/api.md ] && echo docs/api.md
  return 0
}
snapshot() { generated | sort | xargs -r sha256sum; }
before=$(snapshot)
make -s manifests generate helm-generate api-docs ${CHECK_GENERATED_EXTRA:-} >/dev/null
after=$(snapshot)
if [ "$before" != "$after" ]; then
  echo "Generated files were stale; they have been regenerated. Commit these:" >&2
  diff <(echo "$before") <(echo "$after") | sed -n 's/^> [0-9a-f]*  /  /p' >&2
  exit 1
fi
echo "generated files are up to date"
