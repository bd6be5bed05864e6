"""The package exports the batch runner without loading the openai SDK on import."""

from __future__ import annotations

import subprocess
import sys


def test_the_batch_runner_is_exported_and_loaded_only_when_asked_for() -> None:
    script = (
        "import sys, auditledger.adapters as a\n"
        "assert 'openai' not in sys.modules, 'imported eagerly'\n"
        "from auditledger.adapters import OpenAIBatchRunner, MemberFailure\n"
        "from auditledger.adapters.calls import batch_runner\n"
        "assert OpenAIBatchRunner is batch_runner.OpenAIBatchRunner\n"
        "assert MemberFailure is batch_runner.MemberFailure\n"
        "assert all(getattr(a, name) for name in a.__all__)\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True)


def test_an_unknown_name_is_still_an_attribute_error() -> None:
    import auditledger.adapters as adapters

    try:
        adapters.NoSuchThing  # type: ignore[attr-defined]  # noqa: B018
    except AttributeError as error:
        assert "NoSuchThing" in str(error)
    else:
        raise AssertionError("no AttributeError")
