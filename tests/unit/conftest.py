"""Fixtures for the settings tests (opted into per module: most unit tests need neither)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.tls_certs import make_certs


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ignore whatever SOCIALREC_* variables the caller's shell happens to have."""
    for name in list(os.environ):
        if name.startswith("SOCIALREC_"):
            monkeypatch.delenv(name)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA and a certificate it signed (``ca.pem``, ``server.pem``, ``server.key``)."""
    return make_certs(tmp_path_factory.mktemp("certs"))
