"""Throwaway TLS material for tests: a CA and a certificate for 127.0.0.1 that it signed."""

from __future__ import annotations

import subprocess
from pathlib import Path


def make_certs(folder: Path) -> Path:
    """Write ``ca.pem``/``ca.key`` and ``server.pem``/``server.key`` (valid for 127.0.0.1,
    a day long) into ``folder`` with openssl, and return it."""

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)

    folder.mkdir(parents=True, exist_ok=True)
    key = ["-newkey", "rsa:2048", "-nodes"]
    openssl("req", "-x509", *key, "-days", "1", "-subj", "/CN=socialrec-test-ca",
            "-keyout", "ca.key", "-out", "ca.pem")  # fmt: skip
    openssl("req", *key, "-subj", "/CN=127.0.0.1", "-keyout", "server.key", "-out", "server.csr")
    (folder / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    signed_by_ca = ["-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-days", "1"]
    openssl("x509", "-req", "-in", "server.csr", *signed_by_ca, "-extfile", "san.ext",
            "-out", "server.pem")  # fmt: skip
    return folder
