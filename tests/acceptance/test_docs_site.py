"""The docs site builds, offline; the README stays a front door whose commands are the ones
the docs and CI run; and the seeds' flow printed in the README and on the getting-started
page runs as printed against a real Rex."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from rex import verify_signature
from tests.receiver import Receiver
from tests.support import make_settings, serve_rex

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
MKDOCS = str(Path(sys.executable).with_name("mkdocs"))
SEED_SECRET = "whsec_your_signing_secret"


def _sh_blocks(text: str) -> list[str]:
    return [block.strip() for block in re.findall(r"```sh\n(.*?)```", text, flags=re.DOTALL)]


def test_the_readme_opens_with_the_two_commands_the_docs_and_ci_run() -> None:
    readme = README.read_text()
    serve, test = _sh_blocks(readme)[:2]
    assert serve == (
        "python3 -m venv .venv && .venv/bin/pip install -q -e . && "
        "REX_ALLOW_PRIVATE_DESTINATIONS=1 .venv/bin/rex serve"
    )
    assert (
        test == "python3 -m venv .venv && .venv/bin/pip install -q -e '.[test]' && .venv/bin/pytest"
    )
    assert readme.index(serve) < 800  # at the very top, before any other section
    started = _sh_blocks((ROOT / "docs" / "getting-started.md").read_text())
    assert serve in started and test in started
    # CI runs the command verbatim; it only keeps its exit status for the end of the script.
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert any(line in (test, f"{test} || suite_status=$?") for line in ci_lines)


def test_the_readme_is_a_front_door() -> None:
    readme = README.read_text()
    assert len(readme.splitlines()) <= 200
    for target in re.findall(r"\]\(((?!https?:)[^)#]+)", readme):
        assert (ROOT / target).exists(), f"README links to {target}, which does not exist"


def test_the_site_builds_offline_and_strict(tmp_path: Path) -> None:
    config = (ROOT / "mkdocs.yml").read_text()
    assert re.search(r"^theme:\n(  .*\n)*  font: false$", config, flags=re.M)  # no Google Fonts
    # Nothing that fetches at build or view time (social cards, privacy, external assets).
    [plugins] = re.findall(r"^plugins:\n((?:  .*\n)*)", config, flags=re.M)
    assert plugins.split() == ["-", "search"]
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run(
        [MKDOCS, "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    pages = list((tmp_path / "site").rglob("*.html"))
    assert len(pages) > 20
    for page in pages:
        html = page.read_text()
        assert "fonts.googleapis.com" not in html and "fonts.gstatic.com" not in html, page
    receiving = (tmp_path / "site" / "receiving" / "index.html").read_text()
    assert "verifySignature" in receiving and "verify_signature" in receiving


def _commands(block: str) -> list[str]:
    """The ``curl`` commands of a shell block, each with its continuation lines."""
    commands: list[str] = []
    for line in block.splitlines():
        if line.startswith("curl "):
            commands.append(line)
        elif commands and line and not line.startswith("#"):
            commands[-1] += "\n" + line
    return commands


@pytest.mark.parametrize("page", ["README.md", "docs/getting-started.md"])
def test_the_seeds_flow_runs_as_printed(page: str, tmp_path: Path) -> None:
    """The three ``curl`` calls, run by bash against a real Rex with the two exported
    variables; only the listener's address and the new endpoint's id are filled in."""
    [block] = [b for b in _sh_blocks((ROOT / page).read_text()) if "/capture" in b]
    capture, subscribe, test = _commands(block)
    with Receiver() as listener, serve_rex(make_settings(f"sqlite:///{tmp_path}/r.db")) as rex:
        env = {**os.environ, "REX_URL": rex.url, "REX_API_KEY": rex.key}

        def bash(command: str) -> Any:
            done = subprocess.run(
                ["bash", "-c", command + " --silent --show-error --fail-with-body"],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert done.returncode == 0, done.stdout + done.stderr
            return json.loads(done.stdout)

        assert bash(capture)["data"]["email"] == "jane@example.com"
        local = "http://127.0.0.1:3000/webhooks/rex"
        assert local in subscribe and SEED_SECRET in subscribe
        endpoint = bash(subscribe.replace(local, listener.url()))["data"]
        assert endpoint["url"] == listener.url()
        assert "wh_..." in test
        bash(test.replace("wh_...", endpoint["id"]))
        [delivery] = listener.wait_for(1, timeout=15)
    assert delivery.headers["X-Rex-Event"] == "webhook.test"
    verify_signature(delivery.body, delivery.headers["X-Rex-Signature"], SEED_SECRET)
