"""The kustomize base in deploy/k8s: schema validation and cross-checks between the
manifests, the entry-point scripts, the image and the environment contract."""

from __future__ import annotations

import copy
import re
from pathlib import PurePosixPath
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import all_versions, latest_version

import houseparty
from tests.deploy._deploy import (
    DEPLOY,
    K8S,
    KUSTOMIZATIONS,
    OVERLAYS,
    Manifest,
    containers,
    contract_variables,
    env_names,
    json_patch,
    load_base_files,
    parse_dockerfile,
    render,
    render_with_kubectl,
    script_env_reads,
    selects,
    the,
)

OLDEST = "1.29"  # native sidecars (initContainers[].restartPolicy: Always)
NEWEST = latest_version()
VERSIONS = [OLDEST, NEWEST]

FILES = load_base_files()
DOCS = [(name, i, doc) for name, docs in FILES.items() for i, doc in enumerate(docs)]
RENDERS = {name: render(path) for name, path in KUSTOMIZATIONS.items()}


@pytest.fixture(params=sorted(RENDERS))
def rendered(request: pytest.FixtureRequest) -> list[Manifest]:
    """The base and each overlay, as kustomize renders them: every cross-check below
    holds for each."""
    docs: list[Manifest] = RENDERS[request.param]
    return docs


def pod_spec(docs: list[Manifest]) -> dict[str, Any]:
    spec: dict[str, Any] = the(docs, "Deployment")["spec"]["template"]["spec"]
    return spec


def container(docs: list[Manifest], name: str) -> dict[str, Any]:
    found = [c for c in containers(the(docs, "Deployment")) if c["name"] == name]
    assert len(found) == 1, f"no single container {name!r}"
    return found[0]


def validate(doc: Manifest, version: str) -> None:
    try:
        kubernetes_validate.validate(doc, version, strict=True)
    except kubernetes_validate.ValidationError as e:
        path = ".".join(str(p) for p in e.path)
        raise AssertionError(f"{doc['kind']} @ {path}: {e.message} (k8s {version})") from e


# -- schemas --------------------------------------------------------------------------


def test_the_newest_schema_set_is_newer_than_the_oldest_supported_cluster() -> None:
    assert "1.29.0" in all_versions()
    assert tuple(map(int, NEWEST.split(".")[:2])) > (1, 29)


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize(("file", "index", "doc"), DOCS, ids=[f"{f}#{i}" for f, i, _ in DOCS])
def test_every_base_document_is_valid_strictly(
    file: str, index: int, doc: Manifest, version: str
) -> None:
    validate(doc, version)


@pytest.mark.parametrize("version", VERSIONS)
def test_every_render_is_valid_strictly(version: str, rendered: list[Manifest]) -> None:
    for doc in rendered:
        validate(doc, version)


def test_strict_validation_rejects_an_unknown_field(rendered: list[Manifest]) -> None:
    broken = copy.deepcopy(the(rendered, "Deployment"))
    broken["spec"]["template"]["spec"]["containers"][0]["restartPolicyy"] = "Always"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, OLDEST, strict=True)


def test_native_sidecars_do_not_validate_against_1_27_schemas(rendered: list[Manifest]) -> None:
    # The reason for the 1.29 floor: on 1.27 restartPolicy is not a container field.
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(the(rendered, "Deployment"), "1.27", strict=True)


@pytest.mark.parametrize("name", sorted(KUSTOMIZATIONS))
def test_the_python_render_matches_kubectl_kustomize(name: str) -> None:
    by_kubectl = render_with_kubectl(KUSTOMIZATIONS[name])
    if by_kubectl is None:
        pytest.skip("kubectl is not installed; the Python render is used alone")

    def key(d: Manifest) -> tuple[str, str]:
        return d["kind"], d["metadata"]["name"]

    assert {key(d): d for d in by_kubectl} == {key(d): d for d in RENDERS[name]}


