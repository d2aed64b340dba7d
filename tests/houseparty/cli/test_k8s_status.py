"""``houseparty k8s status``: the real kubernetes client against recorded API responses.

A local HTTP server plays the API server with JSON recorded from a real one
(``k8s_data/``), reached through a kubeconfig file, so the client's request building,
authentication, deserialization and error handling all run for real. The join with the
cluster's own view runs against a real local HouseParty cluster.
"""

from __future__ import annotations

import copy
import json
import secrets
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from click.testing import CliRunner, Result

from houseparty.cli import main
from tests.houseparty.conftest import Cluster, start_cluster

DATA = Path(__file__).parent / "k8s_data"
PODS: dict[str, Any] = json.loads((DATA / "pods.json").read_text())
FORBIDDEN = json.loads((DATA / "forbidden.json").read_text())
PODS_PATH = "/api/v1/namespaces/houseparty/pods"

READY = "houseparty-7d9c6b5f4-2xkqp"  # Running, Ready, 10.244.1.17 on worker-a
PENDING = "houseparty-7d9c6b5f4-9vmtz"  # Pending, no IP yet, on worker-c
NOT_READY = "houseparty-7d9c6b5f4-lq8wd"  # Running, sidecar not ready, 10.244.2.9 on worker-b


class ApiServer:
    """Serves recorded JSON by path and remembers every request."""

    def __init__(self) -> None:
        self.responses: dict[str, tuple[int, Any]] = {}
        self.requests: list[dict[str, Any]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urlsplit(self.path)
                server.requests.append(
                    {
                        "path": url.path,
                        "query": parse_qs(url.query),
                        "authorization": self.headers.get("Authorization"),
                    }
                )
                status, body = server.responses.get(url.path, (404, _status_404(url.path)))
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


def _status_404(path: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": f"the server could not find the requested resource ({path})",
        "reason": "NotFound",
        "details": {},
        "code": 404,
    }


@pytest.fixture
def api_server() -> Iterator[ApiServer]:
    server = ApiServer()
    try:
        yield server
    finally:
        server.close()


def write_kubeconfig(path: Path, server: str, namespace: str | None = "houseparty") -> Path:
    """Two contexts on one server: ``ops`` (current, token-ops) and ``viewer``."""
    ops = {"cluster": "test", "user": "ops", **({"namespace": namespace} if namespace else {})}
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "test", "cluster": {"server": server}}],
        "users": [
            {"name": "ops", "user": {"token": "token-ops"}},
            {"name": "viewer", "user": {"token": "token-viewer"}},
        ],
        "contexts": [
            {"name": "ops", "context": ops},
            {
                "name": "viewer",
                "context": {"cluster": "test", "user": "viewer", "namespace": "staging"},
            },
        ],
        "current-context": "ops",
    }
    path.write_text(json.dumps(config))  # JSON is YAML
    return path


def run(*args: str, cookie: str | None = None, **more_env: str) -> Result:
    env: dict[str, str | None] = {
        # Nothing from the environment the tests run in: no kubeconfig, not in a pod.
        "KUBECONFIG": None,
        "KUBERNETES_SERVICE_HOST": None,
        "KUBERNETES_SERVICE_PORT": None,
        "HOUSEPARTY_COOKIE": cookie,
        # Wide enough that a table row is one line.
        "COLUMNS": "300",
        **more_env,
    }
    return CliRunner().invoke(main, ["k8s", "status", *args], env=env)


def table_rows(output: str) -> dict[str, dict[str, str]]:
    """The table's rows by pod name, each as {column: cell text}."""
    lines = output.splitlines()
    header = next(line for line in lines if line.startswith("┃"))
    columns = [cell.strip() for cell in header.split("┃")[1:-1]]
    rows = {}
    for line in lines:
        cells = [cell.strip() for cell in line.split("│")[1:-1]]
        if cells and cells[0].startswith("houseparty-"):
            rows[cells[0]] = dict(zip(columns, cells, strict=True))
    return rows


