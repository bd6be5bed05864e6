"""The path docs/calls.md named before the rooms (`demo/fake_provider.py`): kept as an alias."""

from auditledger.adapters.demo.fake_provider import FakeOpenAI, reply_for

__all__ = ["FakeOpenAI", "reply_for"]
