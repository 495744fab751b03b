"""docs/deploy.md names every setting the service reads, with its real default."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def settings_class():
    from sidyp_core.config import Settings

    return Settings


def documented_settings() -> dict[str, str]:
    """`SIDYP_X` -> the default cell of its row in the settings table."""
    rows = {}
    for line in (ROOT / "docs" / "deploy.md").read_text().splitlines():
        m = re.match(r"\| `(SIDYP_[A-Z0-9_]+)` \| ([^|]*) \|", line)
        if m:
            rows[m.group(1)] = m.group(2).strip()
    return rows


def test_every_setting_is_in_the_table_with_its_default():
    rows = documented_settings()
    fields = settings_class().model_fields
    missing = [f"SIDYP_{name.upper()}" for name in fields if f"SIDYP_{name.upper()}" not in rows]
    assert not missing, f"docs/deploy.md lacks {missing}"
    for name, info in fields.items():
        default = info.default
        if isinstance(default, bool):
            expected = str(default).lower()
        elif default is None or default == "":
            continue  # documented as 'unset' / 'empty'
        else:
            expected = str(default)
        assert expected in rows[f"SIDYP_{name.upper()}"], f"SIDYP_{name.upper()}: default {expected}"
    unknown = set(rows) - {f"SIDYP_{n.upper()}" for n in fields}
    assert not unknown, f"docs/deploy.md documents settings that do not exist: {unknown}"
