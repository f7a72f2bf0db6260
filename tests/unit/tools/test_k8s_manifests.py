"""The Kubernetes manifests (deploy/k8s) rendered with the real kustomize and checked offline.

The kustomization is rendered the way ``kubectl apply -k`` would (``kustomize build``, or
kubectl's built-in ``kubectl kustomize``; scripts/setup.sh builds a pinned kustomize when neither
is on the machine, and this test fails rather than skips without one). Then:

- every object is validated against the Kubernetes API's JSON schemas (kubernetes-validate, strict:
  an unknown field is an error, as with ``kubectl apply --validate=strict``) for the oldest and the
  newest Kubernetes version it ships, and the ScaledObject against KEDA's ScaledObject schema
  (tests/schemas/keda-scaledobject-v1alpha1.schema.yaml);
- the manifests are compared with the code, as test_deployment_files.py does for compose: every
  ``TANGO_*`` variable is a real setting and parses, each container runs a real ``tango``
  subcommand, the grace period outlasts ``shutdown_timeout_s``, the probes and the Prometheus
  annotations use ``metrics_port``, the ScaledObject scales the teacher Deployment on the
  teacher group's lag up to ``teacher_partitions``, each PodDisruptionBudget and Service selects
  its Deployment's pods, and the pods run as the image's non-root user with the writable paths
  the app needs on emptyDirs.

Each ``check_*`` returns a list of problems (empty when all is well); the tests at the end feed
them broken copies of the rendered objects to show that they do report problems.
"""

from __future__ import annotations

import copy
import functools
import os
import re
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest

yaml = pytest.importorskip("yaml")

import jsonschema  # noqa: E402
import kubernetes_validate  # noqa: E402
from deployment_checks import (  # noqa: E402  (tests/unit/tools/deployment_checks.py)
    BUNDLES_MOUNT,
    ROOT,
    check_command,
    check_tango_variables,
    dockerfile_instructions,
)
from kubernetes_validate import utils as kv_utils  # noqa: E402
from packaging.version import Version  # noqa: E402
from referencing import Registry, Resource  # noqa: E402

from stream_app.settings import Settings, env_name, setting_names  # noqa: E402
from stream_app.tools.cli import build_parser  # noqa: E402

K8S_DIR = ROOT / "deploy" / "k8s"
KEDA_SCHEMA = ROOT / "tests" / "schemas" / "keda-scaledobject-v1alpha1.schema.yaml"
OLDEST_KUBERNETES = "1.29"  # the oldest Kubernetes the manifests are validated for (docs/kubernetes.md)
GRACE_MARGIN_S = 5  # terminationGracePeriodSeconds must exceed shutdown_timeout_s by at least this
DEFAULT_GRACE_S = 30  # Kubernetes' default terminationGracePeriodSeconds


# ----------------------------------------------------------------------------- rendering
def renderer() -> list[str] | None:
    """The kustomize command line to render a directory with, or None."""
    pinned = ROOT / ".venv" / "bin" / "kustomize"  # what scripts/setup.sh builds when nothing else is there
    if pinned.exists():
        return [str(pinned), "build"]
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    return None


def render(directory: Path = K8S_DIR) -> list[dict]:
    command = renderer()
    if command is None:
        pytest.fail("no kustomize: neither .venv/bin/kustomize, kustomize nor kubectl is on this machine; "
                    "run scripts/setup.sh (it builds kustomize with Go)")
    done = subprocess.run([*command, str(directory)], capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        pytest.fail(f"`{' '.join(command)} {directory}` failed ({done.returncode}): {done.stderr.strip()}")
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def objects_of(objects: Iterable[Mapping], kind: str) -> dict[str, Mapping]:
    return {o["metadata"]["name"]: o for o in objects if o.get("kind") == kind}


def where(obj: Mapping) -> str:
    return f"{obj.get('kind')} {obj.get('metadata', {}).get('name')}"


# ------------------------------------------------------------------------------- schemas
def kubernetes_versions() -> tuple[str, str]:
    versions = kv_utils.all_versions()
    if Version(versions[0]) > Version(OLDEST_KUBERNETES + ".0"):
        pytest.fail(f"kubernetes-validate no longer ships Kubernetes {OLDEST_KUBERNETES}; raise OLDEST_KUBERNETES")
    return OLDEST_KUBERNETES, kv_utils.major_minor(versions[-1])


@functools.cache
def keda_validator() -> jsonschema.protocols.Validator:
    """KEDA's ScaledObject schema, its $refs to Kubernetes types resolved from kubernetes-validate's schemas."""
    schema = yaml.safe_load(KEDA_SCHEMA.read_text())
    latest = kv_utils.all_versions()[-1]
    definitions = kv_utils.schema_contents(f"kubernetes-json-schema/v{latest}-local-strict/_definitions.json", latest)
    registry = Registry().with_resources([(definitions["$id"], Resource.from_contents(definitions))])
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema, registry=registry)


