"""Readers for what ``deploy/`` ships: the kustomize base and overlays, the Dockerfile, the
entry-point scripts and the environment contract table of ``deploy/README.md``.

They are small, strict parsers: anything they do not understand is an error rather than
something silently skipped, so that a check built on them cannot pass by reading nothing.
"""

from __future__ import annotations

import copy
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "DEPLOY",
    "K8S",
    "KUSTOMIZATIONS",
    "OVERLAYS",
    "REPO",
    "DockerStage",
    "Instruction",
    "Manifest",
    "containers",
    "contract_variables",
    "env_names",
    "json_patch",
    "load_base_files",
    "parse_dockerfile",
    "render",
    "render_base",
    "render_with_kubectl",
    "script_env_reads",
    "selects",
    "the",
]

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
K8S = DEPLOY / "k8s"
# The kustomizations a user applies: the base and its overlays.
OVERLAYS = {"dev": DEPLOY / "overlays" / "dev", "prod": DEPLOY / "overlays" / "prod"}
KUSTOMIZATIONS = {"base": K8S, **OVERLAYS}

Manifest = dict[str, Any]

# Kinds that live in no namespace; kustomize's namespace transformer leaves them alone.
_CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "PersistentVolume"}


def _load_documents(path: Path) -> list[Manifest]:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    for doc in docs:
        if not isinstance(doc, dict) or "kind" not in doc or "apiVersion" not in doc:
            raise ValueError(f"{path}: a document without kind/apiVersion")
    return docs


def load_base_files() -> dict[str, list[Manifest]]:
    """Every YAML file of ``deploy/k8s`` except the kustomization, by file name."""
    return {
        p.name: _load_documents(p)
        for p in sorted(K8S.glob("*.yaml"))
        if p.name != "kustomization.yaml"
    }


# What this renderer implements of a kustomization; anything else is refused, since it
# would be ignored here while kustomize applies it.
_KUSTOMIZATION_FIELDS = {
    "apiVersion",
    "kind",
    "namespace",
    "resources",
    "images",
    "labels",
    "replicas",
    "patches",
}
_JSON_PATCH_OPS = {"add", "remove", "replace"}


def _kustomization(directory: Path) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unknown = set(data) - _KUSTOMIZATION_FIELDS
    if unknown:
        raise ValueError(
            f"{directory}/kustomization.yaml uses fields this renderer lacks: {unknown}"
        )
    return data


def _set_image(container: dict[str, Any], images: list[dict[str, str]]) -> None:
    name = container["image"]
    base, _, tag = name.partition(":")
    for rule in images:
        if rule["name"] == base:
            new_base = rule.get("newName", base)
            new_tag = rule.get("newTag", tag)
            container["image"] = f"{new_base}:{new_tag}" if new_tag else new_base


def _add_labels(doc: Manifest, rule: dict[str, Any]) -> None:
    if set(rule) - {"pairs", "includeSelectors", "includeTemplates"}:
        raise ValueError(f"labels entry with fields this renderer lacks: {rule}")
    if rule.get("includeSelectors"):
        raise ValueError("labels with includeSelectors are not implemented here")
    doc["metadata"].setdefault("labels", {}).update(rule["pairs"])
    template = doc.get("spec", {}).get("template")
    if rule.get("includeTemplates") and template is not None:
        template.setdefault("metadata", {}).setdefault("labels", {}).update(rule["pairs"])


def _pointer(path: str) -> list[str]:
    if not path.startswith("/"):
        raise ValueError(f"a JSON pointer starts with '/': {path!r}")
    return [part.replace("~1", "/").replace("~0", "~") for part in path[1:].split("/")]


def json_patch(doc: Manifest, ops: list[dict[str, Any]]) -> None:
    """RFC 6902 add, remove and replace, as kustomize applies an inline patch of ops."""
    for op in ops:
        if op["op"] not in _JSON_PATCH_OPS:
            raise ValueError(f"JSON patch op {op['op']!r} is not implemented here")
        *parents, last = _pointer(op["path"])
        node: Any = doc
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if isinstance(node, list):
            if op["op"] == "add":
                node.insert(len(node) if last == "-" else int(last), op["value"])
            elif op["op"] == "remove":
                del node[int(last)]
            else:
                node[int(last)] = op["value"]
        else:
            if op["op"] != "add" and last not in node:
                raise KeyError(f"{op['op']} of a missing {op['path']}")
            if op["op"] == "remove":
                del node[last]
            else:
                node[last] = op["value"]


def _patch(docs: list[Manifest], entry: dict[str, Any]) -> None:
    if set(entry) != {"target", "patch"}:
        raise ValueError(f"only inline patches with a target are implemented here: {entry}")
    target = entry["target"]
    if set(target) - {"kind", "name"}:
        raise ValueError(f"patch target with fields this renderer lacks: {target}")
    ops = yaml.safe_load(entry["patch"])
    if not isinstance(ops, list):
        raise ValueError("only JSON 6902 patches (a list of ops) are implemented here")
    hits = [
        d
        for d in docs
        if d["kind"] == target.get("kind", d["kind"])
        and d["metadata"]["name"] == target.get("name", d["metadata"]["name"])
    ]
    if not hits:
        raise ValueError(f"patch target {target} matches nothing")
    for doc in hits:
        json_patch(doc, ops)


