"""What can be checked of `deploy/` on a machine without a Docker engine or a cluster: the
compose file as the compose client resolves it, the Kustomize output against the Kubernetes
API schemas (strict: an unknown field is an error), the probes, secrets and least privilege
the manifests promise, and an image build context that holds every file the services load."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from runtime.redis_primary import parse_sentinels
from services.provision import new_credentials
from services.registry import SERVICES

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
KUBERNETES = "1.30.0"


def _compose_client() -> list[str] | None:
    if subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    return ["docker-compose"] if shutil.which("docker-compose") else None


COMPOSE = _compose_client()
needs_compose = pytest.mark.skipif(COMPOSE is None, reason="no compose client (.ci/run installs)")
needs_kubectl = pytest.mark.skipif(shutil.which("kubectl") is None, reason="no kubectl")


def compose_config(env_file: Path) -> subprocess.CompletedProcess[str]:
    assert COMPOSE is not None
    return subprocess.run(
        [*COMPOSE, "-f", str(DEPLOY / "compose.yaml"), "--env-file", str(env_file), "config"],
        capture_output=True,
        text=True,
        cwd=DEPLOY,
    )


@needs_compose
def test_compose_resolves_with_the_example_environment() -> None:
    result = compose_config(DEPLOY / "compose.env.example")
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load(result.stdout)
    services = config["services"]
    assert {"postgres", "redis", "setup", *SERVICES} <= set(services)
    users = {name: c.user for name, c in new_credentials(list(SERVICES.values())).items()}
    for name in SERVICES:
        service = services[name]
        assert service["deploy"]["replicas"] == 2
        assert service["command"] == ["serve", name]
        assert service["depends_on"]["setup"]["condition"] == "service_completed_successfully"
        env = service["environment"]
        # Each service logs in as the role and ACL user `party provision` made for it.
        assert env["PARTY_DATABASE_URL"].startswith(f"postgresql://{users[name]}:")
        assert env["PARTY_REDIS_URL"].startswith(f"redis://{users[name]}:")
        assert env["PARTY_MIGRATE_ON_START"] == "false"
    assert services["setup"]["command"][:2] == ["provision", "--passwords-from-env"]


@needs_compose
def test_compose_names_a_missing_secret(tmp_path: Path) -> None:
    empty = tmp_path / "empty.env"
    empty.write_text("")
    result = compose_config(empty)
    assert result.returncode != 0
    assert "set POSTGRES_PASSWORD in deploy/.env" in result.stderr + result.stdout


def test_every_compose_variable_is_in_the_example_environment() -> None:
    used = set(re.findall(r"\$\{([A-Z_]+)", (DEPLOY / "compose.yaml").read_text()))
    example = {
        line.split("=", 1)[0]
        for line in (DEPLOY / "compose.env.example").read_text().splitlines()
        if line and not line.startswith("#")
    }
    assert used <= example, used - example


def kustomize(overlay: str) -> list[dict[str, Any]]:
    out = subprocess.run(
        ["kubectl", "kustomize", str(DEPLOY / "k8s" / overlay)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def of_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


@needs_kubectl
@pytest.mark.parametrize("overlay", ["base", "overlays/production"])
def test_the_manifests_are_valid_kubernetes(overlay: str) -> None:
    docs = kustomize(overlay)
    for doc in docs:
        kubernetes_validate.validate(doc, KUBERNETES, strict=True)
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == "party", doc["metadata"]["name"]


@needs_kubectl
@pytest.mark.parametrize("overlay", ["base", "overlays/production"])
def test_each_service_is_probed_sized_and_holds_only_its_own_credentials(overlay: str) -> None:
    deployments = of_kind(kustomize(overlay), "Deployment")
    assert set(deployments) == {f"party-{name}" for name in SERVICES}
    for name in SERVICES:
        pod = deployments[f"party-{name}"]["spec"]["template"]["spec"]
        [container] = pod["containers"]
        assert container["args"] == ["serve", name]
        assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
        assert container["livenessProbe"]["httpGet"]["path"] == "/health"
        assert {"cpu", "memory"} <= set(container["resources"]["requests"])
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        secrets = {
            e["name"]: e["valueFrom"]["secretKeyRef"]["name"]
            for e in container["env"]
            if "valueFrom" in e
        }
        assert secrets["PARTY_DATABASE_URL"] == f"party-{name}"
        assert secrets["PARTY_REDIS_URL"] == f"party-{name}"
        assert "party-admin" not in secrets.values()
        assert not any(e.get("value") for e in container["env"])  # no secret in plain text


@needs_kubectl
def test_only_the_setup_job_sees_the_administrators_credentials() -> None:
    [job] = of_kind(kustomize("base"), "Job").values()
    [container] = job["spec"]["template"]["spec"]["containers"]
    assert container["args"][:2] == ["provision", "--passwords-from-env"]
    secrets = {e["name"]: e["valueFrom"]["secretKeyRef"]["name"] for e in container["env"]}
    assert secrets["PARTY_DATABASE_URL"] == "party-admin"
    for name in SERVICES:
        assert secrets[f"PARTY_PASSWORD_{name.upper()}"] == f"party-{name}"


@needs_kubectl
def test_production_runs_replicas_behind_sentinel_and_scales_scoring() -> None:
    docs = kustomize("overlays/production")
    for deployment in of_kind(docs, "Deployment").values():
        assert deployment["spec"]["replicas"] >= 2
        env = {e["name"] for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert "PARTY_AUTH_PUBLIC_KEY" in env
        assert "PARTY_AUTH_SECRET" not in env
    [config] = of_kind(docs, "ConfigMap").values()
    assert len(parse_sentinels(config["data"]["PARTY_REDIS_SENTINELS"])) == 3
    [autoscaler] = of_kind(docs, "HorizontalPodAutoscaler").values()
    assert autoscaler["spec"]["scaleTargetRef"]["name"] == "party-scoring"
    assert autoscaler["spec"]["minReplicas"] >= 2
    budgets = of_kind(docs, "PodDisruptionBudget")
    assert len(budgets) == len(SERVICES)


def test_the_image_holds_every_file_the_services_load(tmp_path: Path) -> None:
    """The Dockerfile's build stage, without Docker: copy what it copies, build the wheel it
    installs, and find every migration, regulation and schema in it."""
    context = tmp_path / "context"
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    for line in re.findall(r"^COPY (?!--from)(.+)$", dockerfile, flags=re.M):
        *sources, target = line.split()
        for source in sources:
            path = ROOT / source
            assert path.exists(), source
            destination = context / (source if target in (".", "./") else target)
            if path.is_dir():
                shutil.copytree(path, destination, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                destination.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(path, destination)
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(context)],
        check=True,
    )
    [wheel] = wheels.glob("*.whl")
    packaged = set(zipfile.ZipFile(wheel).namelist())
    needed = {
        str(path.relative_to(ROOT))
        for folder in ("runtime", "services", "contracts")
        for path in (ROOT / folder).rglob("*")
        if path.suffix in {".sql", ".yaml", ".json"} and "__pycache__" not in path.parts
    }
    assert needed <= packaged, needed - packaged
    assert "services/cli.py" in packaged
