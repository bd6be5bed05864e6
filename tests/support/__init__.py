"""Helpers the tests share: reference fold, raw-store access, forged events, the CLI runner,
key files."""
