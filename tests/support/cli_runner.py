"""Running the installed `auditledger` entry point as an operator would (wide, no colour)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

AUDITLEDGER = str(Path(sys.executable).parent / "auditledger")


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [AUDITLEDGER, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
    )
