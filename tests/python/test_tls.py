"""HTTPS with --tls-cert-path/--tls-key-path: the official client works over TLS with a
self-signed certificate it trusts, and plain HTTP to the TLS port fails."""

from __future__ import annotations

import ssl
import subprocess
import time
from pathlib import Path

import httpx
import openai
import pytest

from support import MODEL_NAME, Server, ServerError


class TlsServer(Server):
    cert: Path | None = None

    @property
    def base_url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def _wait_ready(self) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + 60
        with httpx.Client(timeout=1.0, trust_env=False, verify=ssl.create_default_context(cafile=str(self.cert))) as client:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise self._fail(f"exited with code {self.proc.returncode} during startup")
                try:
                    if client.get(self.url("/health")).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                time.sleep(0.05)
        raise self._fail("not ready over HTTPS within 60s")


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )
    srv = TlsServer("tls", extra_args=["--tls-cert-path", str(cert), "--tls-key-path", str(key)])
    srv.cert = cert
    srv.start()
    yield srv
    srv.stop_expecting_clean_exit()


def test_openai_client_over_https(tls_server: TlsServer) -> None:
    http_client = httpx.Client(verify=ssl.create_default_context(cafile=str(tls_server.cert)), trust_env=False, timeout=30)
    client = openai.OpenAI(base_url=tls_server.base_url + "/v1", api_key="none",
                           http_client=http_client, max_retries=0)
    reply = client.completions.create(model=MODEL_NAME, prompt="secure hello", max_tokens=50)
    assert reply.choices[0].text == "secure hello"
    chunks = client.chat.completions.create(
        model=MODEL_NAME, messages=[{"role": "user", "content": "over tls"}], stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "over tls" in text
    http_client.close()


def test_plain_http_to_the_tls_port_is_refused(tls_server: TlsServer) -> None:
    with httpx.Client(trust_env=False, timeout=5) as client:
        with pytest.raises(httpx.HTTPError):
            client.get(f"http://127.0.0.1:{tls_server.port}/health")


def test_a_missing_key_file_fails_at_start(tmp_path: Path) -> None:
    srv = Server("tls-missing", extra_args=[
        "--tls-cert-path", str(tmp_path / "nope.pem"), "--tls-key-path", str(tmp_path / "nope.key")])
    with pytest.raises(ServerError) as failure:
        srv.start()
    assert "nope.pem" in str(failure.value)
