#!/usr/bin/env bash
# Checks the deployment files without a Docker engine or a cluster:
# - docker-compose.yml parses, its images are named in full, Kafka's data is on
#   its volume, every variable it reads from .env is documented in .env.example
#   (scripts/check_deploy.py);
# - the Dockerfile names its base images in full, strips the binaries and
#   passes checkov's rules;
# - the base renders no Secret and no cluster-specific address;
# - the kustomize output of every overlay validates against the Kubernetes
#   schemas (kubernetes-validate), passes checkov (.checkov.yaml lists the rules
#   skipped, each with its reason) and scripts/check_deploy.py: the operator's
#   addresses set, no replica count under an HPA, network policies, preStop
#   pauses, the topic Job, fully qualified images.
# Overlays are rendered from a copy of deploy/ in which each overlay's
# secrets.env (and enricher-keys.env) is its committed *.env.example: a real one
# is never read, and none needs to exist.
# Needs kubectl (with its kustomize), docker-compose, kubernetes-validate and
# checkov: scripts/prepare.sh installs them.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$SECONDS

# kubectl comes with the machine image (Debian package `kubectl`, from the
# Google Cloud CLI repository); Debian's own kubernetes-client is too old for
# these kustomizations.
if ! command -v kubectl >/dev/null 2>&1; then
    echo "check-deploy: kubectl not found (it renders the kustomizations)" >&2
    exit 1
fi

# scripts/prepare.sh installs checkov (its CHECKOV_VERSION) in a virtual
# environment of its own.
CHECKOV_ROOT="${CHECKOV_ROOT:-$HOME/.cache/checkov-3.3.30}"
if [ -x "$CHECKOV_ROOT/bin/checkov" ]; then
    checkov="$CHECKOV_ROOT/bin/checkov"
elif command -v checkov >/dev/null 2>&1; then
    checkov=checkov
else
    echo "check-deploy: checkov not found (scripts/prepare.sh installs it in $CHECKOV_ROOT)" >&2
    exit 1
fi

checkov_config="$PWD/.checkov.yaml"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Compose interpolates from .env; check with the documented defaults.
cp .env.example "$work/.env"
docker-compose --env-file "$work/.env" -f docker-compose.yml config > "$work/compose.yaml"
python3 scripts/check_deploy.py compose "$work/compose.yaml" docker-compose.yml .env.example
echo "check-deploy: docker-compose.yml parses and passes its checks"

# No image is built (there is no Docker engine here): the Dockerfile is read.
python3 scripts/check_deploy.py dockerfile Dockerfile
echo "check-deploy: Dockerfile names its base images in full and strips the binaries"
# checkov scans these files at the end, in one run (it takes seconds to start).
mkdir "$work/checkov"
cp Dockerfile "$work/checkov/Dockerfile"
scanned=(-f Dockerfile)

mkdir "$work/k8s"
cp -r deploy "$work/k8s/"
find "$work/k8s/deploy/overlays" -name '*.env' -delete
for example in "$work"/k8s/deploy/overlays/*/*.env.example; do
    [ -e "$example" ] && cp "$example" "${example%.example}"
done

kubectl kustomize "$work/k8s/deploy/base" > "$work/base.yaml"
python3 scripts/check_deploy.py base "$work/base.yaml"
echo "check-deploy: deploy/base renders no Secret and no cluster-specific address"

for overlay in "$work"/k8s/deploy/overlays/*/; do
    name=$(basename "$overlay")
    rendered="$work/checkov/overlay-$name.yaml"
    kubectl kustomize "$overlay" > "$rendered"
    kubernetes-validate --quiet --strict --kubernetes-version 1.33 "$rendered"
    python3 scripts/check_deploy.py overlay "$rendered"
    scanned+=(-f "overlay-$name.yaml")
    echo "check-deploy: deploy/overlays/$name validates and passes its checks"
done

(cd "$work/checkov" && "$checkov" --config-file "$checkov_config" "${scanned[@]}") \
    || { echo "check-deploy: checkov failed (rules skipped on purpose are in .checkov.yaml)" >&2; exit 1; }
echo "check-deploy: checkov passes on the Dockerfile and every overlay"
echo "check-deploy: all passed in $((SECONDS - started)) s"
