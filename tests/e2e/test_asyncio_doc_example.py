"""docs/asyncio.md's whole pipeline runs as written, against the fake provider on 127.0.0.1."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from auditledger.adapters.demo.fake_provider import FakeOpenAI
from auditledger.adapters.demo.provider_server import Switches, serving

DOC = Path(__file__).resolve().parents[2] / "docs" / "asyncio.md"


def test_the_documented_asyncio_pipeline_runs(tmp_path: Path) -> None:
    [example] = [
        b for b in re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S) if "main()" in b
    ]
    script = tmp_path / "pipeline.py"
    script.write_text(
        example.replace(
            'BASE = "http://127.0.0.1:8089/v1"', "import sys\nBASE = sys.argv[1]"
        ).replace('AsyncLedger.open("sqlite:///audit")', "AsyncLedger.open(sys.argv[2])")
    )
    switches = Switches(latency_ms=5, fail_rate=0.05, seed=7)
    with serving(FakeOpenAI(batch_polls=2), switches) as server:
        done = subprocess.run(
            [sys.executable, str(script), server.base_url, f"sqlite:///{tmp_path}/audit"],
            capture_output=True,
            text=True,
            timeout=300,
        )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith("completed 10\n")
    assert "status='completed'" in done.stdout
