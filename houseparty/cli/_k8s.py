"""``houseparty k8s status``: the HouseParty pods Kubernetes shows, joined with the ring.

Kubernetes and the Erlang cluster each have their own idea of which pods exist: the API
server lists the pods of the Deployment, and the sidecars place names on a ring of the
sidecar nodes that have joined. During a rollout, a crash loop or a network split the
two disagree, and that disagreement is what this command shows.

The pure part turns API objects into rows (:func:`pod_rows`) and joins them with a ring
(:func:`join_ring`). The I/O part loads a kubeconfig or the in-cluster service account
(:func:`load_core_api`), lists the pods (:func:`list_pods`) and asks one sidecar for its
ring (:func:`cluster_ring`); :func:`k8s_status` runs them in order. The ``kubernetes``
package is imported by the I/O functions only, so that importing this module (and
starting the CLI) stays fast.

Node names are built the way ``deploy/entrypoint-*.sh`` builds them from the pod IP:
``sidecar@<POD_IP>`` and ``py@<POD_IP>``.
"""

from __future__ import annotations

import json
import os
import re
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.markup import escape
from rich.table import Table

from houseparty._certs import env_tls_dir
from houseparty._client import HouseParty, from_term
from houseparty._errors import ApiError, BadArgument, ConnectError, HousePartyError
from py_nodes import PyNodesError

if TYPE_CHECKING:
    from kubernetes.client import CoreV1Api

__all__ = [
    "DEFAULT_NAMESPACE",
    "DEFAULT_SELECTOR",
    "PYTHON_NAME_TEMPLATE",
    "SIDECAR_NAME_TEMPLATE",
    "K8sStatus",
    "PodRow",
    "RingView",
    "check_name_template",
    "cluster_ring",
    "first_ready",
    "join_ring",
    "k8s_status",
    "list_pods",
    "load_core_api",
    "pod_row",
    "pod_rows",
    "status_notes",
    "status_table",
]

DEFAULT_NAMESPACE = "houseparty"
# The pod template's label in deploy/k8s/deployment.yaml (and HP_K8S_SELECTOR's default).
DEFAULT_SELECTOR = "app=houseparty"
SIDECAR_NAME_TEMPLATE = "sidecar@{ip}"
PYTHON_NAME_TEMPLATE = "py@{ip}"
SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
# (connect, read) seconds for the API server; one retry, so that an unroutable server
# costs seconds rather than urllib3's default four attempts.
API_TIMEOUT_S = (5.0, 15.0)
API_RETRIES = 1
ERLANG_TIMEOUT_S = 5.0


# -- pure: rows from API objects -------------------------------------------------------------


def check_name_template(template: str) -> str:
    """``template`` if it builds node names from ``{ip}``; else :class:`ValueError`."""
    try:
        fields = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as exc:
        raise ValueError(f"bad node name template {template!r}: {exc}") from None
    if fields != {"ip"}:
        raise ValueError(f"a node name template uses {{ip}} and no other field, not {template!r}")
    name, at, host = template.partition("@")
    if not (name and at and host):
        raise ValueError(f"a node name template looks like name@{{ip}}, not {template!r}")
    return template


@dataclass(frozen=True)
class PodRow:
    """One pod as Kubernetes shows it, with the Erlang node names it runs."""

    name: str
    phase: str
    ip: str | None
    ready: bool
    k8s_node: str | None
    sidecar_node: str | None
    python_node: str | None
    terminating: bool = False
    restarts: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "phase": self.phase,
            "ip": self.ip,
            "ready": self.ready,
            "k8s_node": self.k8s_node,
            "sidecar_node": self.sidecar_node,
            "python_node": self.python_node,
            "terminating": self.terminating,
            "restarts": self.restarts,
        }


