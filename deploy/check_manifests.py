#!/usr/bin/env python3
"""Checks the deployment files without a cluster, for deploy/check.sh.

    python3 deploy/check_manifests.py RENDERED.yaml K8S_VERSION...

RENDERED.yaml is deploy/render.py's output for deploy/k8s/base. Checks:
  1. every document against the Kubernetes OpenAPI schemas of each
     K8S_VERSION (kubernetes-validate, strict: unknown fields fail; a kind
     with no schema fails too, where the kubernetes-validate CLI only warns);
  2. what the schemas cannot see: CASTELLAN_* names against src/config.rs,
     gRPC probes on 50051, the security context, selectors against the pod
     labels, the shutdown timing, the signing key mount, the network policy
     (egress to the SMTP port the server is configured with included),
     resources; deploy/compose.yaml and deploy/Dockerfile against the same
     configuration names.
Prints every failure and exits 1 if there is any.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import yaml

DEPLOY = Path(__file__).resolve().parent
ROOT = DEPLOY.parent
CONFIG_RS = ROOT / "src" / "config.rs"
COMPOSE = DEPLOY / "compose.yaml"
DOCKERFILE = DEPLOY / "Dockerfile"

GRPC_PORT = 50051
HTTP_PORT = 8080
POSTGRES_PORT = 5432
DNS_PORT = 53

failures: list[str] = []


def fail(where: str, message: str) -> None:
    failures.append(f"{where}: {message}")


def kn(doc: dict) -> str:
    return f"{doc['kind']}/{doc['metadata']['name']}"


# --- configuration names ----------------------------------------------------


def config_env_names() -> set[str]:
    """The `env = "CASTELLAN_..."` names that src/config.rs declares."""
    if not CONFIG_RS.is_file():
        raise SystemExit(f"check_manifests.py: {CONFIG_RS} not found (expected at ../src/config.rs from deploy/)")
    names = set(re.findall(r'\benv\s*=\s*"(CASTELLAN_[A-Z0-9_]+)"', CONFIG_RS.read_text()))
    if not names:
        raise SystemExit(f'check_manifests.py: no `env = "CASTELLAN_..."` found in {CONFIG_RS}')
    return names


def check_names(where: str, names, known: set[str]) -> None:
    for name in sorted(names):
        if name.startswith("CASTELLAN_") and name not in known:
            fail(where, f"{name} is not a configuration variable of src/config.rs")


# --- helpers ------------------------------------------------------------------


def parse_duration(text: str) -> float | None:
    """The humantime forms the config uses: `30s`, `1m30s`, `500ms`, `1h`."""
    units = {"ms": 0.001, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600}
    parts = re.findall(r"(\d+)\s*(ms|sec|min|s|m|h)", text)
    if not parts or "".join(n + u for n, u in parts) != re.sub(r"\s+", "", text):
        return None
    return sum(int(n) * units[u] for n, u in parts)


def parse_quantity(value) -> float | None:
    suffixes = {"m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(m|k|M|G|Ki|Mi|Gi)?", str(value))
    if not match:
        return None
    return float(match.group(1)) * suffixes.get(match.group(2) or "", 1)


def port_of(addr: str) -> int | None:
    match = re.fullmatch(r".*:(\d+)", addr or "")
    return int(match.group(1)) if match else None


def selects(selector: dict | None, labels: dict) -> bool:
    """Whether a label selector (matchLabels and/or matchExpressions) matches."""
    if not selector:
        return False
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expr in selector.get("matchExpressions") or []:
        value, present = labels.get(expr["key"]), expr["key"] in labels
        op, values = expr["operator"], expr.get("values") or []
        if (op == "In" and value not in values) or (op == "NotIn" and value in values):
            return False
        if (op == "Exists" and not present) or (op == "DoesNotExist" and present):
            return False
    return True


def pod_template(doc: dict) -> dict:
    return doc.get("spec", {}).get("template", {}) or {}


# --- 1. schemas -------------------------------------------------------------------


def check_schemas(documents: list[dict], versions: list[str]) -> None:
    import kubernetes_validate

    for version in versions:
        for doc in documents:
            try:
                validated = kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as error:
                path = ".".join(str(p) for p in error.path)
                fail(kn(doc), f"Kubernetes {version} schema: {path}: {error.message}")
                continue
            except kubernetes_validate.SchemaNotFoundError as error:
                fail(kn(doc), f"Kubernetes {version}: {error.message}")
                continue
            except (
                kubernetes_validate.utils.VersionNotSupportedError,
                kubernetes_validate.InvalidSchemaError,
            ) as error:
                raise SystemExit(f"check_manifests.py: cannot validate against Kubernetes {version}: {error!r}")
            if validated != ".".join(version.split(".")[:2]):
                raise SystemExit(f"check_manifests.py: asked for Kubernetes {version}, validated against {validated}")


# --- 2. workloads -------------------------------------------------------------


def resolved_env(pod_spec: dict, container: dict, configmaps: dict, where: str) -> dict[str, object]:
    """Name → literal value or a description of its source, envFrom first."""
    env: dict[str, object] = {}
    for source in container.get("envFrom") or []:
        prefix = source.get("prefix", "")
        if "configMapRef" in source:
            name = source["configMapRef"]["name"]
            if name not in configmaps:
                fail(where, f"envFrom ConfigMap {name!r} is not in the base")
                continue
            for key, value in (configmaps[name].get("data") or {}).items():
                env[prefix + key] = value
        elif "secretRef" in source:
            fail(where, f"envFrom secretRef {source['secretRef'].get('name')!r}: name secret variables one by one")
    for var in container.get("env") or []:
        if "value" in var:
            env[var["name"]] = var["value"]
        elif "secretKeyRef" in (var.get("valueFrom") or {}):
            ref = var["valueFrom"]["secretKeyRef"]
            env[var["name"]] = ("secret", ref.get("name"), ref.get("key"))
        else:
            env[var["name"]] = ("ref",)
    return env


def check_security(where: str, pod_spec: dict, container: dict, service_accounts: dict) -> None:
    pod_sc = pod_spec.get("securityContext") or {}
    sc = container.get("securityContext") or {}

    def effective(key):
        return sc.get(key, pod_sc.get(key))

    if effective("runAsNonRoot") is not True:
        fail(where, "runAsNonRoot must be true")
    run_as = effective("runAsUser")
    if run_as is not None and run_as == 0:
        fail(where, "runAsUser must not be 0")
    if sc.get("readOnlyRootFilesystem") is not True:
        fail(where, "readOnlyRootFilesystem must be true")
    if sc.get("allowPrivilegeEscalation") is not False:
        fail(where, "allowPrivilegeEscalation must be false")
    if sc.get("privileged"):
        fail(where, "must not be privileged")
    caps = sc.get("capabilities") or {}
    if "ALL" not in (caps.get("drop") or []) or caps.get("add"):
        fail(where, "capabilities must drop ALL and add none")
    if (effective("seccompProfile") or {}).get("type") != "RuntimeDefault":
        fail(where, "seccompProfile must be RuntimeDefault")
    account = pod_spec.get("serviceAccountName")
    if account and account not in service_accounts:
        fail(where, f"serviceAccountName {account!r} is not in the base")
    automount = pod_spec.get("automountServiceAccountToken")
    if automount is None and account in service_accounts:
        automount = service_accounts[account].get("automountServiceAccountToken")
    if automount is not False:
        fail(where, "automountServiceAccountToken must be false")
    if pod_spec.get("enableServiceLinks") is not False:
        fail(where, "enableServiceLinks must be false (a Service named castellan injects CASTELLAN_* variables)")
    if pod_spec.get("hostNetwork") or pod_spec.get("hostPID") or pod_spec.get("hostIPC"):
        fail(where, "must not use the host's network, PID or IPC namespaces")


def check_resources(where: str, container: dict) -> None:
    resources = container.get("resources") or {}
    for resource in ("cpu", "memory"):
        request = parse_quantity((resources.get("requests") or {}).get(resource))
        limit = parse_quantity((resources.get("limits") or {}).get(resource))
        if request is None or limit is None:
            fail(where, f"needs a {resource} request and limit")
        elif limit < request:
            fail(where, f"{resource} limit is below its request")


def check_env(where: str, env: dict, known: set[str]) -> None:
    check_names(where, env, known)
    for name, value in env.items():
        if name.startswith("CASTELLAN_") and value == "":
            fail(where, f"{name} is empty: the server reads an empty value as set (leave it out instead)")
    db = env.get("CASTELLAN_DATABASE_URL")
    if not (isinstance(db, tuple) and db[0] == "secret"):
        fail(where, "CASTELLAN_DATABASE_URL must come from a Secret (secretKeyRef)")
    if env.get("CASTELLAN_LOG_FORMAT") != "json":
        fail(where, "CASTELLAN_LOG_FORMAT must be json")
    for name, value in env.items():
        if (
            name.startswith("CASTELLAN_")
            and "PASSWORD" in name
            and not (isinstance(value, tuple) and value[0] == "secret")
        ):
            fail(where, f"{name} must come from a Secret (secretKeyRef), not a literal or a ConfigMap")


def check_probe(where: str, name: str, probe: dict | None) -> None:
    if not probe:
        fail(where, f"needs a {name}")
        return
    handlers = [h for h in ("grpc", "httpGet", "tcpSocket", "exec") if h in probe]
    if handlers != ["grpc"]:
        fail(where, f"{name} must be a grpc: probe (found {handlers or 'none'})")
    elif probe["grpc"].get("port") != GRPC_PORT:
        fail(where, f"{name} must probe gRPC port {GRPC_PORT}, not {probe['grpc'].get('port')}")


def check_server(deploy: dict, env: dict, container: dict, pod_spec: dict) -> None:
    where = f"{kn(deploy)} container {container['name']}"
    labels = pod_template(deploy).get("metadata", {}).get("labels") or {}
    selector = deploy["spec"].get("selector") or {}
    if not selector.get("matchLabels") or not selects(selector, labels):
        fail(kn(deploy), f"selector {selector} does not match its template labels {labels}")
    if (deploy["spec"].get("replicas") or 1) < 2:
        fail(kn(deploy), "needs at least 2 replicas")
    if container.get("args", ["serve"])[:1] not in (["serve"], []) or container.get("command"):
        fail(where, "must run the image's entrypoint with `serve`")
    for name in ("startupProbe", "readinessProbe", "livenessProbe"):
        check_probe(where, name, container.get(name))
    ports = {p.get("containerPort"): p for p in container.get("ports") or []}
    for port, name in ((GRPC_PORT, "grpc"), (HTTP_PORT, "http")):
        if port not in ports:
            fail(where, f"must declare containerPort {port}")
        elif ports[port].get("name") != name:
            fail(where, f"containerPort {port} should be named {name!r}")
    if port_of(str(env.get("CASTELLAN_GRPC_ADDR", f"0.0.0.0:{GRPC_PORT}"))) != GRPC_PORT:
        fail(where, f"CASTELLAN_GRPC_ADDR must listen on {GRPC_PORT} (the probes and Service use it)")
    if port_of(str(env.get("CASTELLAN_HTTP_ADDR", f"0.0.0.0:{HTTP_PORT}"))) != HTTP_PORT:
        fail(where, f"CASTELLAN_HTTP_ADDR must listen on {HTTP_PORT}")
    if env.get("CASTELLAN_NO_MIGRATE") != "true":
        fail(where, 'CASTELLAN_NO_MIGRATE must be "true" (the migration Job migrates; clap accepts only true/false)')

    grace = parse_duration(str(env.get("CASTELLAN_SHUTDOWN_GRACE", "30s")))
    if grace is None:
        fail(where, f"CASTELLAN_SHUTDOWN_GRACE {env.get('CASTELLAN_SHUTDOWN_GRACE')!r} is not a duration like 30s")
    else:
        pre_stop = ((container.get("lifecycle") or {}).get("preStop") or {}).get("sleep", {}).get("seconds", 0)
        period = pod_spec.get("terminationGracePeriodSeconds", 30)
        if period <= grace + pre_stop:
            fail(
                kn(deploy),
                f"terminationGracePeriodSeconds {period} must exceed CASTELLAN_SHUTDOWN_GRACE ({grace:g}s)"
                f" + preStop sleep ({pre_stop}s)",
            )

    key_file = env.get("CASTELLAN_SIGNING_KEY_FILE")
    if not isinstance(key_file, str) or not key_file:
        fail(where, "CASTELLAN_SIGNING_KEY_FILE must name the mounted signing key (else each pod generates its own)")
    else:
        volumes = {v["name"]: v for v in pod_spec.get("volumes") or []}
        mounts = [
            m for m in container.get("volumeMounts") or [] if key_file.startswith(m["mountPath"].rstrip("/") + "/")
        ]
        if not mounts:
            fail(where, f"CASTELLAN_SIGNING_KEY_FILE {key_file} is not under a volumeMount")
        else:
            mount = mounts[0]
            secret = (volumes.get(mount["name"]) or {}).get("secret")
            if not secret:
                fail(where, f"the volume holding {key_file} must be a Secret")
            else:
                relative = key_file[len(mount["mountPath"].rstrip("/")) + 1 :]
                items = secret.get("items")
                if items and relative not in [i["path"] for i in items]:
                    fail(where, f"{key_file}: no item of Secret {secret.get('secretName')} has path {relative!r}")
            if mount.get("readOnly") is not True:
                fail(where, f"the signing key mount {mount['mountPath']} must be readOnly")


def check_job(job: dict, container: dict) -> None:
    where = f"{kn(job)} container {container['name']}"
    if container.get("args") != ["migrate"] or container.get("command"):
        fail(where, "the migration Job must run `castellan migrate` (args: [migrate])")
    if pod_template(job).get("spec", {}).get("restartPolicy") not in ("Never", "OnFailure"):
        fail(kn(job), "restartPolicy must be Never or OnFailure")


# --- 2. the objects around the server ----------------------------------------------


def check_selectors(documents: list[dict], server: dict, others: list[dict], smtp: int | None) -> None:
    server_labels = pod_template(server).get("metadata", {}).get("labels") or {}
    other_labels = [(kn(o), pod_template(o).get("metadata", {}).get("labels") or {}) for o in others]
    seen = set()
    for doc in documents:
        kind = doc["kind"]
        if kind == "Service":
            selector = doc["spec"].get("selector") or {}
            where = kn(doc)
            if not selector or not selects({"matchLabels": selector}, server_labels):
                fail(where, f"selector {selector} does not select the pods of {kn(server)}")
            for name, labels in other_labels:
                if selects({"matchLabels": selector}, labels):
                    fail(where, f"selector {selector} also selects the pods of {name}")
            ports = {p.get("port"): p for p in doc["spec"].get("ports") or []}
            container_ports = {
                p.get("name"): p.get("containerPort")
                for c in pod_template(server)["spec"]["containers"]
                for p in c.get("ports") or []
            }
            if GRPC_PORT not in ports:
                fail(where, f"must expose gRPC port {GRPC_PORT}")
            if doc["spec"].get("clusterIP") != "None" and HTTP_PORT not in ports:
                fail(where, f"must expose HTTP port {HTTP_PORT}")
            for port in ports.values():
                if not port.get("appProtocol"):
                    fail(where, f"port {port.get('name')} needs an appProtocol")
                target = port.get("targetPort", port.get("port"))
                if isinstance(target, str) and target not in container_ports:
                    fail(where, f"targetPort {target!r} is not a named port of {kn(server)}")
            seen.add(kind)
        elif kind == "PodDisruptionBudget":
            selector = doc["spec"].get("selector")
            if not selects(selector, server_labels):
                fail(kn(doc), f"selector {selector} does not select the pods of {kn(server)}")
            for name, labels in other_labels:
                if selects(selector, labels):
                    fail(kn(doc), f"selector {selector} also selects the pods of {name}")
            seen.add(kind)
        elif kind == "NetworkPolicy":
            selector = doc["spec"].get("podSelector")
            if not selects(selector, server_labels):
                fail(kn(doc), f"podSelector {selector} does not select the pods of {kn(server)}")
            check_network_policy(doc, smtp)
            seen.add(kind)
        elif kind == "HorizontalPodAutoscaler":
            target = doc["spec"].get("scaleTargetRef") or {}
            if (target.get("kind"), target.get("name")) != ("Deployment", server["metadata"]["name"]):
                fail(kn(doc), f"scaleTargetRef must be {kn(server)}")
            metrics = doc["spec"].get("metrics") or []
            if not any(m.get("type") == "Resource" and m["resource"].get("name") == "cpu" for m in metrics):
                fail(kn(doc), "must scale on CPU")
            if doc["spec"].get("minReplicas", 1) > doc["spec"].get("maxReplicas", 0):
                fail(kn(doc), "minReplicas exceeds maxReplicas")
            seen.add(kind)
    for kind in ("Service", "PodDisruptionBudget", "NetworkPolicy", "HorizontalPodAutoscaler"):
        if kind not in seen:
            fail("base", f"has no {kind}")


def rule_ports(rules: list[dict]) -> set[tuple[int, str]]:
    ports = set()
    for rule in rules or []:
        if not rule.get("ports"):
            ports.add((0, "any"))
        for port in rule.get("ports") or []:
            ports.add((port.get("port", 0), port.get("protocol", "TCP")))
    return ports


def smtp_port(env: dict) -> int | None:
    """The SMTP port the server delivers mail to, None with the log mailer.

    CASTELLAN_SMTP_PORT, or its default in src/config.rs when not set."""
    if env.get("CASTELLAN_MAILER") != "smtp":
        return None
    port = env.get("CASTELLAN_SMTP_PORT")
    if port is None:
        match = re.search(r'env\s*=\s*"CASTELLAN_SMTP_PORT",\s*default_value_t\s*=\s*(\d+)', CONFIG_RS.read_text())
        if not match:
            raise SystemExit(f"check_manifests.py: no default for CASTELLAN_SMTP_PORT found in {CONFIG_RS}")
        return int(match.group(1))
    if not str(port).isdigit():
        fail("server", f"CASTELLAN_SMTP_PORT {port!r} is not a port number")
        return None
    return int(port)


def check_network_policy(doc: dict, smtp: int | None) -> None:
    """Ingress to gRPC and HTTP only; egress to PostgreSQL, DNS and, when the
    server sends mail over SMTP, the SMTP port it is configured with, only."""
    where = kn(doc)
    spec = doc["spec"]
    if set(spec.get("policyTypes") or []) != {"Ingress", "Egress"}:
        fail(where, "policyTypes must be Ingress and Egress")
    ingress = rule_ports(spec.get("ingress"))
    if ingress != {(GRPC_PORT, "TCP"), (HTTP_PORT, "TCP")}:
        fail(where, f"ingress must allow exactly TCP {GRPC_PORT} and {HTTP_PORT}, found {sorted(ingress)}")
    egress = rule_ports(spec.get("egress"))
    required = {(POSTGRES_PORT, "TCP"), (DNS_PORT, "UDP")}
    allowed = required | {(DNS_PORT, "TCP")}
    needs = f"PostgreSQL (TCP {POSTGRES_PORT}) and DNS (53)"
    if smtp is not None:
        required.add((smtp, "TCP"))
        allowed.add((smtp, "TCP"))
        needs += f" and SMTP (TCP {smtp}, CASTELLAN_MAILER=smtp)"
    if not egress <= allowed or not required <= egress:
        fail(where, f"egress must allow {needs} only, found {sorted(egress)}")


def check_kubernetes(documents: list[dict], known: set[str]) -> None:
    by_kind: dict[str, list[dict]] = {}
    for doc in documents:
        by_kind.setdefault(doc["kind"], []).append(doc)
    configmaps = {d["metadata"]["name"]: d for d in by_kind.get("ConfigMap", [])}
    service_accounts = {d["metadata"]["name"]: d for d in by_kind.get("ServiceAccount", [])}
    for secret in by_kind.get("Secret", []):
        if secret.get("data") or secret.get("stringData"):
            fail(kn(secret), "the base holds no Secret values: create Secrets out of band (deploy/README.md)")
    for account in service_accounts.values():
        if account.get("automountServiceAccountToken") is not False:
            fail(kn(account), "automountServiceAccountToken must be false")
    for configmap in configmaps.values():
        check_names(kn(configmap), configmap.get("data") or {}, known)

    deployments = by_kind.get("Deployment", [])
    jobs = by_kind.get("Job", [])
    if len(deployments) != 1:
        fail("base", f"expected one Deployment, found {len(deployments)}")
        return
    if len(jobs) != 1:
        fail("base", f"expected one migration Job, found {len(jobs)}")
    smtp = None
    for workload in deployments + jobs:
        pod_spec = pod_template(workload).get("spec") or {}
        for container in (pod_spec.get("initContainers") or []) + (pod_spec.get("containers") or []):
            where = f"{kn(workload)} container {container['name']}"
            env = resolved_env(pod_spec, container, configmaps, where)
            check_env(where, env, known)
            check_security(where, pod_spec, container, service_accounts)
            check_resources(where, container)
            if workload["kind"] == "Deployment":
                check_server(workload, env, container, pod_spec)
                smtp = smtp or smtp_port(env)
            else:
                check_job(workload, container)
    check_selectors(documents, deployments[0], jobs, smtp)


# --- 2. compose and Dockerfile ----------------------------------------------------


def compose_env(service: dict) -> dict:
    env = service.get("environment") or {}
    if isinstance(env, list):
        pairs = {}
        for item in env:
            name, sep, value = str(item).partition("=")
            pairs[name] = value if sep else None
        return pairs
    return dict(env)


def check_compose(known: set[str], k8s_names: set[str]) -> None:
    where = "deploy/compose.yaml"
    try:
        compose = yaml.safe_load(COMPOSE.read_text())
    except FileNotFoundError:
        fail(where, "missing")
        return
    except yaml.YAMLError as error:
        fail(where, f"not valid YAML: {error}")
        return
    services = (compose or {}).get("services") or {}
    for name in ("postgres", "migrate", "castellan"):
        if name not in services:
            fail(where, f"needs a {name!r} service")
    if any(name not in services for name in ("postgres", "migrate", "castellan")):
        return
    if not str(services["postgres"].get("image", "")).startswith("postgres:16"):
        fail(where, "postgres must run PostgreSQL 16 (image postgres:16...)")
    used: set[str] = set()
    for name in ("migrate", "castellan"):
        service = services[name]
        env = compose_env(service)
        used |= set(env)
        check_names(f"{where} service {name}", env, known)
        for var, value in env.items():
            if var.startswith("CASTELLAN_") and value == "":
                fail(f"{where} service {name}", f"{var} is empty: leave the value out (null) to leave it unset")
        if "CASTELLAN_DATABASE_URL" not in env:
            fail(f"{where} service {name}", "needs CASTELLAN_DATABASE_URL")
        build = service.get("build") or {}
        if not build or Path(build.get("dockerfile", "")).name != "Dockerfile":
            fail(f"{where} service {name}", "must be built from deploy/Dockerfile")
    if services["migrate"].get("command") not in (["migrate"], "migrate"):
        fail(where, "the migrate service must run `migrate`")
    server = services["castellan"]
    if str(compose_env(server).get("CASTELLAN_NO_MIGRATE")).lower() != "true":
        fail(where, "castellan must run with CASTELLAN_NO_MIGRATE=true (the migrate service migrates)")
    depends = server.get("depends_on") or {}
    if (depends.get("migrate") or {}).get("condition") != "service_completed_successfully":
        fail(where, "castellan must depend on migrate with condition service_completed_successfully")
    if (depends.get("postgres") or {}).get("condition") != "service_healthy":
        fail(where, "castellan must depend on postgres with condition service_healthy")
    if ((services["migrate"].get("depends_on") or {}).get("postgres") or {}).get("condition") != "service_healthy":
        fail(where, "migrate must depend on postgres with condition service_healthy")
    for name in ("postgres", "castellan"):
        if not (services[name].get("healthcheck") or {}).get("test"):
            fail(where, f"{name} needs a healthcheck")
    # Production-only settings (mail delivery, login throttling) keep their
    # development defaults in compose: the log mailer, the default limits.
    optional = ("CASTELLAN_SIGNING_KEY_FILE", "CASTELLAN_SHUTDOWN_GRACE", "CASTELLAN_PUBLIC_URL", "CASTELLAN_MAILER")
    optional_prefixes = ("CASTELLAN_SMTP_", "CASTELLAN_LOGIN_")
    missing = sorted(n for n in k8s_names - used if n not in optional and not n.startswith(optional_prefixes))
    if missing:
        fail(where, f"does not set {', '.join(missing)}, which the Kubernetes base sets")


def check_dockerfile(known: set[str]) -> None:
    where = "deploy/Dockerfile"
    try:
        text = DOCKERFILE.read_text()
    except FileNotFoundError:
        fail(where, "missing")
        return
    lines = re.sub(r"\\\n", " ", text).splitlines()
    instructions = [l.strip() for l in lines if l.strip() and not l.lstrip().startswith("#")]
    env_names = set()
    for line in instructions:
        if line.upper().startswith("ENV "):
            env_names |= set(re.findall(r"([A-Za-z_][A-Za-z0-9_]*)=", line[4:]))
    check_names(where, env_names, known)
    for line in instructions:
        if line.upper().startswith("COPY ") and "--from=" not in line:
            for source in line.split()[1:-1]:
                if not source.startswith("--") and not (ROOT / source).exists():
                    fail(where, f"COPY source {source} does not exist in the repository")
    last_stage = max(i for i, l in enumerate(instructions) if l.upper().startswith("FROM "))
    final = instructions[last_stage:]
    users = [l.split()[1] for l in final if l.upper().startswith("USER ")]
    if not users or users[-1].split(":")[0] in ("0", "root"):
        fail(where, "the final stage must set a non-root USER")
    elif not users[-1].split(":")[0].isdigit():
        fail(where, "USER must be numeric so Kubernetes can verify runAsNonRoot")
    exposed = {p for l in final if l.upper().startswith("EXPOSE ") for p in l.split()[1:]}
    if not {str(GRPC_PORT), str(HTTP_PORT)} <= exposed:
        fail(where, f"must EXPOSE {GRPC_PORT} and {HTTP_PORT}")
    if 'ENTRYPOINT ["/usr/local/bin/castellan"]' not in final:
        fail(where, 'ENTRYPOINT must be ["/usr/local/bin/castellan"]')
    if 'CMD ["serve"]' not in final:
        fail(where, 'CMD must be ["serve"]')
    if not any(re.match(r"ENV\s+GLIBC_TUNABLES=\S*glibc\.malloc\.mmap_threshold=", l) for l in final):
        fail(where, "the runtime stage must keep GLIBC_TUNABLES=glibc.malloc.mmap_threshold=... (README, Sizing)")
    if not re.search(r"cargo build --release --locked", text):
        fail(where, "must build with `cargo build --release --locked`")


def main(argv: list[str]) -> int:
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    rendered, versions = Path(argv[1]), argv[2:]
    documents = [d for d in yaml.safe_load_all(rendered.read_text()) if d]
    known = config_env_names()
    check_schemas(documents, versions)
    # The checks below assume schema-valid objects: report schema errors alone.
    if not failures:
        try:
            check_kubernetes(documents, known)
            k8s_names = set()
            configmaps = {d["metadata"]["name"]: d for d in documents if d["kind"] == "ConfigMap"}
            for doc in documents:
                if doc["kind"] == "Deployment":
                    for container in pod_template(doc)["spec"]["containers"]:
                        env = resolved_env({}, container, configmaps, kn(doc))
                        k8s_names |= {n for n in env if n.startswith("CASTELLAN_")}
            check_compose(known, k8s_names)
            check_dockerfile(known)
        except (KeyError, TypeError, AttributeError, ValueError) as error:
            fail("check_manifests.py", f"an object or file has an unexpected shape: {error!r}")
    if failures:
        for failure in failures:
            print(f"FAIL {failure}", file=sys.stderr)
        print(f"check_manifests.py: {len(failures)} problem(s)", file=sys.stderr)
        return 1
    kinds = ", ".join(sorted({d["kind"] for d in documents}))
    print(
        f"check_manifests.py: {len(documents)} objects ({kinds}) valid against Kubernetes "
        f"{', '.join(versions)} (strict); {len(known)} CASTELLAN_* names from src/config.rs; "
        "compose.yaml and Dockerfile consistent"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