def check_schemas(objects: Iterable[Mapping]) -> list[str]:
    problems = []
    for obj in objects:
        if (obj.get("apiVersion"), obj.get("kind")) == ("keda.sh/v1alpha1", "ScaledObject"):
            for error in sorted(keda_validator().iter_errors(obj), key=lambda e: list(e.path)):
                problems.append(f"{where(obj)} (KEDA schema): {'.'.join(map(str, error.path)) or '.'}: {error.message}")
            continue
        for version in kubernetes_versions():
            try:
                kubernetes_validate.validate(dict(obj), version, strict=True)
            except kubernetes_validate.ValidationError as error:
                problems.append(f"{where(obj)} (Kubernetes {version}): {'.'.join(map(str, error.path)) or '.'}: {error.message}")
            except kv_utils.SchemaNotFoundError as error:
                problems.append(f"{where(obj)}: no schema to validate it against ({error.message})")
    return problems


# ---------------------------------------------------------------------- pods and their env
def deployments(objects: Iterable[Mapping]) -> dict[str, Mapping]:
    return objects_of(objects, "Deployment")


def pod_spec(deployment: Mapping) -> Mapping:
    return deployment["spec"]["template"]["spec"]


def pod_labels(deployment: Mapping) -> dict[str, str]:
    return dict(deployment["spec"]["template"]["metadata"].get("labels") or {})


def containers(objects: Iterable[Mapping]) -> list[tuple[str, Mapping, Mapping]]:
    """(where, deployment, container) for every container of every Deployment."""
    return [(f"Deployment {name}/{c['name']}", d, c) for name, d in deployments(objects).items()
            for c in pod_spec(d).get("containers", [])]


def role(container: Mapping) -> str:
    """The tango subcommand a container runs (stream, teacher, ...)."""
    return str((container.get("args") or [""])[0])


def environment(container: Mapping, objects: Iterable[Mapping]) -> tuple[dict[str, str | None], list[str]]:
    """A container's environment: its envFrom ConfigMaps, then its env (valueFrom entries as None)."""
    configmaps = objects_of(objects, "ConfigMap")
    env: dict[str, str | None] = {}
    problems = []
    for source in container.get("envFrom") or []:
        ref = source.get("configMapRef")
        if ref is None:
            continue  # a Secret: values unknown here
        if ref["name"] not in configmaps:
            problems.append(f"envFrom names ConfigMap {ref['name']!r}, which the kustomization does not make")
            continue
        env.update({source.get("prefix", "") + k: str(v) for k, v in (configmaps[ref["name"]].get("data") or {}).items()})
    for item in container.get("env") or []:
        env[item["name"]] = str(item["value"]) if "value" in item else None
    return env, problems


def settings_of(container: Mapping, objects: Iterable[Mapping]) -> Settings:
    env, _ = environment(container, objects)
    return Settings.from_env(environ={k: v for k, v in env.items() if v is not None and k.startswith("TANGO_")})


def selects(selector: Mapping, labels: Mapping[str, str]) -> bool:
    """Whether a LabelSelector (matchLabels and matchExpressions) selects pods with these labels."""
    if not selector.get("matchLabels") and not selector.get("matchExpressions"):
        return False  # an empty selector is no way to name one Deployment's pods
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        ok = {"In": labels.get(key) in values, "NotIn": labels.get(key) not in values,
              "Exists": key in labels, "DoesNotExist": key not in labels}[op]
        if not ok:
            return False
    return True


