#!/usr/bin/env python3
"""Checks of the deployment files that schemas and checkov do not make.

Called by scripts/check-deploy.sh:
  check_deploy.py compose RENDERED_COMPOSE docker-compose.yml .env.example
  check_deploy.py dockerfile Dockerfile
  check_deploy.py base RENDERED_BASE
  check_deploy.py overlay RENDERED_OVERLAY
Each RENDERED_* is the output of `docker-compose config` or `kubectl kustomize`.
Prints every problem found and exits 1 if there was one.
"""

import ipaddress
import posixpath
import re
import sys
from urllib.parse import urlparse

import yaml

problems = []


def problem(message):
    problems.append(message)


def load_all(path):
    with open(path, encoding="utf-8") as file:
        return [doc for doc in yaml.safe_load_all(file) if doc]


# --- docker-compose ---------------------------------------------------------


def env_dict(environment):
    if isinstance(environment, dict):
        return {k: "" if v is None else str(v) for k, v in environment.items()}
    result = {}
    for item in environment or []:
        key, _, value = item.partition("=")
        result[key] = value
    return result


def volume_targets(service):
    targets = []
    for volume in service.get("volumes") or []:
        if isinstance(volume, dict):
            targets.append(volume.get("target", ""))
        else:
            parts = str(volume).split(":")
            targets.append(parts[1] if len(parts) > 1 else parts[0])
    return [posixpath.normpath(t) for t in targets if t]


def under(path, directory):
    path = posixpath.normpath(path)
    return path == directory or path.startswith(directory.rstrip("/") + "/")


def fully_qualified(image):
    """Names its registry, as podman, buildah and CRI-O need without short-name
    aliases: `docker.io/library/rust:1`, not `rust:1`."""
    first = image.split("/")[0]
    return "/" in image and ("." in first or ":" in first or first == "localhost")


def check_dockerfile(path):
    with open(path, encoding="utf-8") as file:
        text = file.read()
    stages = set()
    for line in text.splitlines():
        words = line.split()
        if not words or words[0].upper() != "FROM":
            continue
        args = [w for w in words[1:] if not w.startswith("--")]
        image = args[0]
        if image.lower() != "scratch" and image.lower() not in stages and not fully_qualified(image):
            problem(f"Dockerfile: FROM {image} names no registry")
        if len(args) >= 3 and args[1].upper() == "AS":
            stages.add(args[2].lower())
    # The release profile keeps line tables (57 MB a binary): the image ships
    # the binaries without them.
    if not re.search(r"^\s*(&&\s*)?(strip|objcopy)\b[^\n]*--strip-(debug|all|unneeded)", text, re.MULTILINE):
        problem("Dockerfile: the binaries are not stripped (strip --strip-debug)")


def check_compose(rendered_path, compose_path, env_example_path):
    rendered = load_all(rendered_path)[0]
    for name, service in (rendered.get("services") or {}).items():
        if "image" in service and not fully_qualified(service["image"]):
            problem(f"compose: {name}: image {service['image']} names no registry")
        env = env_dict(service.get("environment"))
        if "KAFKA_PROCESS_ROLES" not in env:
            continue
        # The apache/kafka image writes to /tmp/kraft-combined-logs unless
        # KAFKA_LOG_DIRS says otherwise: the topics must live on the volume.
        log_dirs = [d for d in env.get("KAFKA_LOG_DIRS", "").split(",") if d]
        if not log_dirs:
            problem(f"compose: {name}: KAFKA_LOG_DIRS is unset, the broker keeps its data in the container")
        targets = volume_targets(service)
        for log_dir in log_dirs:
            if not any(under(log_dir, t) for t in targets):
                problem(f"compose: {name}: KAFKA_LOG_DIRS {log_dir} is on no volume (mounted: {targets})")

    with open(compose_path, encoding="utf-8") as file:
        compose_text = file.read()
    with open(env_example_path, encoding="utf-8") as file:
        env_example = file.read()
    documented = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", env_example, re.MULTILINE))
    # ${VAR}, ${VAR:-default}, $VAR - but not $$ (compose's escape for a literal $).
    used = set(re.findall(r"(?<!\$)\$\{?([A-Z][A-Z0-9_]*)", compose_text))
    for name in sorted(used - documented):
        problem(f"compose: ${{{name}}} is read from .env but not documented in .env.example")

    # `.env` is read by docker compose too: a non-JSON LOG_FORMAT there would turn
    # the containers' JSON logs off.
    for value in re.findall(r"^LOG_FORMAT=(.*)$", env_example, re.MULTILINE):
        if value.strip().lower() != "json":
            problem(f".env.example: LOG_FORMAT={value} would turn the containers' JSON logs off")


