"""The operations guide lists every setting: its table is generated and must be current."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_setting_is_documented_and_the_table_is_current() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "settings_docs.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    page = (ROOT / "docs" / "operations-guide.md").read_text()
    from rex.settings import Settings

    for name in Settings.model_fields:
        assert f"`REX_{name.upper()}`" in page
