"""The Kubernetes manifests in deploy/k8s validate, offline, against real schemas.

Core objects (PersistentVolumeClaim, ConfigMap) are checked with the Kubernetes OpenAPI
schemas that the `kubernetes-validate` package bundles, in their strict form (no unknown
field anywhere). KubeRay's RayCluster and RayJob are checked against
``kuberay_v1.schema.json`` beside this file: no PyPI package ships KubeRay's CRD schema, so
that file was written for these tests from KubeRay's documented ray.io/v1 API. Its pod
templates, services and resource lists point at the same bundled Kubernetes schemas, so a
misspelt container field inside a RayCluster fails as it would in a plain Pod.

Every check also runs on deliberately broken copies of the manifests, which must fail.
"""

from __future__ import annotations

import copy
import json
import re
import shlex
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import yaml

kubernetes_validate = pytest.importorskip(
    "kubernetes_validate",
    reason="kubernetes-validate is not installed (add 'kubernetes-validate>=1.31' to the "
    "test extra): it bundles the Kubernetes schemas these tests validate against",
)

from jsonschema import Draft202012Validator  # noqa: E402
from jsonschema.exceptions import ValidationError, best_match  # noqa: E402
from referencing import Registry, Resource  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
K8S_DIR = REPO / "deploy" / "k8s"
KUBERAY_SCHEMA = Path(__file__).with_name("kuberay_v1.schema.json")
#: The Kubernetes minor version validated against (KubeRay 1.x supports it; the schema
#: package ships it from 1.31 on). The newest bundled version not above it is used.
K8S_VERSION = "1.30"
KNOWN_KINDS = {"PersistentVolumeClaim", "ConfigMap", "RayCluster", "RayJob"}


# -- loading -------------------------------------------------------------------------------


def manifest_docs() -> list[tuple[str, dict[str, Any]]]:
    """(``file#index kind/name``, object) for every YAML document under deploy/k8s."""
    docs = []
    for path in sorted(K8S_DIR.glob("*.yaml")):
        for i, doc in enumerate(yaml.safe_load_all(path.read_text())):
            if doc is None:
                continue
            label = f"{path.name}#{i} {doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
            docs.append((label, doc))
    return docs


DOCS = manifest_docs()


def docs_of(kind: str) -> list[dict[str, Any]]:
    return [doc for _, doc in DOCS if doc.get("kind") == kind]


def only(kind: str) -> dict[str, Any]:
    (doc,) = docs_of(kind)
    return doc