# --- Kubernetes -------------------------------------------------------------

WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob"}


def key(doc):
    return f"{doc['kind']}/{doc['metadata']['name']}"


def pod_spec(doc):
    spec = doc.get("spec", {})
    if doc["kind"] == "CronJob":
        spec = spec.get("jobTemplate", {}).get("spec", {})
    return spec.get("template", {})


def pod_labels(doc):
    return pod_spec(doc).get("metadata", {}).get("labels", {}) or {}


def selects(selector, labels):
    """A Service's selector (a plain map) or a NetworkPolicy's podSelector
    (matchLabels; `{}` selects every pod)."""
    if selector is None:
        return False
    if "matchExpressions" in selector:
        problem("check_deploy.py does not evaluate matchExpressions; use matchLabels")
    match = selector.get("matchLabels", {}) if {"matchLabels", "matchExpressions"} & selector.keys() else selector
    return all(labels.get(k) == v for k, v in match.items())


def config_data(docs):
    data = {}
    for doc in docs:
        if doc["kind"] == "ConfigMap":
            data.update(doc.get("data") or {})
    return data


def check_base(path):
    docs = load_all(path)
    for doc in docs:
        if doc["kind"] == "Secret":
            problem(f"base: {key(doc)}: a Secret in the base is overwritten by every `kubectl apply -k`; generate it in the overlay")
    data = config_data(docs)
    for name in ("KAFKA_BOOTSTRAP_SERVERS", "EXTERNAL_API_URL"):
        if name in data:
            problem(f"base: ConfigMap sets {name}={data[name]!r}; it depends on the cluster, the overlay sets it")


def container_ports(doc):
    ports = {}
    for container in pod_spec(doc).get("spec", {}).get("containers", []):
        for port in container.get("ports", []):
            if "name" in port:
                ports[port["name"]] = port["containerPort"]
    return ports