def pod_row(
    pod: Any,
    sidecar_template: str = SIDECAR_NAME_TEMPLATE,
    python_template: str = PYTHON_NAME_TEMPLATE,
) -> PodRow:
    """A row from a ``V1Pod``. Node names need the pod IP: a pod without one has none yet."""
    metadata, spec, status = pod.metadata, pod.spec, pod.status
    ip = (status.pod_ip if status else None) or None
    conditions = (status.conditions if status else None) or []
    ready = any(c.type == "Ready" and c.status == "True" for c in conditions)
    # The sidecar is a native sidecar: its status is among the init containers'.
    statuses = [
        *((status.init_container_statuses if status else None) or []),
        *((status.container_statuses if status else None) or []),
    ]
    return PodRow(
        name=metadata.name,
        phase=(status.phase if status else None) or "Unknown",
        ip=ip,
        ready=ready,
        k8s_node=(spec.node_name if spec else None) or None,
        sidecar_node=sidecar_template.format(ip=ip) if ip else None,
        python_node=python_template.format(ip=ip) if ip else None,
        terminating=metadata.deletion_timestamp is not None,
        restarts=sum(s.restart_count or 0 for s in statuses),
    )


def pod_rows(
    pods: Iterable[Any],
    sidecar_template: str = SIDECAR_NAME_TEMPLATE,
    python_template: str = PYTHON_NAME_TEMPLATE,
) -> list[PodRow]:
    """Rows of ``pods`` (``V1Pod``), by pod name."""
    rows = [pod_row(p, sidecar_template, python_template) for p in pods]
    return sorted(rows, key=lambda r: r.name)


@dataclass(frozen=True)
class RingView:
    """The cluster's ring as one sidecar (``via``) sees it, against the pod list."""

    via: str
    ring: tuple[str, ...]
    # Pods Kubernetes shows whose sidecar is not on the ring (pods without an IP too).
    missing_from_ring: tuple[str, ...]
    # Ring members that no listed pod runs.
    missing_from_k8s: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "via": self.via,
            "ring": list(self.ring),
            "missing_from_ring": list(self.missing_from_ring),
            "missing_from_k8s": list(self.missing_from_k8s),
        }


def join_ring(rows: Iterable[PodRow], ring: Iterable[str], via: str) -> RingView:
    """What Kubernetes shows and the ring lacks, and the other way round."""
    rows = list(rows)
    members = sorted(set(ring))
    sidecars = {r.sidecar_node for r in rows if r.sidecar_node}
    return RingView(
        via=via,
        ring=tuple(members),
        missing_from_ring=tuple(r.name for r in rows if r.sidecar_node not in members),
        missing_from_k8s=tuple(m for m in members if m not in sidecars),
    )


def first_ready(rows: Iterable[PodRow]) -> PodRow | None:
    """The pod to ask for the ring: ready, so its sidecar has joined, and with an IP."""
    return next((r for r in rows if r.ready and r.sidecar_node and not r.terminating), None)


@dataclass(frozen=True)
class K8sStatus:
    """Everything ``houseparty k8s status`` reports."""

    namespace: str
    selector: str
    pods: tuple[PodRow, ...]
    cluster: RingView | None = None
    # Why there is no cluster view, when there is none.
    note: str | None = None
    # The kubeconfig file or the in-cluster service account.
    source: str = "kubeconfig"

    def in_ring(self, row: PodRow) -> bool | None:
        if self.cluster is None:
            return None
        return row.name not in self.cluster.missing_from_ring

    def to_json(self) -> dict[str, Any]:
        return {
            "namespace": self.namespace,
            "selector": self.selector,
            "source": self.source,
            "pods": [{**r.to_json(), "in_ring": self.in_ring(r)} for r in self.pods],
            "cluster": self.cluster.to_json() if self.cluster else None,
            "note": self.note,
        }


def _yes_no(value: bool | None) -> str:
    if value is None:
        return "-"
    return "[green]yes[/]" if value else "[red]no[/]"