def render(directory: Path = K8S) -> list[Manifest]:
    """A kustomization as ``kubectl kustomize`` renders it, for the fields it uses:
    ``resources`` (files and other kustomizations), ``namespace``, ``labels`` (without
    selectors), inline JSON 6902 ``patches``, ``replicas`` and ``images``, applied in
    kustomize's order."""
    kust = _kustomization(directory)
    out: list[Manifest] = []
    for name in kust["resources"]:
        path = (directory / name).resolve()
        if path.is_dir():
            out.extend(render(path))
        else:
            out.extend(copy.deepcopy(d) for d in _load_documents(path))
    for entry in kust.get("patches", []):
        _patch(out, entry)
    namespace = kust.get("namespace")
    for doc in out:
        if namespace and doc["kind"] not in _CLUSTER_SCOPED:
            doc["metadata"]["namespace"] = namespace
        if namespace and doc["kind"] in {"RoleBinding", "ClusterRoleBinding"}:
            for subject in doc.get("subjects", []):
                if subject.get("kind") == "ServiceAccount":
                    subject["namespace"] = namespace
        for rule in kust.get("labels", []):
            _add_labels(doc, rule)
        for rule in kust.get("replicas", []):
            if doc["metadata"]["name"] == rule["name"] and "replicas" in doc.get("spec", {}):
                doc["spec"]["replicas"] = rule["count"]
        for c in containers(doc):
            _set_image(c, kust.get("images", []))
    return out


def render_base() -> list[Manifest]:
    """The base as ``kubectl apply -k deploy/k8s`` would send it."""
    return render(K8S)


def render_with_kubectl(directory: Path = K8S) -> list[Manifest] | None:
    """``kubectl kustomize <directory>`` when kubectl is installed, else None."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        return None
    done = subprocess.run(
        [kubectl, "kustomize", str(directory)], capture_output=True, text=True, timeout=60
    )
    if done.returncode != 0:
        raise RuntimeError(f"kubectl kustomize failed: {done.stderr}")
    return [d for d in yaml.safe_load_all(done.stdout) if d is not None]


def the(docs: list[Manifest], kind: str) -> Manifest:
    """The single document of ``kind``."""
    found = [d for d in docs if d["kind"] == kind]
    if len(found) != 1:
        raise AssertionError(f"expected exactly one {kind}, found {len(found)}")
    return found[0]


def containers(doc: Manifest) -> list[dict[str, Any]]:
    """The containers and init containers of a workload's pod template ([] otherwise)."""
    spec = doc.get("spec", {}).get("template", {}).get("spec")
    if spec is None:
        return []
    return [*spec.get("initContainers", []), *spec.get("containers", [])]


def env_names(container: dict[str, Any]) -> set[str]:
    return {e["name"] for e in container.get("env", [])}


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Whether a LabelSelector (matchLabels, matchExpressions) selects ``labels``."""
    if not selector:
        return False
    for key, value in selector.get("matchLabels", {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions", []):
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        ok = {
            "In": key in labels and labels[key] in values,
            "NotIn": key not in labels or labels[key] not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[op]
        if not ok:
            return False
    return True


# -- entry-point scripts ------------------------------------------------------------------

_VAR_USE = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)")


def script_env_reads(path: Path) -> set[str]:
    """The upper-case variables a shell script expands (``$VAR``, ``${VAR...}``).

    The scripts keep their own variables lower case, so the upper-case ones are exactly
    the environment they read. Comments are skipped.
    """
    names: set[str] = set()
    for line in path.read_text().splitlines():
        code = line.split("#", 1)[0] if line.lstrip().startswith("#") else line
        # A '#' inside ${VAR#pattern} or a string is code, so only whole-line comments
        # are dropped; the scripts put no trailing comments after a '$'.
        names.update(n for n in _VAR_USE.findall(code) if n.isupper())
    return names


# -- the contract table -------------------------------------------------------------------

_CONTRACT_ROW = re.compile(r"^\|\s*`([A-Z][A-Z0-9_]*)`\s*\|")


def contract_variables() -> dict[str, str]:
    """The rows of the environment-contract table of deploy/README.md: name -> default."""
    text = (DEPLOY / "README.md").read_text()
    section = text.split("## Environment contract", 1)
    if len(section) != 2:
        raise ValueError("deploy/README.md has no '## Environment contract' section")
    rows: dict[str, str] = {}
    for line in section[1].split("\n## ", 1)[0].splitlines():
        m = _CONTRACT_ROW.match(line)
        if m:
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            rows[m.group(1)] = cells[-1]
    return rows


# -- Dockerfile ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    keyword: str  # upper case: FROM, RUN, COPY ...
    args: str  # the rest of the (joined) line
    line: int

    def words(self) -> list[str]:
        """Arguments split as Docker does for the shell form; JSON form as a list."""
        text = self.args.strip()
        if text.startswith("["):
            return list(yaml.safe_load(text))
        return shlex.split(text)


@dataclass
class DockerStage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> Iterator[Instruction]:
        return (i for i in self.instructions if i.keyword == keyword)


def parse_dockerfile(path: Path) -> list[DockerStage]:
    """Stages of a Dockerfile: comments dropped, ``\\`` continuations joined."""
    stages: list[DockerStage] = []
    pending = ""
    start = 0
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue  # comment lines inside a continuation are removed by Docker
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        text = pending + stripped
        pending = ""
        keyword, _, args = text.partition(" ")
        instr = Instruction(keyword.upper(), args.strip(), start)
        if instr.keyword == "FROM":
            words = [w for w in instr.words() if not w.startswith("--")]
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            if len(words) not in (1, 3):
                raise ValueError(f"line {start}: cannot read FROM {args!r}")
            stages.append(DockerStage(words[0], name))
        elif not stages:
            if instr.keyword != "ARG":
                raise ValueError(f"line {start}: {instr.keyword} before the first FROM")
        else:
            stages[-1].instructions.append(instr)
    if pending:
        raise ValueError("Dockerfile ends inside a line continuation")
    return stages