def check_overlay(path):
    docs = load_all(path)
    name = path
    workloads = [d for d in docs if d["kind"] in WORKLOADS]
    deployments = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    policies = [d for d in docs if d["kind"] == "NetworkPolicy"]
    services = [d for d in docs if d["kind"] == "Service"]

    # Secrets come from the overlay's generator.
    if not any(d["kind"] == "Secret" and d["metadata"]["name"].startswith("user-services-secrets") for d in docs):
        problem(f"{name}: no Secret user-services-secrets (the overlay's secretGenerator)")

    # The operator's addresses.
    data = config_data(docs)
    url = data.get("EXTERNAL_API_URL", "")
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        problem(f"{name}: EXTERNAL_API_URL is {url!r}: production would enrich through its own /dummy-enrich")
    else:
        host = parsed.hostname
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = host == "localhost"
        if loopback or parsed.path.rstrip("/").endswith("/dummy-enrich"):
            problem(f"{name}: EXTERNAL_API_URL {url} is the enricher's own /dummy-enrich")
    bootstrap = data.get("KAFKA_BOOTSTRAP_SERVERS", "")
    if not bootstrap:
        problem(f"{name}: KAFKA_BOOTSTRAP_SERVERS is not set")

    # Fully qualified images.
    for doc in workloads:
        for container in pod_spec(doc).get("spec", {}).get("containers", []):
            if not fully_qualified(container["image"]):
                problem(f"{name}: {key(doc)}: image {container['image']} names no registry")

    # Nothing fights the HorizontalPodAutoscaler over the replica count.
    for hpa in (d for d in docs if d["kind"] == "HorizontalPodAutoscaler"):
        target = hpa["spec"]["scaleTargetRef"]
        deployment = deployments.get(target["name"]) if target["kind"] == "Deployment" else None
        if deployment is None:
            problem(f"{name}: {key(hpa)} targets {target['kind']}/{target['name']}, which is not rendered")
        elif "replicas" in deployment["spec"]:
            problem(
                f"{name}: {key(deployment)} sets replicas: {deployment['spec']['replicas']} "
                f"while {key(hpa)} manages it (minReplicas {hpa['spec'].get('minReplicas')})"
            )

    # Default deny, and every workload under a policy for both directions.
    if not any(
        p["spec"].get("podSelector") == {}
        and set(p["spec"].get("policyTypes", [])) == {"Ingress", "Egress"}
        and not p["spec"].get("ingress")
        and not p["spec"].get("egress")
        for p in policies
    ):
        problem(f"{name}: no default-deny NetworkPolicy (podSelector {{}}, Ingress and Egress, no rules)")
    for doc in workloads:
        labels = pod_labels(doc)
        own = [
            p for p in policies
            if p["spec"].get("podSelector") != {} and selects(p["spec"].get("podSelector"), labels)
        ]
        types = {t for p in own for t in p["spec"].get("policyTypes", [])}
        if not {"Ingress", "Egress"} <= types:
            problem(f"{name}: {key(doc)}: no NetworkPolicy of its own for Ingress and Egress (has {sorted(types)})")

    # Every Service port is let in by a policy selecting its pods.
    for service in services:
        selector = service["spec"].get("selector") or {}
        backends = [d for d in workloads if selector and selects(selector, pod_labels(d))]
        for backend in backends:
            named = container_ports(backend)
            allowed = set()
            for policy in policies:
                if not selects(policy["spec"].get("podSelector"), pod_labels(backend)):
                    continue
                for rule in policy["spec"].get("ingress") or []:
                    for port in rule.get("ports") or []:
                        allowed.add(port.get("port"))
            for port in service["spec"].get("ports", []):
                target = port.get("targetPort", port["port"])
                number = named.get(target, target)
                if number not in allowed and target not in allowed:
                    problem(f"{name}: {key(service)} port {port['port']} -> {key(backend)}:{number}: no NetworkPolicy lets it in")

    # Endpoints are removed before the process stops accepting: a preStop pause
    # (a `sleep` action: the images have no shell) within the grace period,
    # which also covers the 10 s shutdown.
    for service in services:
        if not any(p.get("name") == "http" for p in service["spec"].get("ports", [])):
            continue
        selector = service["spec"].get("selector") or {}
        for doc in deployments.values():
            if not selects(selector, pod_labels(doc)):
                continue
            spec = pod_spec(doc).get("spec", {})
            grace = spec.get("terminationGracePeriodSeconds", 30)
            for container in spec.get("containers", []):
                pre_stop = (container.get("lifecycle") or {}).get("preStop") or {}
                seconds = (pre_stop.get("sleep") or {}).get("seconds")
                if not seconds:
                    problem(f"{name}: {key(doc)}: container {container['name']} has no preStop sleep")
                elif grace < seconds + 10:
                    problem(f"{name}: {key(doc)}: terminationGracePeriodSeconds {grace} < preStop {seconds} s + 10 s shutdown")

    # The consumer's topics are created by the deployment.
    topics = [data.get("KAFKA_TOPIC", "user_service"), data.get("KAFKA_DLQ_TOPIC", "user_service.dlq")]
    kafka_topics = {
        d.get("spec", {}).get("topicName", d["metadata"]["name"]) for d in docs if d["kind"] == "KafkaTopic"
    }
    job_texts = []
    for doc in (d for d in docs if d["kind"] == "Job"):
        for container in pod_spec(doc).get("spec", {}).get("containers", []):
            job_texts.append(" ".join(container.get("command", []) + container.get("args", [])))
    for topic, variable in zip(topics, ("KAFKA_TOPIC", "KAFKA_DLQ_TOPIC")):
        by_job = any(
            "kafka-topics.sh" in text and "--create" in text and "--if-not-exists" in text
            and re.search(r"\$\{?" + variable + r"\b", text)
            for text in job_texts
        )
        if topic not in kafka_topics and not by_job:
            problem(f"{name}: nothing creates the topic {topic} (a Job running kafka-topics.sh --create --if-not-exists, or a KafkaTopic)")


def main(argv):
    mode, *paths = argv[1:]
    checks = {"compose": check_compose, "dockerfile": check_dockerfile, "base": check_base, "overlay": check_overlay}
    checks[mode](*paths)
    for message in problems:
        print(f"check-deploy: {message}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
