"""What can be checked of `deploy/` on a machine without a Docker engine or a cluster: the
compose file as the compose client resolves it, the Kustomize output against the Kubernetes
API schemas (strict: an unknown field is an error), the probes, secrets and least privilege
the manifests promise, and an image build context that holds every file the services load;
how the signing keys reach each service (its own private key and every public one, never
another's private key, never key material in the repository), and the alert rules."""

from __future__ import annotations

import importlib
import importlib.util
import json
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
from prometheus_client import REGISTRY

from runtime.redis_primary import parse_sentinels
from runtime.signing import KeyDirectory, load_keyring, load_signer
from services.cli import main as party
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


def _mounts(service: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """(source, target, read-only) of each volume, in either syntax a compose client prints."""
    mounts = []
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source, target, *mode = volume.split(":")
            mounts.append((source, target, bool(mode) and "ro" in mode[0].split(",")))
        else:
            mounts.append((volume["source"], volume["target"], bool(volume.get("read_only"))))
    return mounts


def _image_port() -> str:
    found = re.search(r"PARTY_HTTP_PORT=(\d+)", (DEPLOY / "Dockerfile").read_text())
    assert found is not None
    return found.group(1)


@needs_compose
def test_compose_gives_each_service_its_own_private_key_and_every_public_one() -> None:
    result = compose_config(DEPLOY / "compose.env.example")
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    setup = services["setup"]
    command = setup["command"]
    assert command[command.index("--keys-dir") + 1] == "/keys"
    assert "--per-service-dirs" in command
    # The setup job holds every key (`keys`) and writes each service's directory.
    assert {(source, target) for source, target, _ in _mounts(setup)} == {
        ("keys", "/keys"),
        *((f"keys-{name}", f"/keys/{name}") for name in SERVICES),
    }
    port = _image_port()
    for name in SERVICES:
        service = services[name]
        # One key volume, the service's own, read-only: never `keys`, never another's.
        assert _mounts(service) == [(f"keys-{name}", "/keys", True)], name
        env = service["environment"]
        assert env["PARTY_KEYS_DIR"] == "/keys"
        assert env["PARTY_CREATE_MISSING_KEY"] == "false"
        assert json.loads(env["PARTY_SERVICE_URLS"]) == {
            other: f"http://{other}:{port}" for other in SERVICES
        }
    for name, service in services.items():
        if name != "setup":
            assert "keys" not in {source for source, _, _ in _mounts(service)}, name


def test_per_service_dirs_hold_one_private_key_and_follow_a_rotation(tmp_path: Path) -> None:
    """What the compose setup job writes (`party provision --per-service-dirs` does the same
    after creating the keys), and what a rotation with the setup image changes."""
    keys = tmp_path / "keys"
    assert party(["keys", "init", "--keys-dir", str(keys), "--per-service-dirs"]) == 0
    public = {f"{name}.keys.json" for name in SERVICES}
    for name in SERVICES:
        directory = keys / name
        # The roster alone also holds the personal-data key (it seals and erases).
        personal = {"personal-data.key"} if name == "roster" else set()
        assert {p.name for p in directory.iterdir()} == {f"{name}.key", *public, *personal}
        assert (directory / f"{name}.key").stat().st_mode & 0o777 == 0o600
        for key in personal:
            assert (directory / key).read_bytes() == (keys / key).read_bytes()
            assert (directory / key).stat().st_mode & 0o777 == 0o600
        assert load_signer(directory / f"{name}.key", name).key_id == (
            load_signer(keys / f"{name}.key", name).key_id
        )
        assert set(load_keyring(directory).services()) == set(SERVICES)
    running = KeyDirectory(keys / "scoring", min_interval=0)
    [old] = running.ring().keys["roster"]
    assert party(["keys", "rotate", "roster", "--keys-dir", str(keys), "--per-service-dirs"]) == 0
    new = load_signer(keys / "roster" / "roster.key", "roster").key_id
    assert new != old
    assert (keys / f"roster.{old}.key.retired").exists()
    assert not (keys / "roster" / f"roster.{old}.key.retired").exists()
    # A running consumer reads the new public keys file without a restart.
    assert set(running.ring().keys["roster"]) == {old, new}
    assert (
        party(
            [
                "keys",
                "revoke",
                "roster",
                old,
                "--after",
                "7",
                "--keys-dir",
                str(keys),
                "--per-service-dirs",
            ]
        )
        == 0
    )
    assert running.ring().keys["roster"][old].revoked_after == 7


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
@pytest.mark.parametrize("overlay", ["base", "overlays/production"])
def test_each_service_mounts_its_own_signing_key_and_every_public_key(overlay: str) -> None:
    docs = kustomize(overlay)
    [config] = of_kind(docs, "ConfigMap").values()
    settings = config["data"]
    assert settings["PARTY_CREATE_MISSING_KEY"] == "false"
    services = of_kind(docs, "Service")
    urls = json.loads(settings["PARTY_SERVICE_URLS"])
    assert set(urls) == set(SERVICES)
    for name, url in urls.items():
        # The cluster DNS name of the service's Service, on the port it serves.
        service = services[f"party-{name}"]
        assert url == f"http://party-{name}.{service['metadata']['namespace']}.svc.cluster.local"
        assert [p["port"] for p in service["spec"]["ports"]] == [80]
    for name in SERVICES:
        pod = of_kind(docs, "Deployment")[f"party-{name}"]["spec"]["template"]["spec"]
        [container] = pod["containers"]
        assert {"configMapRef": {"name": "party-config"}} in container["envFrom"]
        overridden = {e["name"] for e in container["env"]}
        assert not overridden & {"PARTY_KEYS_DIR", "PARTY_CREATE_MISSING_KEY", "PARTY_SERVICE_URLS"}
        [mount] = [m for m in container["volumeMounts"] if m["name"] == "keys"]
        assert mount["mountPath"] == settings["PARTY_KEYS_DIR"]
        assert mount["readOnly"] is True
        assert "subPath" not in mount  # else a new public keys file would never arrive
        [volume] = [v for v in pod["volumes"] if v["name"] == "keys"]
        sources = volume["projected"]["sources"]
        secrets = [s["secret"] for s in sources if "secret" in s]
        personal = [
            {
                "name": "party-personal-data-key",
                "items": [{"key": "personal-data-key", "path": "personal-data.key"}],
            }
        ]
        assert secrets == [
            {
                "name": f"party-{name}-signing-key",
                "items": [{"key": "private-key", "path": f"{name}.key"}],
            },
            # The roster alone holds the personal-data key (it seals and erases).
            *(personal if name == "roster" else []),
        ]
        assert [s["configMap"]["name"] for s in sources if "configMap" in s] == [
            "party-public-keys"
        ]
        # Mounted root-owned, group-readable: the service's group must be the volume's.
        assert pod["securityContext"]["fsGroup"] == pod["securityContext"]["runAsGroup"]
        assert volume["projected"]["defaultMode"] == 0o440
        others = {f"party-{o}-signing-key" for o in SERVICES if o != name}
        assert not others & _secret_names(pod), name


def _secret_names(pod: dict[str, Any]) -> set[str]:
    names = set()
    for volume in pod.get("volumes", []):
        if "secret" in volume:
            names.add(volume["secret"]["secretName"])
        for source in volume.get("projected", {}).get("sources", []):
            if "secret" in source:
                names.add(source["secret"]["name"])
    for container in pod["containers"]:
        for env in container.get("env", []):
            ref = env.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                names.add(ref["name"])
        for source in container.get("envFrom", []):
            if "secretRef" in source:
                names.add(source["secretRef"]["name"])
    return names


@needs_kubectl
def test_the_setup_job_neither_makes_nor_sees_signing_keys() -> None:
    [job] = of_kind(kustomize("base"), "Job").values()
    pod = job["spec"]["template"]["spec"]
    assert "--no-keys" in pod["containers"][0]["args"]
    assert not {n for n in _secret_names(pod) if n.endswith("-signing-key")}
    assert not [v for v in pod["volumes"] if "projected" in v or "configMap" in v]


PRIVATE_KEY = re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----")


def test_no_key_material_is_committed_under_deploy() -> None:
    for path in DEPLOY.rglob("*"):
        if not path.is_file() or "__pycache__" in path.parts:
            continue
        assert not path.name.endswith((".key", ".key.retired", ".pem")), path
        text = path.read_bytes().decode("utf-8", errors="replace")
        assert not PRIVATE_KEY.search(text), path


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


# -- what an operator watches -------------------------------------------------------------------

ALERTS = DEPLOY / "alerts" / "party.rules.yaml"
ALERT_TESTS = DEPLOY / "alerts" / "party.rules.test.yaml"
#: Metrics the rules may name before the module that defines them has landed.
PENDING = {"party_witness_disagreements_total": "runtime.witness"}


def _metric_names() -> set[str]:
    for module in ("runtime.metrics", *PENDING.values()):
        try:
            importlib.import_module(module)
        except ImportError:
            continue
    names = set()
    for family in REGISTRY.collect():
        names.add(family.name + ("_total" if family.type == "counter" else ""))
        names.update(sample.name for sample in family.samples)
    return names


def test_the_alert_rules_are_prometheus_rule_groups_on_real_metrics() -> None:
    document = yaml.safe_load(ALERTS.read_text())
    assert set(document) == {"groups"}
    alerts: dict[str, dict[str, Any]] = {}
    for group in document["groups"]:
        assert set(group) == {"name", "rules"}
        assert isinstance(group["name"], str)
        for rule in group["rules"]:
            assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule
            assert re.fullmatch(r"Party[A-Z][A-Za-z]+", rule["alert"]), rule["alert"]
            assert rule["alert"] not in alerts, rule["alert"]
            assert isinstance(rule["expr"], str)
            assert rule["expr"].strip()
            if "for" in rule:
                assert re.fullmatch(r"\d+[smh]", rule["for"]), rule["for"]
            assert rule["labels"]["severity"] in {"warning", "critical"}
            assert rule["annotations"]["summary"]
            alerts[rule["alert"]] = rule
    used = {m for rule in alerts.values() for m in re.findall(r"\bparty_[a-z_]+", rule["expr"])}
    known = _metric_names()
    pending = {m for m, module in PENDING.items() if importlib.util.find_spec(module) is None}
    assert used - known <= pending, used - known
    # What the operator is told to watch, each with its rule.
    for metric in (
        "party_relay_watermark_ahead_events",
        "party_consumer_behind_events",
        "party_entries_refused_total",
        "party_witness_disagreements_total",
        "party_consumer_unverified_entries",
    ):
        assert any(metric in rule["expr"] for rule in alerts.values()), metric
    assert re.fullmatch(r"\d+m", alerts["PartyConsumerBehind"]["for"])
    assert alerts["PartyUnverifiedEntries"]["for"] == "5m"
    # deploy/README.md explains every alert.
    readme = (DEPLOY / "README.md").read_text()
    assert not [name for name in alerts if f"`{name}`" not in readme]


@pytest.mark.skipif(shutil.which("promtool") is None, reason="no promtool")
def test_promtool_accepts_the_alert_rules_and_their_unit_tests() -> None:
    """The PromQL parses, and the rules fire when they should (a refusal that appears as a new
    series, a consumer that stops, a watermark ahead for a moment, entries held)."""
    for command in (["check", "rules", str(ALERTS)], ["test", "rules", str(ALERT_TESTS)]):
        result = subprocess.run(["promtool", *command], capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr
