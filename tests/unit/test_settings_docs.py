"""docs/configuration.md is the Settings model, rendered: the test fails when they disagree."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from rex.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "settings_docs.py"


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("settings_docs", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_docs_configuration_matches_the_settings_model() -> None:
    generator = _generator()
    assert not generator.is_stale(generator.render()), (
        "docs/configuration.md is out of date: run `python scripts/settings_docs.py` "
        "and commit the result"
    )


def _sections(page: str) -> dict[str, str]:
    """Each setting's section, by environment variable."""
    parts = re.split(r"^## `(REX_[A-Z_]+)`\n", page, flags=re.M)[1:]
    return dict(zip(parts[::2], parts[1::2], strict=True))


def test_every_setting_has_a_section_with_its_environment_name_and_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for variable in [v for v in os.environ if v.startswith("REX_")]:
        monkeypatch.delenv(variable)
    sections = _sections(_generator().render())
    assert list(sections) == [f"REX_{name.upper()}" for name in Settings.model_fields]
    defaults = Settings(_env_file=None)  # type: ignore[call-arg]
    for name, field in Settings.model_fields.items():
        section = sections[f"REX_{name.upper()}"]
        assert " ".join((field.description or "").split()) in section
        value = getattr(defaults, name)
        if isinstance(value, int | str) and not isinstance(value, bool) and value != "":
            assert f"Default: `{value}`." in section, section


def test_the_documented_names_are_the_ones_settings_reads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("REX_DELIVERY_TIMEOUT", "7.5")
    monkeypatch.setenv("REX_RETRY_SCHEDULE", "10,60,600")
    monkeypatch.setenv("REX_ALLOWED_NETWORKS", "10.1.0.0/16,fd00:1::/64")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.delivery_timeout == 7.5
    assert settings.retry_schedule == (10.0, 60.0, 600.0)
    assert settings.allowed_networks == ["10.1.0.0/16", "fd00:1::/64"]
    page = _generator().render()
    for variable in ("REX_DELIVERY_TIMEOUT", "REX_RETRY_SCHEDULE", "REX_ALLOWED_NETWORKS"):
        assert f"## `{variable}`\n" in page


def test_a_setting_without_a_description_is_refused() -> None:
    class Partial(BaseSettings):
        model_config = SettingsConfigDict(env_prefix="REX_")
        documented: int = Field(3, description="Something, in seconds.")
        undocumented: float = 1.0

    with pytest.raises(ValueError, match="REX_UNDOCUMENTED") as raised:
        _generator().render(Partial)
    assert "REX_DOCUMENTED" not in str(raised.value)


def test_types_defaults_and_constraints_are_rendered() -> None:
    class Sample(BaseSettings):
        model_config = SettingsConfigDict(env_prefix="REX_")
        grace: float = Field(600.0, gt=0, description="Seconds.")
        hosts: list[str] = Field(default_factory=list, description="Hosts.")
        domain: str | None = Field(None, description="A domain.")
        flag: bool = Field(False, description="A flag.")

    sections = _sections(_generator().render(Sample))
    assert sections["REX_GRACE"] == (
        "\nSeconds. Must be greater than 0.\n\nType: number. Default: `600`.\n\n"
    )
    assert "Type: comma-separated list of string. Default: (empty)." in sections["REX_HOSTS"]
    assert "Type: string (optional). Default: (unset)." in sections["REX_DOMAIN"]
    assert "Type: boolean. Default: `false`." in sections["REX_FLAG"]


def test_check_mode_is_one_command() -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--check"], capture_output=True, text=True, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "docs/configuration.md is up to date"


def test_check_mode_notices_a_hand_edit(tmp_path: Path) -> None:
    generator = _generator()
    page = tmp_path / "configuration.md"
    assert generator.is_stale(generator.render(), page)  # missing
    page.write_text(generator.render())
    assert not generator.is_stale(generator.render(), page)
    page.write_text(generator.render().replace("Seconds", "Minutes", 1))
    assert generator.is_stale(generator.render(), page)
