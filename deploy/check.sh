#!/usr/bin/env bash
# Checks deploy/ without a cluster, Docker or kustomize (CI: `bash deploy/check.sh`).
#   1. installs PyYAML and kubernetes-validate (PyPI, pinned; quietly);
#   2. renders deploy/k8s/base with deploy/render.py (a listed file missing or
#      a file not listed fails);
#   3. validates every object against the Kubernetes schemas of K8S_VERSIONS
#      (strict), and checks what schemas cannot: config names against
#      src/config.rs, gRPC probes, security context, selectors, compose.yaml,
#      Dockerfile (deploy/check_manifests.py).
# Exits non-zero with the reasons on any failure.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# The oldest Kubernetes this base supports (native gRPC probes GA in 1.27,
# preStop sleep 1.30, PDB unhealthyPodEvictionPolicy GA 1.31) and the newest
# that kubernetes-validate 1.37.0 ships.
K8S_VERSIONS="${K8S_VERSIONS:-1.31.0 1.37.0}"

die() { echo "deploy/check.sh: $*" >&2; exit 1; }

command -v python3 >/dev/null || die "python3 is required"
echo "--- deploy: Python packages"
PIP_ROOT_USER_ACTION=ignore python3 -m pip install --quiet --disable-pip-version-check \
  'PyYAML>=6,<7' 'kubernetes-validate==1.37.0' ||
  die "could not install PyYAML and kubernetes-validate from PyPI"

[ -f "$here/../src/config.rs" ] || die "src/config.rs not found next to deploy/ (looked in $here/..)"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

echo "--- deploy: render k8s/base (deploy/render.py)"
python3 "$here/render.py" "$here/k8s/base" >"$work/base.yaml" ||
  die "rendering deploy/k8s/base failed (see above)"
echo "$(grep -c '^kind:' "$work/base.yaml") objects rendered"

echo "--- deploy: schemas (Kubernetes $K8S_VERSIONS, strict) and checks"
# shellcheck disable=SC2086 # K8S_VERSIONS is a list
python3 "$here/check_manifests.py" "$work/base.yaml" $K8S_VERSIONS ||
  die "the deployment files have problems (listed above)"
echo "--- deploy: OK"