def _version_key(name: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", name.split("-")[0]))


def k8s_schema_dir():
    """The strict schema folder of the newest bundled version not above `K8S_VERSION`."""
    root = resources.files("kubernetes_validate").joinpath("kubernetes-json-schema")
    wanted = _version_key("v" + K8S_VERSION)
    strict = [
        d
        for d in root.iterdir()
        if d.name.endswith("-local-strict") and _version_key(d.name)[:2] <= wanted
    ]
    if not strict:
        pytest.fail(f"kubernetes-validate bundles no schema for Kubernetes <= {K8S_VERSION}")
    return max(strict, key=lambda d: _version_key(d.name))


@pytest.fixture(scope="module")
def kuberay_schema() -> dict[str, Any]:
    return json.loads(KUBERAY_SCHEMA.read_text())


@pytest.fixture(scope="module")
def registry(kuberay_schema) -> Registry:
    """KubeRay's schema plus the Kubernetes definitions and PodTemplateSpec it refers to."""
    folder = k8s_schema_dir()
    contents = [
        json.loads(folder.joinpath("_definitions.json").read_text()),
        json.loads(folder.joinpath("podtemplatespec-v1.json").read_text()),
        kuberay_schema,
    ]
    return Registry().with_resources((doc["$id"], Resource.from_contents(doc)) for doc in contents)


def kuberay_errors(doc: dict[str, Any], registry: Registry) -> list[ValidationError]:
    kind = doc.get("kind")
    if kind not in ("RayCluster", "RayJob"):
        raise AssertionError(f"not a KubeRay object: {kind}")
    ref = {"$ref": f"urn:medscale:tests:kuberay-ray.io-v1#/$defs/{kind}"}
    return list(Draft202012Validator(ref, registry=registry).iter_errors(doc))


def k8s_errors(doc: dict[str, Any]) -> list[ValidationError]:
    try:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return [exc]
    return []


def errors_of(doc: dict[str, Any], registry: Registry) -> list[ValidationError]:
    if doc.get("apiVersion", "").startswith("ray.io/"):
        return kuberay_errors(doc, registry)
    return k8s_errors(doc)


def describe(errors: list[ValidationError]) -> str:
    return "\n".join(f"{e.json_path}: {e.message[:300]}" for e in errors)


# -- the manifests are valid ---------------------------------------------------------------


def test_manifests_are_there_and_of_known_kinds():
    kinds = {doc.get("kind") for _, doc in DOCS}
    assert {"RayCluster", "RayJob", "PersistentVolumeClaim", "ConfigMap"} <= kinds
    assert kinds <= KNOWN_KINDS, f"add a schema check for {kinds - KNOWN_KINDS}"


def test_kuberay_schema_is_a_valid_json_schema(kuberay_schema):
    Draft202012Validator.check_schema(kuberay_schema)


@pytest.mark.parametrize("label,doc", DOCS, ids=[label for label, _ in DOCS])
def test_manifest_validates(label, doc, registry):
    errors = errors_of(doc, registry)
    assert not errors, f"{label}:\n{describe(errors)}"


def test_pod_templates_are_checked_against_the_kubernetes_schema(registry):
    """The KubeRay schema really descends into pod templates (not just `type: object`)."""
    cluster = copy.deepcopy(only("RayCluster"))
    container = cluster["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    container["imagePullPolicy"] = 3
    errors = kuberay_errors(cluster, registry)
    assert errors
    assert "containers" in best_match(errors).json_path


# -- broken copies fail --------------------------------------------------------------------


def _worker(doc: dict[str, Any]) -> dict[str, Any]:
    spec = doc["spec"] if doc["kind"] == "RayCluster" else doc["spec"]["rayClusterSpec"]
    return spec["workerGroupSpecs"][0]


def _head(doc: dict[str, Any]) -> dict[str, Any]:
    spec = doc["spec"] if doc["kind"] == "RayCluster" else doc["spec"]["rayClusterSpec"]
    return spec["headGroupSpec"]


def _misspell_min_replicas(doc):
    worker = _worker(doc)
    worker["minReplica"] = worker.pop("minReplicas")


def _min_replicas_as_string(doc):
    _worker(doc)["minReplicas"] = "0"


def _negative_max_replicas(doc):
    _worker(doc)["maxReplicas"] = -1


def _misspell_container_resources(doc):
    container = _worker(doc)["template"]["spec"]["containers"][0]
    container["resource"] = container.pop("resources")


def _gpu_limit_as_list(doc):
    _worker(doc)["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] = [1]


def _ray_start_param_not_a_string(doc):
    _head(doc)["rayStartParams"]["num-cpus"] = 0


def _unknown_service_type(doc):
    _head(doc)["serviceType"] = "Public"


def _old_api_version(doc):
    doc["apiVersion"] = "ray.io/v1alpha1"


def _misspell_entrypoint(doc):
    doc["spec"]["entryPoint"] = doc["spec"].pop("entrypoint")


def _no_head_group(doc):
    del doc["spec"]["rayClusterSpec"]["headGroupSpec"]


def _unknown_submission_mode(doc):
    doc["spec"]["submissionMode"] = "KubernetesJob"


def _misspell_access_modes(doc):
    doc["spec"]["accessMode"] = doc["spec"].pop("accessModes")


def _storage_request_as_mapping(doc):
    doc["spec"]["resources"]["requests"]["storage"] = {"size": "500Gi"}


def _config_value_not_a_string(doc):
    doc["data"]["replicas"] = 4


BROKEN = [
    ("RayCluster", _misspell_min_replicas, "workerGroupSpecs"),
    ("RayCluster", _min_replicas_as_string, "minReplicas"),
    ("RayCluster", _negative_max_replicas, "maxReplicas"),
    ("RayCluster", _misspell_container_resources, "containers"),
    ("RayCluster", _gpu_limit_as_list, "nvidia.com/gpu"),
    ("RayCluster", _ray_start_param_not_a_string, "rayStartParams"),
    ("RayCluster", _unknown_service_type, "serviceType"),
    ("RayCluster", _old_api_version, "apiVersion"),
    ("RayJob", _misspell_entrypoint, "spec"),
    ("RayJob", _no_head_group, "rayClusterSpec"),
    ("RayJob", _unknown_submission_mode, "submissionMode"),
    ("RayJob", _min_replicas_as_string, "minReplicas"),
    ("RayJob", _misspell_container_resources, "containers"),
    ("PersistentVolumeClaim", _misspell_access_modes, "spec"),
    ("PersistentVolumeClaim", _storage_request_as_mapping, "storage"),
    ("ConfigMap", _config_value_not_a_string, "data"),
]


@pytest.mark.parametrize(
    "kind,break_it,where", BROKEN, ids=[f"{k}-{f.__name__.strip('_')}" for k, f, _ in BROKEN]
)
def test_broken_manifest_fails(kind, break_it, where, registry):
    doc = copy.deepcopy(only(kind))
    assert not errors_of(doc, registry)
    break_it(doc)
    errors = errors_of(doc, registry)
    assert errors, f"{break_it.__name__} was not caught"
    paths = " ".join(e.json_path + " " + e.message for e in errors)
    assert where in paths, describe(errors)


# -- what the schemas cannot say -----------------------------------------------------------


def cluster_specs() -> list[tuple[str, dict[str, Any]]]:
    specs = [(f"RayCluster/{d['metadata']['name']}", d["spec"]) for d in docs_of("RayCluster")]
    specs += [
        (f"RayJob/{d['metadata']['name']}", d["spec"]["rayClusterSpec"]) for d in docs_of("RayJob")
    ]
    return specs


def _containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return spec["template"]["spec"]["containers"]


def scaling_problems(spec: dict[str, Any]) -> list[str]:
    """Autoscaling on, sane replica bounds, and a GPU limit on every worker container."""
    problems = []
    if spec.get("enableInTreeAutoscaling") is not True:
        problems.append("enableInTreeAutoscaling is not true")
    for group in spec.get("workerGroupSpecs", []):
        name = group["groupName"]
        low, high = group.get("minReplicas", 0), group.get("maxReplicas")
        replicas = group.get("replicas", low)
        if high is None or not (0 <= low <= replicas <= high) or high < 1:
            problems.append(f"{name}: need 0 <= minReplicas <= replicas <= maxReplicas >= 1")
        for container in _containers(group):
            resources_ = container.get("resources", {})
            limit = resources_.get("limits", {}).get("nvidia.com/gpu")
            request = resources_.get("requests", {}).get("nvidia.com/gpu", limit)
            if not limit:
                problems.append(f"{name}/{container['name']}: no nvidia.com/gpu limit")
            elif str(request) != str(limit):
                problems.append(f"{name}/{container['name']}: GPU request != limit")
    return problems


def exposure_problems(spec: dict[str, Any]) -> list[str]:
    """The head's dashboard (which runs arbitrary jobs) must not leave the cluster."""
    problems = []
    head = spec["headGroupSpec"]
    if head.get("serviceType", "ClusterIP") != "ClusterIP":
        problems.append(f"head serviceType {head['serviceType']} reaches outside the cluster")
    if head.get("enableIngress"):
        problems.append("head enableIngress is true")
    if head.get("headService", {}).get("spec", {}).get("type", "ClusterIP") != "ClusterIP":
        problems.append("headService is not ClusterIP")
    groups = [head, *spec.get("workerGroupSpecs", [])]
    for group in groups:
        pod = group["template"]["spec"]
        if pod.get("hostNetwork"):
            problems.append("a pod uses hostNetwork")
        for container in pod["containers"]:
            if any("hostPort" in port for port in container.get("ports", [])):
                problems.append(f"{container['name']} publishes a hostPort")
    return problems


@pytest.mark.parametrize("label,spec", cluster_specs(), ids=[lbl for lbl, _ in cluster_specs()])
def test_workers_autoscale_within_bounds_and_request_gpus(label, spec):
    assert scaling_problems(spec) == [], label


@pytest.mark.parametrize("label,spec", cluster_specs(), ids=[lbl for lbl, _ in cluster_specs()])
def test_dashboard_is_not_exposed_outside_the_cluster(label, spec):
    assert exposure_problems(spec) == [], label


def test_scaling_and_exposure_checks_can_fail():
    spec = copy.deepcopy(only("RayCluster")["spec"])
    spec["enableInTreeAutoscaling"] = False
    group = spec["workerGroupSpecs"][0]
    group["minReplicas"], group["maxReplicas"] = 3, 2
    del _containers(group)[0]["resources"]["limits"]["nvidia.com/gpu"]
    assert len(scaling_problems(spec)) == 3
    spec["headGroupSpec"]["serviceType"] = "LoadBalancer"
    spec["headGroupSpec"]["enableIngress"] = True
    group["template"]["spec"]["hostNetwork"] = True
    assert len(exposure_problems(spec)) == 3


def test_volumes_refer_to_objects_defined_here():
    claims = {d["metadata"]["name"] for d in docs_of("PersistentVolumeClaim")}
    config_maps = {d["metadata"]["name"] for d in docs_of("ConfigMap")}
    for label, spec in cluster_specs():
        for group in [spec["headGroupSpec"], *spec.get("workerGroupSpecs", [])]:
            pod = group["template"]["spec"]
            volumes = {v["name"]: v for v in pod.get("volumes", [])}
            for container in pod["containers"]:
                for mount in container.get("volumeMounts", []):
                    assert mount["name"] in volumes, f"{label}: no volume {mount['name']}"
            for volume in volumes.values():
                if "persistentVolumeClaim" in volume:
                    assert volume["persistentVolumeClaim"]["claimName"] in claims, label
                if "configMap" in volume:
                    assert volume["configMap"]["name"] in config_maps, label


def test_head_and_workers_run_one_image_with_the_ray_version_of_the_dockerfile():
    dockerfile = (REPO / "deploy" / "container" / "Dockerfile").read_text()
    match = re.search(r'^ARG RAY_SPEC="?ray\[[^\]]*\]==([0-9.]+)"?$', dockerfile, re.M)
    assert match, "Dockerfile: ARG RAY_SPEC with a pinned ray version"
    for label, spec in cluster_specs():
        assert spec["rayVersion"] == match.group(1), label
        images = {
            c["image"]
            for g in [spec["headGroupSpec"], *spec["workerGroupSpecs"]]
            for c in _containers(g)
        }
        assert len(images) == 1, f"{label}: {images}"


def test_rayjob_entrypoint_trains_with_the_ray_launcher():
    job = only("RayJob")
    argv = shlex.split(job["spec"]["entrypoint"])
    assert argv[:2] == ["medscale", "train"]
    options = dict(zip(argv[3::2], argv[4::2], strict=False))
    assert options.get("--launcher") == "ray", argv
    # The cluster KubeRay makes for a RayJob has a generated name: the driver takes the
    # address Ray's job supervisor puts in RAY_ADDRESS. In K8sJobMode the submitter's bash
    # reads the entrypoint first, so "$RAY_ADDRESS" must reach it escaped (else it expands
    # there, in the wrong pod); shlex undoes the escape as that bash does.
    assert job["spec"]["submissionMode"] == "K8sJobMode"
    assert "\\$RAY_ADDRESS" in job["spec"]["entrypoint"]
    assert options.get("--ray-address") == "$RAY_ADDRESS", argv
    assert "--store" in argv and "--out" in argv
    config_path = Path(argv[2])
    # The config file is the ConfigMap's key, mounted where the entrypoint reads it.
    cm = only("ConfigMap")
    assert config_path.name in cm["data"]
    head_pod = job["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]
    volume = next(v["name"] for v in head_pod["volumes"] if "configMap" in v)
    mounts = {m["name"]: m["mountPath"] for m in head_pod["containers"][0]["volumeMounts"]}
    assert mounts[volume] == str(config_path.parent)


def test_the_training_config_in_the_configmap_is_a_valid_train_config():
    from medscale.train.config import TrainConfig

    cm = only("ConfigMap")
    config = TrainConfig.from_dict(yaml.safe_load(cm["data"]["train.yaml"]), "ConfigMap")
    assert config.ray.use_gpu
    # medscale's Ray launcher takes host:port (no "auto"): the long-lived cluster's head
    # service, which KubeRay names <cluster name>-head-svc, and Ray's GCS port.
    from medscale.launch.ray import split_address

    host, port, client = split_address(config.ray.address)
    assert (host, port, client) == (
        f"{only('RayCluster')['metadata']['name']}-head-svc",
        6379,
        False,
    )
    spec = only("RayJob")["spec"]["rayClusterSpec"]
    gpus = sum(
        int(g["maxReplicas"]) * int(_containers(g)[0]["resources"]["limits"]["nvidia.com/gpu"])
        for g in spec["workerGroupSpecs"]
    )
    assert config.ray.num_workers <= gpus, "more GPU ranks than the cluster can ever hold"