_QUANTITY = re.compile(r"^([0-9.]+)(m|k|Ki|M|Mi|G|Gi|T|Ti)?$")
_UNITS = {None: 1, "m": 1e-3, "k": 1e3, "Ki": 2**10, "M": 1e6, "Mi": 2**20, "G": 1e9, "Gi": 2**30, "T": 1e12, "Ti": 2**40}


def quantity(value: Any) -> float:
    match = _QUANTITY.match(str(value))
    if not match:
        raise ValueError(f"not a quantity: {value!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


# ------------------------------------------------------------------------------- checks
def check_environment(objects: list[Mapping]) -> list[str]:
    """Every TANGO_* variable of the ConfigMaps and of each container's environment is a setting and parses."""
    problems = []
    for name, cm in objects_of(objects, "ConfigMap").items():
        data = {str(k): str(v) for k, v in (cm.get("data") or {}).items()}
        problems += check_tango_variables(data, f"ConfigMap {name}")
        for key, value in data.items():
            if " #" in value or value != value.strip():
                problems.append(f"ConfigMap {name}: {key}={value!r}: a comment or blank after the value (tango.env)")
    for place, _, container in containers(objects):
        env, env_problems = environment(container, objects)
        problems += [f"{place}: {p}" for p in env_problems]
        problems += check_tango_variables(env, place)
    return problems


def check_commands(objects: list[Mapping], parser=None) -> list[str]:
    """Each container keeps the image's ENTRYPOINT (tango) and runs a real subcommand."""
    parser = parser or build_parser()
    problems = []
    for place, _, container in containers(objects):
        if container.get("command") not in (None, ["tango"]):
            problems.append(f"{place}: command {container['command']!r} replaces the image's ENTRYPOINT (tango); use args")
        problems += check_command(container.get("args") or [], place, parser)
    return problems


def check_grace(objects: list[Mapping]) -> list[str]:
    """The kubelet waits longer after SIGTERM than a worker takes to finish its batch and commit."""
    problems = []
    for place, deployment, container in containers(objects):
        grace = pod_spec(deployment).get("terminationGracePeriodSeconds", DEFAULT_GRACE_S)
        shutdown = settings_of(container, objects).shutdown_timeout_s
        if not grace >= shutdown + GRACE_MARGIN_S:
            problems.append(f"{place}: terminationGracePeriodSeconds {grace} is not at least "
                            f"shutdown_timeout_s {shutdown:g} + {GRACE_MARGIN_S} s")
    return problems


def check_probes(objects: list[Mapping]) -> list[str]:
    """Probes on /livez and /readyz, and the Prometheus annotations, at metrics_port."""
    problems = []
    for place, deployment, container in containers(objects):
        port = settings_of(container, objects).metrics_port
        if port == 0:
            problems.append(f"{place}: TANGO_METRICS_PORT is 0: no /metrics, /livez or /readyz to probe")
            continue
        named = {p.get("name"): p.get("containerPort") for p in container.get("ports") or []}
        if named.get("metrics") != port:
            problems.append(f"{place}: no container port named metrics at TANGO_METRICS_PORT {port} (have {named})")
        for probe, path, required in (("livenessProbe", "/livez", True), ("readinessProbe", "/readyz", True),
                                      ("startupProbe", "/livez", False)):
            get = (container.get(probe) or {}).get("httpGet")
            if get is None:
                if required or probe in container:
                    problems.append(f"{place}: {probe} should be an httpGet on {path}")
                continue
            if get.get("path") != path:
                problems.append(f"{place}: {probe} asks {get.get('path')!r}, not {path}")
            if get.get("port") not in ("metrics", port):
                problems.append(f"{place}: {probe} asks port {get.get('port')!r}, not metrics ({port})")
        annotations = deployment["spec"]["template"]["metadata"].get("annotations") or {}
        want = {"prometheus.io/scrape": "true", "prometheus.io/port": str(port), "prometheus.io/path": "/metrics"}
        for key, value in want.items():
            if annotations.get(key) != value:
                problems.append(f"{place}: pod annotation {key} is {annotations.get(key)!r}, not {value!r}")
    return problems


def check_scaled_object(objects: list[Mapping]) -> list[str]:
    """KEDA scales the teacher Deployment on its group's lag on the teacher topic, up to its partitions."""
    scaled = objects_of(objects, "ScaledObject")
    if len(scaled) != 1:
        return [f"want one ScaledObject, found {sorted(scaled)}"]
    (name, so), = scaled.items()
    spec, problems = so["spec"], []
    ref = spec.get("scaleTargetRef") or {}
    if (ref.get("kind", "Deployment"), ref.get("apiVersion", "apps/v1")) != ("Deployment", "apps/v1"):
        problems.append(f"ScaledObject {name}: scales a {ref.get('kind')}, not a Deployment")
    target = deployments(objects).get(ref.get("name"))
    if target is None:
        return problems + [f"ScaledObject {name}: scaleTargetRef {ref.get('name')!r} is no Deployment of the kustomization"]
    teachers = [c for c in pod_spec(target)["containers"] if role(c) == "teacher"]
    if not teachers:
        return problems + [f"ScaledObject {name}: its target {ref['name']} runs no `tango teacher`"]
    settings = settings_of(teachers[0], objects)
    if "replicas" in target["spec"]:
        problems.append(f"Deployment {ref['name']}: sets replicas, which KEDA's HPA owns (reset on every apply)")
    low, high = spec.get("minReplicaCount", 0), spec.get("maxReplicaCount", 100)
    if high != settings.teacher_partitions:
        problems.append(f"ScaledObject {name}: maxReplicaCount {high} != TANGO_TEACHER_PARTITIONS {settings.teacher_partitions}")
    if not 1 <= low <= high:
        problems.append(f"ScaledObject {name}: want 1 <= minReplicaCount ({low}) <= maxReplicaCount ({high})")
    kafka = [t for t in spec.get("triggers") or [] if t.get("type") == "kafka"]
    if len(kafka) != 1:
        return problems + [f"ScaledObject {name}: want one kafka trigger, found {len(kafka)}"]
    meta = kafka[0].get("metadata") or {}
    want = {"topic": settings.teacher_topic, "consumerGroup": settings.teacher_group,
            "bootstrapServers": settings.bootstrap_servers,
            "allowIdleConsumers": "false",  # so KEDA never asks for more replicas than partitions
            "offsetResetPolicy": "earliest"}  # the teacher consumer's auto_offset_reset
    for key, value in want.items():
        if str(meta.get(key, "")).lower() != value.lower():
            problems.append(f"ScaledObject {name}: kafka trigger {key} is {meta.get(key)!r}, want {value!r}")
    if not str(meta.get("lagThreshold", "")).isdigit() or int(meta["lagThreshold"]) < 1:
        problems.append(f"ScaledObject {name}: lagThreshold {meta.get('lagThreshold')!r} is not a positive integer")
    return problems


def check_disruption_budgets(objects: list[Mapping]) -> list[str]:
    """Each Deployment's pods are selected by exactly one PodDisruptionBudget, which never blocks a drain."""
    problems = []
    pdbs = objects_of(objects, "PodDisruptionBudget")
    for name, deployment in deployments(objects).items():
        mine = [p for p, pdb in pdbs.items() if selects(pdb["spec"].get("selector") or {}, pod_labels(deployment))]
        if len(mine) != 1:
            problems.append(f"Deployment {name}: selected by {len(mine)} PodDisruptionBudgets ({mine}), want 1")
    for p, pdb in pdbs.items():
        if not any(selects(pdb["spec"].get("selector") or {}, pod_labels(d)) for d in deployments(objects).values()):
            problems.append(f"PodDisruptionBudget {p}: selects no Deployment's pods")
        if "maxUnavailable" not in pdb["spec"]:
            problems.append(f"PodDisruptionBudget {p}: use maxUnavailable (minAvailable blocks drains at one replica)")
    return problems


def check_services(objects: list[Mapping]) -> list[str]:
    """A metrics Service per Deployment, and no Service that would inject a TANGO_* variable."""
    problems = []
    services = objects_of(objects, "Service")
    settings_env = {env_name(n) for n in setting_names()}
    for name, deployment in deployments(objects).items():
        mine = [s for s, svc in services.items() if selects({"matchLabels": svc["spec"].get("selector")}, pod_labels(deployment))]
        ports = [p for s in mine for p in services[s]["spec"].get("ports", [])]
        if not any(p.get("targetPort") == "metrics" for p in ports):
            problems.append(f"Deployment {name}: no Service with a port to its metrics port")
        if pod_spec(deployment).get("enableServiceLinks", True):
            problems.append(f"Deployment {name}: enableServiceLinks should be false (Services inject *_PORT variables)")
    for name in services:
        prefix = name.upper().replace("-", "_")
        for variable in (f"{prefix}_SERVICE_HOST", f"{prefix}_SERVICE_PORT", f"{prefix}_PORT"):
            if variable in settings_env:
                problems.append(f"Service {name}: its service link variable {variable} is a setting")
    return problems


def image_uid() -> int:
    """The uid the Dockerfile gives the image's user (useradd --uid N)."""
    for keyword, args in dockerfile_instructions((ROOT / "Dockerfile").read_text()):
        if keyword == "RUN" and (match := re.search(r"useradd\b.*?--uid[= ](\d+)", args)):
            return int(match.group(1))
    raise AssertionError("the Dockerfile creates no user with --uid")


def mount_of(path: str, mounts: list[Mapping]) -> Mapping | None:
    """The volume mount ``path`` lies on (the longest matching mountPath)."""
    found = [m for m in mounts if path == m["mountPath"] or path.startswith(m["mountPath"].rstrip("/") + "/")]
    return max(found, key=lambda m: len(m["mountPath"]), default=None)


def check_pod_security(objects: list[Mapping], uid: int) -> list[str]:
    """Non-root as the image's user, read-only root filesystem, and the paths the app writes on emptyDirs."""
    problems = []
    claims = set(objects_of(objects, "PersistentVolumeClaim"))
    for place, deployment, container in containers(objects):
        pod = pod_spec(deployment)
        security = pod.get("securityContext") or {}
        if security.get("runAsNonRoot") is not True or security.get("runAsUser") != uid:
            problems.append(f"{place}: pod should set runAsNonRoot and runAsUser {uid} (the Dockerfile's user)")
        own = container.get("securityContext") or {}
        if own.get("readOnlyRootFilesystem") is not True or own.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{place}: should set readOnlyRootFilesystem: true and allowPrivilegeEscalation: false")
        if "ALL" not in ((own.get("capabilities") or {}).get("drop") or []):
            problems.append(f"{place}: should drop ALL capabilities")
        volumes = {v["name"]: v for v in pod.get("volumes") or []}
        mounts = container.get("volumeMounts") or []
        settings = settings_of(container, objects)
        writable = ["/tmp"] + ([settings.data_dir] if role(container) == "stream" else [])
        for path in writable:
            mount = mount_of(path, mounts)
            if mount is None or mount.get("readOnly") or "emptyDir" not in volumes.get(mount["name"], {}):
                problems.append(f"{place}: {path} must be on a writable emptyDir (the root filesystem is read-only)")
        mount = mount_of(settings.bundle, mounts)
        claim = (volumes.get(mount["name"], {}) if mount else {}).get("persistentVolumeClaim") or {}
        if not settings.bundle.startswith(BUNDLES_MOUNT + "/") or mount is None or not mount.get("readOnly"):
            problems.append(f"{place}: TANGO_BUNDLE {settings.bundle} should be on a read-only mount at {BUNDLES_MOUNT}")
        elif claim.get("claimName") not in claims or not claim.get("readOnly"):
            problems.append(f"{place}: the bundle volume should be a read-only claim of the kustomization's PVC")
    return problems


def check_resources(objects: list[Mapping]) -> list[str]:
    """Requests and limits for CPU and memory; a teacher gets a CPU per torch thread."""
    problems = []
    for place, _, container in containers(objects):
        resources = container.get("resources") or {}
        requests, limits = resources.get("requests") or {}, resources.get("limits") or {}
        for what in ("cpu", "memory"):
            if what not in requests or what not in limits:
                problems.append(f"{place}: needs a {what} request and limit")
            elif quantity(requests[what]) > quantity(limits[what]):
                problems.append(f"{place}: {what} request {requests[what]} is over its limit {limits[what]}")
        threads = settings_of(container, objects).torch_threads
        if role(container) == "teacher" and "cpu" in requests and quantity(requests["cpu"]) < threads:
            problems.append(f"{place}: cpu request {requests['cpu']} is under TANGO_TORCH_THREADS {threads}")
    return problems


def check_stream_replicas(objects: list[Mapping]) -> list[str]:
    problems = []
    for place, deployment, container in containers(objects):
        partitions = settings_of(container, objects).input_partitions
        if role(container) == "stream" and deployment["spec"].get("replicas", 1) > partitions:
            problems.append(f"{place}: {deployment['spec']['replicas']} replicas for {partitions} input partitions")
    return problems


def check_mirrors_compose(objects: list[Mapping], compose_env: Mapping[str, Any]) -> list[str]:
    """The shared ConfigMap has the compose file's shared environment, value for value."""
    problems = []
    for name, cm in objects_of(objects, "ConfigMap").items():
        data = cm.get("data") or {}
        for key, value in compose_env.items():
            if str(data.get(key)) != str(value):
                problems.append(f"ConfigMap {name}: {key} is {data.get(key)!r}, docker-compose.yml has {value!r}")
    return problems


# --------------------------------------------------------------------------------- tests
@pytest.fixture(scope="module")
def rendered() -> list[dict]:
    return render()


def broken(objects: list[dict], kind: str, name: str) -> tuple[list[dict], dict]:
    """A deep copy of the objects, and the copy's object of that kind and name to break."""
    copied = copy.deepcopy(objects)
    return copied, objects_of(copied, kind)[name]


def test_the_kustomization_renders_every_manifest(rendered):
    kustomization = yaml.safe_load((K8S_DIR / "kustomization.yaml").read_text())
    files = {p.name for p in K8S_DIR.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == files, "every manifest in deploy/k8s is a resource, and only those"
    kinds = sorted((o["kind"], o["metadata"]["name"]) for o in rendered)
    want = {"ConfigMap", "Deployment", "PersistentVolumeClaim", "PodDisruptionBudget", "Service", "ScaledObject"}
    assert {k for k, _ in kinds} == want
    assert sorted(deployments(rendered)) == ["tango-stream", "tango-teacher"]
    assert {role(c) for _, _, c in containers(rendered)} == {"stream", "teacher"}


def test_every_object_validates_against_its_schema(rendered):
    assert check_schemas(rendered) == []


def test_tango_variables_are_real_settings(rendered):
    assert check_environment(rendered) == []
    (cm,) = objects_of(rendered, "ConfigMap").values()
    assert cm["data"][env_name("metrics_port")] == "9400"


def test_configmap_mirrors_compose(rendered):
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert check_mirrors_compose(rendered, compose["x-tango-environment"]) == []


def test_containers_run_real_subcommands(rendered):
    assert check_commands(rendered) == []


def test_grace_period_outlasts_shutdown_timeout(rendered):
    assert check_grace(rendered) == []


def test_probes_and_scrape_annotations_use_the_metrics_port(rendered):
    assert check_probes(rendered) == []


def test_keda_scales_the_teacher_on_its_lag_up_to_its_partitions(rendered):
    assert check_scaled_object(rendered) == []


def test_disruption_budgets_and_services_select_their_pods(rendered):
    assert check_disruption_budgets(rendered) == []
    assert check_services(rendered) == []


def test_pods_are_non_root_with_writable_paths_on_empty_dirs(rendered):
    assert check_pod_security(rendered, image_uid()) == []


def test_resources_and_replicas(rendered):
    assert check_resources(rendered) == []
    assert check_stream_replicas(rendered) == []


@pytest.mark.skipif(not os.environ.get("TANGO_KEDA_CRD"), reason="set TANGO_KEDA_CRD to a keda.sh_scaledobjects.yaml to compare")
def test_scaled_object_against_a_real_keda_crd(rendered):
    """Optional: the ScaledObject against a real KEDA CRD's openAPIV3Schema (unknown fields made errors)."""
    crd = yaml.safe_load(Path(os.environ["TANGO_KEDA_CRD"]).read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1"]

    def strict(node):
        if isinstance(node, dict):
            node = {k: strict(v) for k, v in node.items()}
            open_ended = "additionalProperties" in node or node.get("x-kubernetes-preserve-unknown-fields")
            if "properties" in node and not open_ended:
                node["additionalProperties"] = False
            if node.get("properties", {}).keys() >= {"apiVersion", "kind", "metadata"}:
                node["properties"]["metadata"] = {"type": "object"}
        return [strict(v) for v in node] if isinstance(node, list) else node

    validator = jsonschema.Draft202012Validator(strict(version["schema"]["openAPIV3Schema"]))
    (so,) = objects_of(rendered, "ScaledObject").values()
    assert [e.message for e in validator.iter_errors(so)] == []


# ------------------------------------------------------------- the checks can fail (negative)
def test_schema_errors_are_reported(rendered):
    objects, teacher = broken(rendered, "Deployment", "tango-teacher")
    teacher["spec"]["template"]["spec"]["containers"][0]["livenessprobe"] = {"httpGet": {"path": "/livez", "port": 9400}}
    objects_of(objects, "Service")["tango-stream-metrics"]["spec"]["ports"][0]["port"] = "9400"
    so = objects_of(objects, "ScaledObject")["tango-teacher"]
    so["spec"]["maxReplicas"] = 8
    so["spec"]["triggers"][0]["metadata"]["lagThreshold"] = "1e3"
    so["spec"]["triggers"][0]["metadata"]["allowIdleConsumer"] = "false"
    objects.append({"apiVersion": "monitoring.coreos.com/v1", "kind": "PodMonitor", "metadata": {"name": "x"}, "spec": {}})
    problems = check_schemas(objects)
    for needle in ("livenessprobe", "Service tango-stream-metrics", "maxReplicas", "lagThreshold", "allowIdleConsumer",
                   "PodMonitor x: no schema"):
        assert any(needle in p for p in problems), (needle, problems)
    assert any("Kubernetes 1.29" in p for p in problems) and any("KEDA schema" in p for p in problems), problems


def test_bad_variables_and_commands_are_reported(rendered):
    objects, cm = broken(rendered, "ConfigMap", objects_of(rendered, "ConfigMap").popitem()[0])
    cm["data"]["TANGO_NOPE"] = "1"
    cm["data"]["TANGO_LOG_LEVEL"] = "info # chatty"
    container = pod_spec(objects_of(objects, "Deployment")["tango-stream"])["containers"][0]
    container["env"].append({"name": "TANGO_METRICS_PORT", "value": "metrics"})
    container["args"] = ["streams"]
    pod_spec(objects_of(objects, "Deployment")["tango-teacher"])["containers"][0]["command"] = ["python", "-m", "workers"]
    problems = check_environment(objects)
    for needle in ("TANGO_NOPE", "a comment", "Deployment tango-stream/stream: TANGO_METRICS_PORT"):
        assert any(needle in p for p in problems), (needle, problems)
    problems = check_commands(objects)
    assert any("'streams' is not a tango subcommand" in p for p in problems), problems
    assert any("replaces the image's ENTRYPOINT" in p for p in problems), problems


def test_short_grace_and_wrong_probes_are_reported(rendered):
    objects, stream = broken(rendered, "Deployment", "tango-stream")
    stream["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = 12
    container = stream["spec"]["template"]["spec"]["containers"][0]
    container["livenessProbe"]["httpGet"]["path"] = "/healthz"
    container["readinessProbe"]["httpGet"]["port"] = 8080
    stream["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"] = "9401"
    assert any("terminationGracePeriodSeconds 12" in p for p in check_grace(objects))
    problems = check_probes(objects)
    for needle in ("/healthz", "port 8080", "prometheus.io/port"):
        assert any(needle in p for p in problems), (needle, problems)
    teacher = pod_spec(objects_of(objects, "Deployment")["tango-teacher"])["containers"][0]
    del teacher["readinessProbe"]
    teacher["env"].append({"name": "TANGO_METRICS_PORT", "value": "0"})
    assert any("TANGO_METRICS_PORT is 0" in p for p in check_probes(objects))


def test_wrong_scaling_rule_is_reported(rendered):
    objects, so = broken(rendered, "ScaledObject", "tango-teacher")
    so["spec"]["maxReplicaCount"] = 16
    so["spec"]["minReplicaCount"] = 0
    meta = so["spec"]["triggers"][0]["metadata"]
    meta.update(topic="teacher.shadow", consumerGroup="tango-stream", allowIdleConsumers="true", lagThreshold="0")
    objects_of(objects, "Deployment")["tango-teacher"]["spec"]["replicas"] = 3
    problems = check_scaled_object(objects)
    for needle in ("maxReplicaCount 16", "minReplicaCount (0)", "topic", "consumerGroup", "allowIdleConsumers",
                   "lagThreshold", "sets replicas"):
        assert any(needle in p for p in problems), (needle, problems)
    so["spec"]["scaleTargetRef"]["name"] = "tango-teachers"
    assert any("'tango-teachers' is no Deployment" in p for p in check_scaled_object(objects))
    so["spec"]["scaleTargetRef"]["name"] = "tango-stream"
    assert any("runs no `tango teacher`" in p for p in check_scaled_object(objects))


def test_unselective_budgets_and_services_are_reported(rendered):
    objects, pdb = broken(rendered, "PodDisruptionBudget", "tango-teacher")
    pdb["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] = "teachr"
    problems = check_disruption_budgets(objects)
    assert any("Deployment tango-teacher: selected by 0" in p for p in problems), problems
    assert any("PodDisruptionBudget tango-teacher: selects no" in p for p in problems), problems
    objects, service = broken(rendered, "Service", "tango-teacher-metrics")
    service["metadata"]["name"] = "tango-metrics"  # would inject TANGO_METRICS_PORT=tcp://...
    service["spec"]["selector"] = {"app": "other"}
    del pod_spec(objects_of(objects, "Deployment")["tango-stream"])["enableServiceLinks"]
    problems = check_services(objects)
    for needle in ("TANGO_METRICS_PORT is a setting", "tango-teacher: no Service", "tango-stream: enableServiceLinks"):
        assert any(needle in p for p in problems), (needle, problems)


def test_unsafe_pods_and_resources_are_reported(rendered):
    objects, stream = broken(rendered, "Deployment", "tango-stream")
    pod = stream["spec"]["template"]["spec"]
    pod["securityContext"]["runAsUser"] = 0
    pod["containers"][0]["securityContext"]["readOnlyRootFilesystem"] = False
    pod["containers"][0]["volumeMounts"] = [m for m in pod["containers"][0]["volumeMounts"] if m["mountPath"] != "/data"]
    next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "bundles")["readOnly"] = False
    stream["spec"]["replicas"] = 5
    teacher = pod_spec(objects_of(objects, "Deployment")["tango-teacher"])["containers"][0]
    teacher["resources"]["requests"]["cpu"] = "1500m"
    del teacher["resources"]["limits"]["memory"]
    problems = check_pod_security(objects, image_uid())
    for needle in ("runAsUser 10001", "readOnlyRootFilesystem", "/data/faust must be on a writable emptyDir", "TANGO_BUNDLE"):
        assert any(needle in p for p in problems), (needle, problems)
    problems = check_resources(objects)
    assert any("cpu request 1500m is under TANGO_TORCH_THREADS 2" in p for p in problems), problems
    assert any("needs a memory request and limit" in p for p in problems), problems
    assert any("5 replicas for 4 input partitions" in p for p in check_stream_replicas(objects))
    assert check_mirrors_compose(rendered, {"TANGO_INPUT_PARTITIONS": "6"}) != []


def test_selector_and_quantity_helpers():
    assert selects({"matchLabels": {"a": "1"}}, {"a": "1", "b": "2"})
    assert not selects({}, {"a": "1"})
    assert selects({"matchExpressions": [{"key": "a", "operator": "In", "values": ["1", "2"]}]}, {"a": "2"})
    assert not selects({"matchLabels": {"a": "1"}, "matchExpressions": [{"key": "b", "operator": "Exists"}]}, {"a": "1"})
    assert quantity("1500m") == 1.5 and quantity("2Gi") == 2 * 2**30 and quantity(2) == 2
    with pytest.raises(ValueError):
        quantity("two")