def error_line(result: Result, code: int = 1) -> str:
    """The error a failed run printed, checked to be one line and a clean exit ``code``
    (1, other; 2, bad input; 5, unreachable)."""
    # An exception escaping the command would also give exit code 1 under CliRunner.
    assert isinstance(result.exception, SystemExit), result.exc_info
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_lists_the_pods_with_their_node_names(api_server: ApiServer, tmp_path: Path) -> None:
    api_server.responses[PODS_PATH] = (200, PODS)
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", api_server.url)

    result = run("--kubeconfig", str(kubeconfig))

    assert result.exit_code == 0, result.output
    assert api_server.requests == [
        {
            "path": PODS_PATH,
            "query": {"labelSelector": ["app=houseparty"]},
            "authorization": "Bearer token-ops",
        }
    ]
    rows = table_rows(result.stdout)
    seen = {
        pod: [row[c] for c in ["phase", "ready", "IP", "k8s node"]] for pod, row in rows.items()
    }
    assert seen == {
        READY: ["Running", "yes", "10.244.1.17", "worker-a"],
        PENDING: ["Pending", "no", "-", "worker-c"],
        NOT_READY: ["Running", "no", "10.244.2.9", "worker-b"],
    }
    names = {pod: (row["sidecar node"], row["python node"]) for pod, row in rows.items()}
    assert names == {
        READY: ("sidecar@10.244.1.17", "py@10.244.1.17"),
        PENDING: ("-", "-"),
        NOT_READY: ("sidecar@10.244.2.9", "py@10.244.2.9"),
    }
    assert {row["in ring"] for row in rows.values()} == {"-"}
    assert "cluster view skipped: no cookie" in result.stdout


def test_namespace_selector_and_context(api_server: ApiServer, tmp_path: Path) -> None:
    empty = {
        "kind": "PodList",
        "apiVersion": "v1",
        "metadata": {"resourceVersion": "77"},
        "items": [],
    }
    for namespace in ["houseparty", "staging", "canary"]:
        api_server.responses[f"/api/v1/namespaces/{namespace}/pods"] = (200, empty)
    kubeconfig = str(write_kubeconfig(tmp_path / "kubeconfig", api_server.url, namespace=None))

    # No namespace in the context: houseparty.
    assert run("--kubeconfig", kubeconfig).exit_code == 0
    # The viewer context's namespace and token.
    assert run("--kubeconfig", kubeconfig, "--context", "viewer").exit_code == 0
    result = run(
        "--kubeconfig",
        kubeconfig,
        "--context",
        "viewer",
        "--namespace",
        "canary",
        "--selector",
        "app=houseparty,track=canary",
    )
    assert result.exit_code == 0, result.output

    seen = [
        (r["path"], r["query"]["labelSelector"], r["authorization"]) for r in api_server.requests
    ]
    assert seen == [
        ("/api/v1/namespaces/houseparty/pods", ["app=houseparty"], "Bearer token-ops"),
        ("/api/v1/namespaces/staging/pods", ["app=houseparty"], "Bearer token-viewer"),
        ("/api/v1/namespaces/canary/pods", ["app=houseparty,track=canary"], "Bearer token-viewer"),
    ]
    assert "no pods match app=houseparty,track=canary in namespace canary" in result.stdout


def test_json_output(api_server: ApiServer, tmp_path: Path) -> None:
    api_server.responses[PODS_PATH] = (200, PODS)
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", api_server.url)

    result = run("--kubeconfig", str(kubeconfig), "--json")

    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["namespace"] == "houseparty"
    assert report["selector"] == "app=houseparty"
    assert report["cluster"] is None
    assert "no cookie" in report["note"]
    pods = {p["name"]: p for p in report["pods"]}
    assert pods[READY] == {
        "name": READY,
        "phase": "Running",
        "ip": "10.244.1.17",
        "ready": True,
        "k8s_node": "worker-a",
        "sidecar_node": "sidecar@10.244.1.17",
        "python_node": "py@10.244.1.17",
        "terminating": False,
        "restarts": 0,
        "in_ring": None,
    }
    pending = pods[PENDING]
    assert (pending["phase"], pending["ip"], pending["sidecar_node"]) == ("Pending", None, None)
    assert (pods[NOT_READY]["ready"], pods[NOT_READY]["python_node"]) == (False, "py@10.244.2.9")


def test_a_terminating_pod_is_shown_and_not_asked(api_server: ApiServer, tmp_path: Path) -> None:
    pods = copy.deepcopy(PODS)
    ready = next(p for p in pods["items"] if p["metadata"]["name"] == READY)
    # What the API server shows of a pod being deleted that restarted its sidecar twice.
    ready["metadata"]["deletionTimestamp"] = "2026-11-29T10:42:07Z"
    ready["metadata"]["deletionGracePeriodSeconds"] = 60
    ready["status"]["initContainerStatuses"][0]["restartCount"] = 2
    api_server.responses[PODS_PATH] = (200, pods)
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", api_server.url)

    result = run("--kubeconfig", str(kubeconfig), cookie="not-used")

    assert result.exit_code == 0, result.output
    row = table_rows(result.stdout)[READY]
    assert (row["phase"], row["ready"], row["restarts"]) == ("Running, terminating", "yes", "2")
    # The only ready pod is on its way out: its sidecar is not the one to ask for the ring.
    assert "cluster view skipped: no ready pod with an IP that is not terminating" in result.stdout


