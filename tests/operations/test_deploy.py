"""deploy/: the recipes refer only to what Rex has (metric names, commands, options), and,
where a container engine works, the image builds and becomes healthy (``-m long``)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import httpx
import pytest
import yaml

from rex.ops import metrics
from tests.cli import REX
from tests.support import free_port

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
METRIC = re.compile(r"\brex_[a-z_]+")


def exported_names() -> set[str]:
    names = set()
    for family in metrics.REGISTRY.collect():
        names.add(family.name)
        names |= {sample.name for sample in family.samples}
        if family.type == "counter":
            names.add(family.name + "_total")
        if family.type == "histogram":  # (a labelled one has no sample before its first use)
            names |= {family.name + suffix for suffix in ("_bucket", "_sum", "_count")}
    return names


def test_alerts_and_dashboard_use_only_metrics_rex_exports() -> None:
    exported = exported_names()
    rules = yaml.safe_load((DEPLOY / "monitoring" / "alerts.yml").read_text())
    expressions = [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    dashboard = json.loads((DEPLOY / "monitoring" / "grafana-dashboard.json").read_text())
    expressions += [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    used = {name for expr in expressions for name in METRIC.findall(expr)}
    assert used and used <= exported, used - exported
    # Every metric of the contract is on the dashboard or in an alert.
    contract = {
        "rex_captures_total", "rex_deliveries_pending", "rex_delivery_oldest_pending_age_seconds",
        "rex_delivery_attempts_total", "rex_delivery_attempt_duration_seconds_bucket",
        "rex_capture_to_delivery_seconds_bucket", "rex_endpoints_disabled",
        "rex_http_requests_total", "rex_http_request_duration_seconds_bucket",
    }  # fmt: skip
    assert contract <= used, contract - used


def test_recipes_run_commands_and_options_rex_has() -> None:
    compose = yaml.safe_load((DEPLOY / "compose" / "compose.yaml").read_text())
    services = compose["services"]
    assert {"postgres", "migrate", "api-1", "api-2", "worker-1", "worker-2"} <= set(services)
    assert services["migrate"]["command"] == ["migrate"]
    commands = [s["command"] for s in services.values() if "command" in s and s.get("build")]
    units = [
        line.split("/opt/rex/bin/rex ", 1)[1].split()
        for unit in (DEPLOY / "systemd").glob("*.service")
        for line in unit.read_text().splitlines()
        if line.startswith(("ExecStart=", "ExecStartPre="))
    ]
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert "USER rex" in dockerfile and 'VOLUME ["/data"]' in dockerfile and "/readyz" in dockerfile
    cmd = json.loads(re.search(r"^CMD (.*)$", dockerfile, re.M).group(1))  # type: ignore[union-attr]
    wanted: dict[str, set[str]] = {}
    for args in [*commands, *units, cmd]:
        wanted.setdefault(args[0], set()).update(
            a.split("=")[0] for a in args if a.startswith("--")
        )
    assert set(wanted) == {"serve", "worker", "migrate"}
    for command, options in wanted.items():
        helped = subprocess.run([REX, command, "--help"], capture_output=True, text=True)
        assert helped.returncode == 0, command
        for option in options:
            assert option in helped.stdout, (command, option)


def _engine() -> str | None:
    for name in ("docker", "podman"):
        tool = shutil.which(name)
        if tool and subprocess.run([tool, "info"], capture_output=True).returncode == 0:
            return tool
    return None


@pytest.mark.long
def test_the_image_builds_and_becomes_ready() -> None:
    engine = _engine()
    if engine is None:
        pytest.skip("no working container engine here (docker/podman info fails)")
    tag = f"rexgtm-test:{uuid.uuid4().hex[:8]}"
    root = DEPLOY.parent
    # podman's default (OCI) image format drops HEALTHCHECK; the docker format keeps it.
    fmt = ["--format", "docker"] if Path(engine).name == "podman" else []
    subprocess.run(
        [engine, "build", *fmt, "-f", str(DEPLOY / "Dockerfile"), "-t", tag, str(root)],
        check=True,
        timeout=1200,
    )
    port = free_port()
    name = f"rex-test-{uuid.uuid4().hex[:8]}"
    subprocess.run(
        [engine, "run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:8080", tag], check=True
    )
    try:
        user = subprocess.run(
            [engine, "exec", name, "id", "-u"], capture_output=True, text=True, check=True
        )
        assert user.stdout.strip() != "0"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        else:
            raise AssertionError("the container never became ready")
        stopped = subprocess.run([engine, "stop", "-t", "30", name], check=True)
        assert stopped.returncode == 0
        code = subprocess.run(
            [engine, "inspect", "-f", "{{.State.ExitCode}}", name],
            capture_output=True,
            text=True,
            check=True,
        )
        assert code.stdout.strip() == "0"
    finally:
        subprocess.run([engine, "rm", "-f", name], capture_output=True)
        subprocess.run([engine, "rmi", "-f", tag], capture_output=True)
