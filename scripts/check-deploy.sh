#!/usr/bin/env bash
# Checks the deployment files without a Docker engine or a cluster:
# the compose file parses, and the kustomize output of every overlay validates
# against the Kubernetes schemas.
set -euo pipefail
cd "$(dirname "$0")/.."

# Compose interpolates from .env; check with the documented defaults.
env_file=$(mktemp)
trap 'rm -f "$env_file"' EXIT
cp .env.example "$env_file"
docker-compose --env-file "$env_file" -f docker-compose.yml config -q
echo "check-deploy: docker-compose.yml parses"

for overlay in deploy/overlays/*/; do
    kubectl kustomize "$overlay" > "$env_file.k8s.yaml"
    kubernetes-validate --strict --kubernetes-version 1.33 "$env_file.k8s.yaml"
    rm -f "$env_file.k8s.yaml"
    echo "check-deploy: $overlay validates"
done