def test_forbidden_is_one_clear_line(api_server: ApiServer, tmp_path: Path) -> None:
    api_server.responses[PODS_PATH] = (403, FORBIDDEN)
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", api_server.url)

    line = error_line(run("--kubeconfig", str(kubeconfig)))

    assert "403 Forbidden" in line
    assert 'cannot list resource "pods" in API group "" in the namespace "houseparty"' in line


def test_unreachable_api_server_is_one_clear_line(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", closed)

    line = error_line(run("--kubeconfig", str(kubeconfig)), code=5)

    assert f"cannot reach the Kubernetes API at {closed}" in line
    assert "Connection refused" in line


def test_no_configuration_is_one_clear_line(tmp_path: Path) -> None:
    nowhere = tmp_path / "nowhere"
    line = error_line(run("--kubeconfig", str(nowhere)), code=2)
    assert f"cannot load the Kubernetes configuration from kubeconfig {nowhere}" in line

    # In a pod (this is how Kubernetes tells it) whose service account token is not mounted.
    line = error_line(run(KUBERNETES_SERVICE_HOST="127.0.0.1", KUBERNETES_SERVICE_PORT="1"), code=2)
    assert "cannot load the Kubernetes configuration from the in-cluster service account" in line

    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", "http://127.0.0.1:1")
    line = error_line(run("--kubeconfig", str(kubeconfig), "--context", "nosuch"), code=2)
    assert "nosuch" in line


def test_bad_name_template_is_a_usage_error() -> None:
    result = run("--sidecar-name-template", "sidecar@{pod}")
    assert result.exit_code == 2
    assert "{ip}" in result.stderr


# -- the join with the cluster's own view ----------------------------------------------------


@pytest.fixture
def two_pods(tmp_path: Path) -> Iterator[Cluster]:
    cluster = start_cluster(tmp_path, pods=2)
    try:
        yield cluster
    finally:
        if cluster.runner.is_running():
            cluster.runner.down(timeout=60)


def loopback_pods() -> dict[str, Any]:
    """The recorded pods with loopback IPs: the ready one where the local cluster runs."""
    pods = copy.deepcopy(PODS)
    ips = {READY: "127.0.0.1", NOT_READY: "127.0.0.2"}
    for pod in pods["items"]:
        ip = ips.get(pod["metadata"]["name"])
        if ip:
            pod["status"]["podIP"] = ip
            pod["status"]["podIPs"] = [{"ip": ip}]
    return pods


def test_join_with_the_ring(two_pods: Cluster, api_server: ApiServer, tmp_path: Path) -> None:
    api_server.responses[PODS_PATH] = (200, loopback_pods())
    kubeconfig = str(write_kubeconfig(tmp_path / "kubeconfig", api_server.url))
    ring_member, other_member = two_pods.sidecars
    # Every pod IP names a sidecar1<tag>: the ready pod's is the cluster's first sidecar,
    # the not-ready pod's (127.0.0.2) is on no ring, and sidecar2<tag> runs in no listed pod.
    template = ring_member.replace("127.0.0.1", "{ip}")

    result = run(
        "--kubeconfig", kubeconfig, "--sidecar-name-template", template, cookie=two_pods.cookie
    )

    assert result.exit_code == 0, result.output
    rows = table_rows(result.stdout)
    assert (rows[READY]["sidecar node"], rows[READY]["in ring"]) == (ring_member, "yes")
    assert rows[NOT_READY]["sidecar node"] == template.format(ip="127.0.0.2")
    assert (rows[NOT_READY]["in ring"], rows[PENDING]["in ring"]) == ("no", "no")
    assert f"pods Kubernetes shows that the ring lacks: {PENDING}, {NOT_READY}" in result.stdout
    assert f"ring members Kubernetes does not show: {other_member}" in result.stdout

    result = run(
        "--kubeconfig",
        kubeconfig,
        "--sidecar-name-template",
        template,
        "--json",
        "--cookie",
        two_pods.cookie,
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["note"] is None
    assert report["cluster"] == {
        "via": ring_member,
        "ring": sorted(two_pods.sidecars),
        "missing_from_ring": [PENDING, NOT_READY],
        "missing_from_k8s": [other_member],
    }
    assert {p["name"]: p["in_ring"] for p in report["pods"]} == {
        READY: True,
        PENDING: False,
        NOT_READY: False,
    }

    # A sidecar name nobody answers to: the pods are still listed, with a one-line note.
    nobody = f"nobody_{secrets.token_hex(3)}@{{ip}}"
    result = run(
        "--kubeconfig", kubeconfig, "--sidecar-name-template", nobody, cookie=two_pods.cookie
    )
    assert result.exit_code == 0, result.output
    assert set(table_rows(result.stdout)) == {READY, PENDING, NOT_READY}
    assert f"cluster view skipped: cannot reach {nobody.format(ip='127.0.0.1')}" in result.stdout
