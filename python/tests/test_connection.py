"""Connections: the bearer token, TLS with a CA file, and paged lists."""

import shutil
import subprocess

import grpc
import pytest

import tunefleet
from conftest import Coordinator

SPACE = [tunefleet.FloatParam("x", 0.0, 1.0)]


def test_the_token_is_sent_and_required(tmp_path):
    daemon = Coordinator(tmp_path, auth_token="s3cret-token")
    try:
        token_file = tmp_path / "token"
        token_file.write_text("s3cret-token\n")
        with tunefleet.Client(daemon.url, token_file=str(token_file)) as client:
            exp = client.create_experiment("auth", params=SPACE, budget=1, strategy="random")
            assert exp.status()["state"] == "running"
        with tunefleet.Client(daemon.url, token="wrong", retry_seconds=0) as client:
            with pytest.raises(grpc.RpcError) as refused:
                client.experiment(exp.id).status()
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        daemon.stop()


def _make_certificates(folder):
    """A CA and a server certificate for 127.0.0.1, made with the openssl command."""
    def run(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=folder)
    run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=tunefleet test CA")
    run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1")
    (folder / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "san.ext")


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_tls_with_a_ca_file(tmp_path):
    certificates = tmp_path / "tls"
    certificates.mkdir()
    _make_certificates(certificates)
    daemon = Coordinator(tmp_path, tls_cert_file=str(certificates / "server.pem"),
                         tls_key_file=str(certificates / "server.key"))
    try:
        url = daemon.url.replace("http://", "https://")
        with tunefleet.Client(url, ca_file=str(certificates / "ca.pem")) as client:
            exp = client.create_experiment("tls", params=SPACE, budget=1, strategy="random")
            assert exp.status()["state"] == "running"
    finally:
        daemon.stop()


def test_lists_are_read_page_by_page(client):
    ids = {client.create_experiment(f"paged-{i}", params=SPACE, budget=3, strategy="random",
                                    parallelism=3).id for i in range(3)}
    listed = client.list_experiments(page_size=2)
    assert {e.id for e in listed} == ids
    exp = client.experiment(sorted(ids)[0])
    created = exp.status()["trials_created"]
    assert created >= 1
    assert len(exp.trials_list(page_size=1)) == created
    for experiment_id in ids:
        client.experiment(experiment_id).stop()