def status_table(status: K8sStatus) -> Table:
    """The pods as a rich table."""
    table = Table(
        title=f"HouseParty pods in namespace {status.namespace} ({escape(status.selector)})"
    )
    for column in [
        "pod",
        "phase",
        "ready",
        "IP",
        "k8s node",
        "sidecar node",
        "python node",
        "restarts",
        "in ring",
    ]:
        table.add_column(column)
    for r in status.pods:
        phase = f"{r.phase}, terminating" if r.terminating else r.phase
        table.add_row(
            escape(r.name),
            escape(phase),
            _yes_no(r.ready),
            escape(r.ip or "-"),
            escape(r.k8s_node or "-"),
            escape(r.sidecar_node or "-"),
            escape(r.python_node or "-"),
            str(r.restarts),
            _yes_no(status.in_ring(r)),
        )
    return table


def status_notes(status: K8sStatus) -> list[str]:
    """The lines (rich markup) under the table: the join with the ring, or why there is none."""
    if not status.pods:
        lines = [f"no pods match {escape(status.selector)} in namespace {status.namespace}"]
    else:
        lines = []
    view = status.cluster
    if view is None:
        if status.note:
            lines.append(f"cluster view skipped: {escape(status.note)}")
        return lines
    lines.append(f"ring seen from {escape(view.via)}: {len(view.ring)} sidecars")
    if view.missing_from_ring:
        lines.append(
            "[red]pods Kubernetes shows that the ring lacks:[/] "
            + escape(", ".join(view.missing_from_ring))
        )
    if view.missing_from_k8s:
        lines.append(
            "[red]ring members Kubernetes does not show:[/] "
            + escape(", ".join(view.missing_from_k8s))
        )
    if not (view.missing_from_ring or view.missing_from_k8s):
        lines.append("[green]Kubernetes and the ring agree[/]")
    return lines


# -- I/O: the Kubernetes API -----------------------------------------------------------------


def _context_namespace(config_file: str | None, context: str | None) -> str | None:
    from kubernetes import config

    # The kubernetes package leaves its config loaders unannotated.
    contexts, active = config.list_kube_config_contexts(config_file=config_file)  # type: ignore[no-untyped-call]
    chosen = (
        active if context is None else next((c for c in contexts if c.get("name") == context), None)
    )
    namespace = ((chosen or {}).get("context") or {}).get("namespace")
    return str(namespace) if namespace else None


def load_core_api(
    kubeconfig: str | None = None,
    context: str | None = None,
    environ: Mapping[str, str] = os.environ,
) -> tuple[CoreV1Api, str | None, str]:
    """A ``CoreV1Api``, the namespace its configuration names, and where it came from.

    In a pod (``KUBERNETES_SERVICE_HOST`` set) without ``kubeconfig``, ``KUBECONFIG`` or
    ``context``, the service account; otherwise the kubeconfig.
    """
    from kubernetes import client, config

    configuration = client.Configuration()
    in_cluster = bool(
        environ.get("KUBERNETES_SERVICE_HOST")
        and kubeconfig is None
        and context is None
        and not environ.get("KUBECONFIG")
    )
    if in_cluster:
        source = "the in-cluster service account"
    else:
        source = f"kubeconfig {kubeconfig or environ.get('KUBECONFIG') or '~/.kube/config'}"
    try:
        if in_cluster:
            config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
            namespace = _read_service_account_namespace()
        else:
            config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=kubeconfig, context=context, client_configuration=configuration
            )
            namespace = _context_namespace(kubeconfig, context)
    except (config.ConfigException, OSError) as exc:
        # Not the API's fault: the configuration the user (or the pod) gives is unusable.
        raise BadArgument(
            source, f"cannot load the Kubernetes configuration from {source}: {exc}"
        ) from None
    configuration.retries = API_RETRIES
    return client.CoreV1Api(client.ApiClient(configuration)), namespace, source


def _read_service_account_namespace() -> str | None:
    try:
        return SERVICE_ACCOUNT_NAMESPACE.read_text().strip() or None
    except OSError:
        return None


_CONNECTION_PREFIX = re.compile(r"^<?[\w.]+(?: object at 0x[0-9a-f]+>|\([^)]*\))?: ")


def _reason(error: BaseException) -> str:
    text = str(getattr(error, "reason", None) or error)
    return _CONNECTION_PREFIX.sub("", text).replace("\n", " ")


