"""An S3-compatible server for the tests: moto's server in its own process on 127.0.0.1.

The server runs with authentication on: an IAM user with an s3:* policy is created first
(while moto still accepts unsigned set-up calls), then moto is told to check every request,
so wrong keys and secrets are rejected like a real object store would.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

REGION = "us-east-1"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class MotoS3:
    """A running moto server: endpoint and the credentials of an authorised user."""

    endpoint: str
    key: str
    secret: str

    def options(self, **overrides: Any) -> dict[str, Any]:
        """Storage options (short names, see nowcast.storage) for this server."""
        opts: dict[str, Any] = {"key": self.key, "secret": self.secret, "endpoint_url": self.endpoint, "region": REGION}
        opts.update(overrides)
        return opts

    def client(self) -> Any:
        import boto3

        return boto3.client(
            "s3", endpoint_url=self.endpoint, region_name=REGION, aws_access_key_id=self.key, aws_secret_access_key=self.secret
        )

    def new_bucket(self) -> str:
        name = f"nowcast-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        """Object keys under ``prefix`` (all pages)."""
        out: list[str] = []
        for page in self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            out.extend(o["Key"] for o in page.get("Contents", []))
        return out


def _wait_ready(endpoint: str, proc: subprocess.Popen, timeout: float = 20.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"moto server exited with code {proc.returncode}")
        try:
            httpx.get(f"{endpoint}/moto-api/", timeout=0.5)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"moto server at {endpoint} not ready after {timeout} s")


@pytest.fixture(scope="session")
def moto_s3() -> Iterator[MotoS3]:
    """moto's S3 server on a free loopback port, with request authentication enabled."""
    pytest.importorskip("moto.server", reason="moto[server] is not installed")
    import boto3
    import httpx

    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_ready(endpoint, proc)
        setup = {"endpoint_url": endpoint, "region_name": REGION, "aws_access_key_id": "setup", "aws_secret_access_key": "setup"}
        iam = boto3.client("iam", **setup)
        iam.create_user(UserName="nowcast")
        policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
        iam.put_user_policy(UserName="nowcast", PolicyName="s3-all", PolicyDocument=json.dumps(policy))
        key = iam.create_access_key(UserName="nowcast")["AccessKey"]
        # from now on every request must be signed by a known key with a matching secret
        httpx.post(f"{endpoint}/moto-api/reset-auth", content=b"0", timeout=5).raise_for_status()
        yield MotoS3(endpoint, key["AccessKeyId"], key["SecretAccessKey"])
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture
def s3_bucket(moto_s3: MotoS3) -> str:
    """A fresh, empty bucket."""
    return moto_s3.new_bucket()


@pytest.fixture(autouse=True)
def clean_s3_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No S3 configuration from the environment of the test run."""
    import os

    for name in list(os.environ):
        if name.startswith(("NOWCAST_S3_", "AWS_")):
            monkeypatch.delenv(name, raising=False)


@pytest.fixture
def refused_endpoint() -> str:
    """URL of a loopback port with nothing listening (connections are refused)."""
    return f"http://127.0.0.1:{free_port()}"


@pytest.fixture
def silent_endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """URL of a loopback port that accepts connections but never answers; short S3 timeouts set."""
    monkeypatch.setenv("NOWCAST_S3_READ_TIMEOUT", "1")
    monkeypatch.setenv("NOWCAST_S3_MAX_ATTEMPTS", "2")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(16)  # the kernel completes handshakes; nobody ever reads or answers
        yield f"http://127.0.0.1:{s.getsockname()[1]}"