def test_the_kustomization_lists_every_base_file_but_the_secret_example() -> None:
    import yaml

    listed = set(yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"])
    assert listed == set(FILES) - {"secret.example.yaml"}


# -- workload, Service, PDB -------------------------------------------------------------


def test_the_workload_selects_its_own_pods(rendered: list[Manifest]) -> None:
    deploy = the(rendered, "Deployment")
    labels = deploy["spec"]["template"]["metadata"]["labels"]
    assert selects(deploy["spec"]["selector"], labels)


def test_the_headless_service_selects_the_pods_and_publishes_not_ready_ones(
    rendered: list[Manifest],
) -> None:
    labels = the(rendered, "Deployment")["spec"]["template"]["metadata"]["labels"]
    service = the(rendered, "Service")
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["publishNotReadyAddresses"] is True
    assert selects({"matchLabels": service["spec"]["selector"]}, labels)


def test_the_endpointslice_selector_matches_the_service_labels(rendered: list[Manifest]) -> None:
    # EndpointSlices carry their Service's labels; k8s_api lists them by HP_K8S_SELECTOR.
    sidecar = container(rendered, "sidecar")
    env = {e["name"]: e.get("value") for e in sidecar["env"]}
    assert env["HP_K8S_MODE"] == "endpointslices"
    key, _, value = env["HP_K8S_SELECTOR"].partition("=")
    assert the(rendered, "Service")["metadata"]["labels"].get(key) == value


def test_service_ports_target_named_container_ports(rendered: list[Manifest]) -> None:
    named = {
        p["name"]: p["containerPort"]
        for c in containers(the(rendered, "Deployment"))
        for p in c.get("ports", [])
    }
    for port in the(rendered, "Service")["spec"]["ports"]:
        assert port["targetPort"] in named, port
        assert named[port["targetPort"]] == port["port"], port


def test_the_pdb_selects_the_pods_and_allows_one_disruption(rendered: list[Manifest]) -> None:
    labels = the(rendered, "Deployment")["spec"]["template"]["metadata"]["labels"]
    pdb = the(rendered, "PodDisruptionBudget")
    assert selects(pdb["spec"]["selector"], labels)
    assert pdb["spec"]["maxUnavailable"] == 1


def test_rollouts_replace_one_pod_at_a_time_without_losing_capacity(
    rendered: list[Manifest],
) -> None:
    strategy = the(rendered, "Deployment")["spec"]["strategy"]
    assert strategy["type"] == "RollingUpdate"
    assert strategy["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}


def test_the_workload_choice_is_explained() -> None:
    text = (K8S / "deployment.yaml").read_text()
    assert "not a StatefulSet" in text
    assert "Deployment, not StatefulSet" in (DEPLOY / "README.md").read_text()


# -- RBAC -------------------------------------------------------------------------------


def test_the_role_binding_binds_the_pods_service_account(rendered: list[Manifest]) -> None:
    sa = the(rendered, "ServiceAccount")
    binding = the(rendered, "RoleBinding")
    role = the(rendered, "Role")
    assert pod_spec(rendered)["serviceAccountName"] == sa["metadata"]["name"]
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": role["metadata"]["name"],
    }
    assert binding["subjects"] == [
        {
            "kind": "ServiceAccount",
            "name": sa["metadata"]["name"],
            "namespace": sa["metadata"]["namespace"],
        }
    ]


def test_the_role_grants_what_k8s_api_and_status_read_and_no_more(rendered: list[Manifest]) -> None:
    granted = set()
    for rule in the(rendered, "Role")["rules"]:
        assert set(rule) == {"apiGroups", "resources", "verbs"}, "no resourceNames/nonResourceURLs"
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    granted.add((group, resource, verb))
    assert granted == {
        ("", "pods", "get"),
        ("", "pods", "list"),
        ("discovery.k8s.io", "endpointslices", "list"),
    }
    assert not [d for d in rendered if d["kind"] in {"ClusterRole", "ClusterRoleBinding"}]


# -- containers -------------------------------------------------------------------------


def test_the_sidecar_is_a_native_sidecar_running_the_release_in_the_foreground(
    rendered: list[Manifest],
) -> None:
    spec = pod_spec(rendered)
    [sidecar] = spec["initContainers"]
    assert sidecar["name"] == "sidecar"
    assert sidecar["restartPolicy"] == "Always"
    release_bin = "/opt/houseparty_sidecar/bin/houseparty_sidecar"
    assert sidecar["command"][1:] == [release_bin, "foreground"]
    assert [c["name"] for c in spec["containers"]] == ["python"]
    assert container(rendered, "python")["command"][1:] == ["houseparty", "pod-node"]


def test_both_containers_run_the_one_image(rendered: list[Manifest]) -> None:
    images = {c["image"] for c in containers(the(rendered, "Deployment"))}
    assert len(images) == 1


def test_the_commands_run_files_the_image_installs(rendered: list[Manifest]) -> None:
    final = parse_dockerfile(DEPLOY / "Dockerfile")[-1]
    installed: set[str] = set()
    for copy_ in final.all("COPY"):
        words = [w for w in copy_.words() if not w.startswith("--")]
        *sources, dest = words
        for src in sources:
            installed.add(dest if not dest.endswith("/") else dest + PurePosixPath(src).name)
    for c in containers(the(rendered, "Deployment")):
        program = c["command"][0]
        assert program in installed, f"{c['name']}: {program} is not installed by the image"
        # the script shipped is the one in deploy/
        assert (DEPLOY / PurePosixPath(program).name).is_file()
    release_home = "/opt/houseparty_sidecar"
    assert release_home in installed
    assert container(rendered, "sidecar")["command"][1].startswith(release_home + "/bin/")


def ports_of(c: dict[str, Any]) -> dict[str, int]:
    return {p["name"]: p["containerPort"] for p in c.get("ports", [])}


def test_the_pinned_ports_are_named_and_match_the_environment(rendered: list[Manifest]) -> None:
    sidecar, python = container(rendered, "sidecar"), container(rendered, "python")
    assert ports_of(sidecar) == {"epmd": 4369, "dist-sidecar": 9100, "health": 8080}
    assert ports_of(python) == {"dist-python": 9101}
    sidecar_env = {e["name"]: e.get("value") for e in sidecar["env"]}
    python_env = {e["name"]: e.get("value") for e in python["env"]}
    assert int(sidecar_env["HP_SIDECAR_DIST_PORT"]) == ports_of(sidecar)["dist-sidecar"]
    assert int(sidecar_env["HP_HEALTH_PORT"]) == ports_of(sidecar)["health"]
    assert int(python_env["HP_PYTHON_DIST_PORT"]) == ports_of(python)["dist-python"]


def test_probes_use_named_ports_of_their_own_container(rendered: list[Manifest]) -> None:
    probed = 0
    for c in containers(the(rendered, "Deployment")):
        for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
            probe = c.get(kind)
            if probe is None:
                continue
            probed += 1
            port = probe["httpGet"]["port"]
            assert isinstance(port, str) and port in ports_of(c), (c["name"], kind, port)
    assert probed == 3


def test_readiness_is_readyz_and_liveness_is_lenient(rendered: list[Manifest]) -> None:
    sidecar = container(rendered, "sidecar")
    assert sidecar["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert sidecar["startupProbe"]["httpGet"]["path"] == "/healthz"
    live = sidecar["livenessProbe"]
    assert live["httpGet"]["path"] == "/healthz"
    assert live["failureThreshold"] * live["periodSeconds"] >= 60


# -- environment ------------------------------------------------------------------------

SCRIPTS = {
    "entrypoint-sidecar.sh": DEPLOY / "entrypoint-sidecar.sh",
    "entrypoint-python.sh": DEPLOY / "entrypoint-python.sh",
    "drain.sh": DEPLOY / "drain.sh",
}


def scripts_run_by(c: dict[str, Any]) -> list[str]:
    names = [PurePosixPath(c["command"][0]).name]
    pre_stop = c.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command")
    if pre_stop:
        names.append(PurePosixPath(pre_stop[0]).name)
    return names


def test_each_container_sets_only_variables_its_scripts_read(rendered: list[Manifest]) -> None:
    for c in containers(the(rendered, "Deployment")):
        reads = set().union(*(script_env_reads(SCRIPTS[s]) for s in scripts_run_by(c)))
        assert env_names(c) <= reads, f"{c['name']} sets unread {env_names(c) - reads}"
        assert "HOUSEPARTY_COOKIE" in env_names(c)
        assert "POD_IP" in env_names(c)


def test_the_scripts_read_exactly_the_contract() -> None:
    contract = set(contract_variables())
    reads = {name: script_env_reads(path) for name, path in SCRIPTS.items()}
    for name, used in reads.items():
        assert used <= contract, f"{name} reads undocumented {used - contract}"
    assert set().union(*reads.values()) == contract
    # The sidecar's entry point exports the complete environment the application reads.
    assert reads["entrypoint-sidecar.sh"] == contract


_DEFAULT = re.compile(r'^: "\$\{([A-Z0-9_]+):=(.*)\}"$', re.M)


def test_the_scripts_defaults_are_the_contracts() -> None:
    contract = contract_variables()
    checked = 0
    for path in SCRIPTS.values():
        for name, default in _DEFAULT.findall(path.read_text()):
            documented = contract[name]
            if documented.startswith("read from"):
                continue
            assert default == ("" if documented == '""' else documented), name
            checked += 1
    assert checked >= len(contract) - 2


def test_the_downward_api_feeds_the_pod_ip_and_namespace(rendered: list[Manifest]) -> None:
    for c in containers(the(rendered, "Deployment")):
        refs = {
            e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"]
            for e in c["env"]
            if "fieldRef" in e.get("valueFrom", {})
        }
        assert refs["POD_IP"] == "status.podIP"
        if "HP_K8S_NAMESPACE" in env_names(c):
            assert refs["HP_K8S_NAMESPACE"] == "metadata.namespace"


def test_the_cookie_comes_from_a_key_of_the_example_secret(rendered: list[Manifest]) -> None:
    [secret] = FILES["secret.example.yaml"]
    for c in containers(the(rendered, "Deployment")):
        [cookie] = [e for e in c["env"] if e["name"] == "HOUSEPARTY_COOKIE"]
        assert "value" not in cookie
        ref = cookie["valueFrom"]["secretKeyRef"]
        assert ref["name"] == secret["metadata"]["name"]
        assert ref["key"] in secret.get("stringData", {}) | secret.get("data", {})
    assert secret["metadata"]["namespace"] == the(rendered, "Deployment")["metadata"]["namespace"]


# -- termination ------------------------------------------------------------------------


def drain_budget_s() -> int:
    m = re.search(r"^timeout_s=(\d+)$", SCRIPTS["drain.sh"].read_text(), re.M)
    assert m, "drain.sh states its budget as timeout_s=N"
    return int(m.group(1))


def test_the_python_container_drains_in_its_pre_stop_hook(rendered: list[Manifest]) -> None:
    python = container(rendered, "python")
    assert scripts_run_by(python) == ["entrypoint-python.sh", "drain.sh"]
    assert "lifecycle" not in container(rendered, "sidecar")  # its SIGTERM drains


def test_the_grace_period_exceeds_the_drain_budget(rendered: list[Manifest]) -> None:
    grace = pod_spec(rendered)["terminationGracePeriodSeconds"]
    # After the preStop drain: the Python node's SIGTERM, then the sidecar's stop.
    assert grace >= drain_budget_s() + 15


# -- security and resources -------------------------------------------------------------


def test_pods_run_as_the_images_non_root_user(rendered: list[Manifest]) -> None:
    final = parse_dockerfile(DEPLOY / "Dockerfile")[-1]
    user = [u.args for u in final.all("USER")][-1].split(":")[0]
    ctx = pod_spec(rendered)["securityContext"]
    assert ctx["runAsNonRoot"] is True
    assert ctx["runAsUser"] == int(user) != 0


def test_containers_are_locked_down_with_only_tmp_writable(rendered: list[Manifest]) -> None:
    volumes = {v["name"]: v for v in pod_spec(rendered)["volumes"]}
    for c in containers(the(rendered, "Deployment")):
        ctx = c["securityContext"]
        assert ctx["allowPrivilegeEscalation"] is False
        assert ctx["readOnlyRootFilesystem"] is True
        assert ctx["capabilities"]["drop"] == ["ALL"]
        assert "add" not in ctx["capabilities"]
        mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
        assert "emptyDir" in volumes[mounts["/tmp"]["name"]]
        # Besides /tmp, only the TLS Secret, read-only.
        assert set(mounts) == {"/tmp", TLS_MOUNT}
        assert mounts[TLS_MOUNT]["readOnly"] is True
        assert "secret" in volumes[mounts[TLS_MOUNT]["name"]]


# -- TLS distribution ---------------------------------------------------------------------

TLS_MOUNT = "/etc/houseparty/tls"
CERT_MANAGER_KEYS = {"tls.crt", "tls.key", "ca.crt"}


def test_both_containers_read_the_tls_secret_in_cert_managers_layout(
    rendered: list[Manifest],
) -> None:
    volumes = {v["name"]: v for v in pod_spec(rendered)["volumes"]}
    for c in containers(the(rendered, "Deployment")):
        env = {e["name"]: e.get("value") for e in c["env"]}
        assert env["HP_TLS_DIR"] == TLS_MOUNT, c["name"]
        [mount] = [m for m in c["volumeMounts"] if m["mountPath"] == TLS_MOUNT]
        secret = volumes[mount["name"]]["secret"]
        assert secret["secretName"] == "houseparty-tls"
        assert {item["key"] for item in secret["items"]} == CERT_MANAGER_KEYS
        assert all(item["key"] == item["path"] for item in secret["items"])
        # The key is for the pods' own user and group (fsGroup), no one else.
        assert secret["defaultMode"] & 0o007 == 0


def test_the_cert_manager_example_makes_the_secret_the_pods_mount() -> None:
    docs = [d for d in yaml.safe_load_all((DEPLOY / "cert-manager.example.yaml").read_text()) if d]
    certificates = {d["metadata"]["name"]: d["spec"] for d in docs if d["kind"] == "Certificate"}
    leaf = certificates["houseparty-tls"]
    assert leaf["secretName"] == "houseparty-tls"
    assert {"server auth", "client auth"} <= set(leaf["usages"])
    issuer = leaf["issuerRef"]["name"]
    [ca_issuer] = [d for d in docs if d["kind"] == "Issuer" and d["metadata"]["name"] == issuer]
    ca_secret = ca_issuer["spec"]["ca"]["secretName"]
    assert any(
        c["isCA"] and c["secretName"] == ca_secret for c in certificates.values() if "isCA" in c
    )
    assert all(d["metadata"]["namespace"] == "houseparty" for d in docs)
    # Outside the base: it needs cert-manager's CRDs.
    assert not (K8S / "cert-manager.example.yaml").exists()


def test_the_drain_hook_asks_over_tls_without_erl_call() -> None:
    drain = SCRIPTS["drain.sh"].read_text()
    tls_branch = drain.split('if [ -n "${HP_TLS_DIR:-}" ]; then', 1)[1].split("\nfi\n", 1)[0]
    code = [line for line in tls_branch.splitlines() if not line.lstrip().startswith("#")]
    assert any("python -m houseparty.pod --drain" in line for line in code)
    assert not any("erl_call" in line for line in code)


def test_containers_request_and_limit_resources(rendered: list[Manifest]) -> None:
    for c in containers(the(rendered, "Deployment")):
        assert {"cpu", "memory"} <= set(c["resources"]["requests"]), c["name"]
        assert "memory" in c["resources"]["limits"], c["name"]


# -- spread over machines ----------------------------------------------------------------


def spread(docs: list[Manifest], key: str) -> dict[str, Any]:
    constraints: list[dict[str, Any]] = pod_spec(docs).get("topologySpreadConstraints", [])
    found = [c for c in constraints if c["topologyKey"] == key]
    assert len(found) == 1, f"no single spread constraint over {key}"
    return found[0]


def test_the_pods_spread_over_nodes_counting_only_their_own_revision(
    rendered: list[Manifest],
) -> None:
    deploy = the(rendered, "Deployment")
    labels = deploy["spec"]["template"]["metadata"]["labels"]
    nodes = spread(rendered, "kubernetes.io/hostname")
    assert nodes["maxSkew"] == 1
    assert selects(nodes["labelSelector"], labels)
    # Without it a surge pod would need a node of its own, and a cluster with exactly as
    # many nodes as replicas could never roll.
    assert nodes["matchLabelKeys"] == ["pod-template-hash"]


def test_more_than_one_pod_means_one_per_node_hard_for_the_replica_count(
    rendered: list[Manifest],
) -> None:
    replicas = the(rendered, "Deployment")["spec"]["replicas"]
    nodes = spread(rendered, "kubernetes.io/hostname")
    if replicas == 1:
        return  # nothing to hold apart
    assert nodes["whenUnsatisfiable"] == "DoNotSchedule"
    # With fewer nodes than this, each node takes at most one pod.
    assert nodes["minDomains"] == replicas


def test_the_overlays_are_one_pod_for_dev_and_several_spread_for_prod() -> None:
    dev, prod, base = (the(RENDERS[n], "Deployment") for n in ("dev", "prod", "base"))
    assert dev["spec"]["replicas"] == 1
    assert spread(RENDERS["dev"], "kubernetes.io/hostname")["whenUnsatisfiable"] == (
        "ScheduleAnyway"
    )
    assert "minDomains" not in spread(RENDERS["dev"], "kubernetes.io/hostname")
    assert base["spec"]["replicas"] >= 3
    assert prod["spec"]["replicas"] >= 3
    zones = spread(RENDERS["prod"], "topology.kubernetes.io/zone")
    assert zones["whenUnsatisfiable"] == "ScheduleAnyway"
    assert selects(zones["labelSelector"], prod["spec"]["template"]["metadata"]["labels"])


def test_the_overlays_build_on_the_base_alone() -> None:
    import yaml

    for path in OVERLAYS.values():
        kust = yaml.safe_load((path / "kustomization.yaml").read_text())
        assert kust["resources"] == ["../../k8s"], path


# -- network policy ----------------------------------------------------------------------


def test_only_the_apps_own_pods_reach_epmd_and_the_distribution_ports(
    rendered: list[Manifest],
) -> None:
    policy = the(rendered, "NetworkPolicy")
    labels = the(rendered, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert selects(policy["spec"]["podSelector"], labels)
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    [rule] = policy["spec"]["ingress"]
    [peer] = rule["from"]
    assert set(peer) == {"podSelector"}, "no namespaceSelector or ipBlock"
    assert selects(peer["podSelector"], labels)
    allowed = {(p["protocol"], p["port"]) for p in rule["ports"]}
    assert allowed == {("TCP", "epmd"), ("TCP", "dist-sidecar"), ("TCP", "dist-python")}


def test_the_policys_ports_are_the_pods_named_ports_except_health(
    rendered: list[Manifest],
) -> None:
    named = {
        name: port
        for c in containers(the(rendered, "Deployment"))
        for name, port in ports_of(c).items()
    }
    policy_ports = {
        p["port"] for r in the(rendered, "NetworkPolicy")["spec"]["ingress"] for p in r["ports"]
    }
    assert policy_ports <= set(named)
    # The kubelet probes from the pod's own node, which a policy never blocks.
    assert set(named) - policy_ports == {"health"}
    for c in containers(the(rendered, "Deployment")):
        for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
            if kind in c:
                assert c[kind]["httpGet"]["port"] not in policy_ports


# -- labels ------------------------------------------------------------------------------

RECOMMENDED = {
    "app.kubernetes.io/name": "houseparty",
    "app.kubernetes.io/instance": "houseparty",
    "app.kubernetes.io/version": houseparty.__version__,
    "app.kubernetes.io/part-of": "houseparty",
    "app.kubernetes.io/managed-by": "kustomize",
}


def test_every_object_and_pod_carries_the_recommended_labels(rendered: list[Manifest]) -> None:
    for doc in rendered:
        labels = doc["metadata"].get("labels", {})
        assert RECOMMENDED.items() <= labels.items(), doc["kind"]
    pod_labels = the(rendered, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert RECOMMENDED.items() <= pod_labels.items()


def test_selectors_keep_to_the_app_label_and_the_version_is_the_images(
    rendered: list[Manifest],
) -> None:
    deploy = the(rendered, "Deployment")
    # A Deployment's selector is immutable: a version in it would block every upgrade.
    assert deploy["spec"]["selector"] == {"matchLabels": {"app": "houseparty"}}
    assert the(rendered, "PodDisruptionBudget")["spec"]["selector"] == deploy["spec"]["selector"]
    assert the(rendered, "Service")["spec"]["selector"] == {"app": "houseparty"}
    tags = {c["image"].rpartition(":")[2] for c in containers(deploy)}
    assert tags == {houseparty.__version__}


def test_the_renderer_refuses_what_it_does_not_implement() -> None:
    doc: Manifest = {"kind": "Deployment", "metadata": {"name": "x"}, "spec": {}}
    with pytest.raises(ValueError):
        json_patch(doc, [{"op": "move", "from": "/spec", "path": "/other"}])
    with pytest.raises(KeyError):
        json_patch(doc, [{"op": "replace", "path": "/spec/replicas", "value": 2}])


def test_the_kind_cluster_of_the_quickstart_has_a_worker_per_pod_of_the_base() -> None:
    import yaml

    cluster = yaml.safe_load((DEPLOY / "kind-cluster.yaml").read_text())
    assert cluster["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    workers = [n for n in cluster["nodes"] if n["role"] == "worker"]
    assert len(workers) == the(RENDERS["base"], "Deployment")["spec"]["replicas"]
    quickstart = (DEPLOY / "README.md").read_text().split("## Try it on kind", 1)[1]
    assert "--config deploy/kind-cluster.yaml" in quickstart
    for step in ("docker build", "kind load docker-image", "kubectl apply -k deploy/k8s"):
        assert step in quickstart, step
    assert "houseparty k8s status" in quickstart
    # The image the quickstart loads is the one the base runs.
    [image] = {c["image"] for c in containers(the(RENDERS["base"], "Deployment"))}
    assert f"kind load docker-image {image}" in quickstart