def _refusal(exc: Any, what: str) -> ApiError:
    """An ``ApiException`` as one line: the ``Status`` message the API server sent."""
    message = ""
    try:
        body = json.loads(exc.body or "")
        if isinstance(body, dict):
            message = str(body.get("message") or "")
    except ValueError:
        message = ""
    if not message:
        message = (exc.body or "").strip().replace("\n", " ")[:200]
    code = f"{exc.status} {exc.reason}".strip()
    text = f"the Kubernetes API refused to {what} ({code})"
    return ApiError(exc.status, f"{text}: {message}" if message else text)


def list_pods(api: CoreV1Api, namespace: str, selector: str) -> list[Any]:
    """The ``V1Pod`` items of ``namespace`` matching ``selector``.

    Raises :class:`ConnectError` when the API server cannot be reached and
    :class:`ApiError` (``reason`` is the HTTP status) when it refuses.
    """
    import urllib3
    from kubernetes.client.exceptions import ApiException

    host = api.api_client.configuration.host
    try:
        pod_list = api.list_namespaced_pod(
            namespace, label_selector=selector, _request_timeout=API_TIMEOUT_S
        )
    except ApiException as exc:
        if not exc.status:  # raised by the client itself, e.g. for a TLS failure
            raise ConnectError(f"cannot reach the Kubernetes API at {host}: {exc.reason}") from None
        raise _refusal(exc, f"list pods in namespace {namespace}") from None
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise ConnectError(f"cannot reach the Kubernetes API at {host}: {_reason(exc)}") from None
    except ValueError as exc:
        raise ConnectError(
            f"the Kubernetes API at {host} sent something that is not a pod list: "
            + str(exc).splitlines()[0]
        ) from None
    return list(pod_list.items or [])


# -- I/O: the cluster's own view -------------------------------------------------------------


def cluster_ring(sidecar: str, cookie: str, timeout: float = ERLANG_TIMEOUT_S) -> list[str]:
    """The sidecar nodes on the ring, as ``sidecar`` sees it (``houseparty:pod_status/0``)."""
    try:
        with HouseParty(sidecar, cookie=cookie, timeout=timeout, tls=env_tls_dir()) as hp:
            status = from_term(hp.rpc("houseparty", "pod_status", []))
    except HousePartyError:
        raise
    except (PyNodesError, OSError, TimeoutError) as exc:
        raise ConnectError(f"cannot reach {sidecar}: {exc}") from None
    if not isinstance(status, dict) or not isinstance(status.get("ring"), list):
        raise ConnectError(f"{sidecar} answered pod_status without a ring: {status!r}")
    return [str(node) for node in status["ring"]]


def k8s_status(
    *,
    namespace: str | None = None,
    selector: str | None = None,
    context: str | None = None,
    kubeconfig: str | None = None,
    cookie: str | None = None,
    sidecar_template: str = SIDECAR_NAME_TEMPLATE,
    environ: Mapping[str, str] = os.environ,
) -> K8sStatus:
    """List the pods, then join them with the ring when a sidecar can be reached.

    Kubernetes errors raise (:class:`ConnectError`, :class:`ApiError`); an unreachable
    Erlang cluster or a missing cookie only leaves a :attr:`K8sStatus.note`.
    """
    check_name_template(sidecar_template)
    api, context_namespace, source = load_core_api(kubeconfig, context, environ)
    namespace = namespace or context_namespace or DEFAULT_NAMESPACE
    selector = selector or DEFAULT_SELECTOR
    rows = tuple(pod_rows(list_pods(api, namespace, selector), sidecar_template))
    report = K8sStatus(namespace, selector, rows, source=source)
    if not cookie:
        return replace(report, note="no cookie (--cookie or HOUSEPARTY_COOKIE)")
    target = first_ready(rows)
    if target is None or target.sidecar_node is None:
        return replace(report, note="no ready pod with an IP that is not terminating")
    try:
        ring = cluster_ring(target.sidecar_node, cookie)
    except HousePartyError as exc:
        return replace(report, note=str(exc))
    return replace(report, cluster=join_ring(rows, ring, target.sidecar_node))
