"""The proxy examples of deploy/proxy/ bound clients at least as tightly as the services bound
themselves (runtime/http/server.py), and the Ingress is valid Kubernetes naming real Services."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import yaml

from runtime.settings import Settings
from services.registry import SERVICES

PROXY = Path(__file__).resolve().parents[2] / "deploy" / "proxy"
KUBERNETES = "1.30.0"


def _seconds(value: str) -> float:
    match = re.fullmatch(r"(\d+)(s|m)?", value)
    assert match, value
    return float(match.group(1)) * (60 if match.group(2) == "m" else 1)


def _nginx() -> dict[str, list[str]]:
    directives: dict[str, list[str]] = {}
    for line in (PROXY / "nginx.conf").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line.endswith(";"):
            name, _, value = line[:-1].partition(" ")
            directives.setdefault(name, []).append(value.strip())
    return directives


def test_nginx_holds_clients_to_the_services_bounds() -> None:
    settings = Settings()
    nginx = _nginx()
    assert _seconds(nginx["client_header_timeout"][0]) <= settings.http_header_timeout_seconds
    assert _seconds(nginx["client_body_timeout"][0]) <= settings.http_body_timeout_seconds
    assert nginx["client_max_body_size"] == ["1m"]
    assert settings.max_body_bytes >= 1024 * 1024
    number, size = nginx["large_client_header_buffers"][0].split()
    assert int(number) * int(size.removesuffix("k")) * 1024 <= settings.http_max_header_bytes
    # nginx lets go of an idle upstream connection before the service would close it.
    for value in nginx["keepalive_timeout"][1:]:  # the first is toward the clients
        assert _seconds(value) < settings.http_keep_alive_seconds
    assert len(nginx["keepalive_timeout"]) == 1 + len(SERVICES)
    for server in nginx["server"]:
        max_conns = int(server.split("max_conns=")[1])
        assert max_conns <= settings.http_max_connections
    assert nginx["proxy_request_buffering"] == ["on"]
    assert any(v.startswith("party_connections ") for v in nginx["limit_conn"])
    assert nginx["proxy_set_header"][0] == 'Connection ""'  # upstream keep-alive works


def _ingress() -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((PROXY / "ingress.yaml").read_text()) if d]


def test_the_ingress_is_valid_kubernetes_and_bounds_clients_alike() -> None:
    settings = Settings()
    docs = _ingress()
    for doc in docs:
        kubernetes_validate.validate(doc, KUBERNETES, strict=True)
    (controller,) = [d for d in docs if d["kind"] == "ConfigMap"]
    (ingress,) = [d for d in docs if d["kind"] == "Ingress"]
    data = controller["data"]
    assert float(data["client-header-timeout"]) <= settings.http_header_timeout_seconds
    assert float(data["client-body-timeout"]) <= settings.http_body_timeout_seconds
    assert float(data["upstream-keepalive-timeout"]) < settings.http_keep_alive_seconds
    notes = ingress["metadata"]["annotations"]
    assert notes["nginx.ingress.kubernetes.io/proxy-body-size"] == "1m"
    assert notes["nginx.ingress.kubernetes.io/proxy-request-buffering"] == "on"
    assert int(notes["nginx.ingress.kubernetes.io/limit-connections"]) > 0
    backends = {
        path["backend"]["service"]["name"]
        for rule in ingress["spec"]["rules"]
        for path in rule["http"]["paths"]
    }
    assert backends == {f"party-{name}" for name in SERVICES}
    assert ingress["metadata"]["namespace"] == "party"
