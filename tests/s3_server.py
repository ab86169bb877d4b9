"""A real S3 server on 127.0.0.1 for the tests: moto_server (moto[server] 5.2.5, own venv).

The server checks credentials, like MinIO: it starts with ``INITIAL_NO_AUTH_ACTION_COUNT``
set to the three IAM calls that create the test user, its policy and its access key; every
later request must be signed with that key. So a wrong secret is refused, as it would be on a
real store.

``S3Server.env`` holds what a MinIO user exports (``S3_ENDPOINT``, ``AWS_ACCESS_KEY_ID``, ...);
pass it to subprocesses (``env={**os.environ, **server.env}``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

from tests.tool_env import tool_env

REGION = "us-east-1"
BUCKET = "backbone-reg-test"
# The IAM calls made before authentication is enforced (create_user, put_user_policy,
# create_access_key).
_OPEN_ACTIONS = 3


@dataclasses.dataclass(frozen=True)
class S3Server:
    """A running S3 server: its endpoint, the environment that reaches it, a bucket."""

    endpoint: str
    access_key_id: str
    secret_access_key: str
    bucket: str = BUCKET

    @property
    def env(self) -> dict[str, str]:
        """The variables a MinIO user sets (secrets included: for subprocesses only)."""
        return {
            "S3_ENDPOINT": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
            "AWS_REGION": REGION,
            "S3_USE_HTTPS": "0",
            "S3_VERIFY_SSL": "0",
        }

    def uri(self, path: str = "", bucket: str | None = None) -> str:
        return f"s3://{bucket or self.bucket}/{path}"

    def client(self, secret: str | None = None):
        import boto3

        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=secret or self.secret_access_key,
        )

    def create_bucket(self, name: str) -> str:
        self.client().create_bucket(Bucket=name)
        return name

    def keys(self, bucket: str | None = None, prefix: str = "") -> list[str]:
        """Every object key under ``prefix``."""
        paginator = self.client().get_paginator("list_objects_v2")
        found = []
        for page in paginator.paginate(Bucket=bucket or self.bucket, Prefix=prefix):
            found += [item["Key"] for item in page.get("Contents", [])]
        return found

    def read(self, key: str, bucket: str | None = None) -> bytes:
        return self.client().get_object(Bucket=bucket or self.bucket, Key=key)["Body"].read()

    def upload_tree(self, local: Path, prefix: str, bucket: str | None = None) -> str:
        """Copy every file under ``local`` to ``s3://bucket/prefix/...``; return that URI."""
        client = self.client()
        for path in sorted(local.rglob("*")):
            if path.is_file():
                key = f"{prefix}/{path.relative_to(local).as_posix()}"
                client.upload_file(str(path), bucket or self.bucket, key)
        return self.uri(prefix, bucket)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_until_up(endpoint: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"moto_server exited {process.returncode}:\n{log.read_text()}")
        try:
            urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=2).close()
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"moto_server did not answer at {endpoint} within 60 s:\n{log.read_text()}")


def _create_user(endpoint: str) -> tuple[str, str]:
    import boto3

    iam = boto3.session.Session().client(
        "iam",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="bootstrap",
        aws_secret_access_key="bootstrap",
    )
    iam.create_user(UserName="pipeline")
    policy = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
    }
    iam.put_user_policy(UserName="pipeline", PolicyName="s3", PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName="pipeline")["AccessKey"]
    return key["AccessKeyId"], key["SecretAccessKey"]


def start(log_dir: Path):
    """Start moto_server; return ``(server, process)``. Stop with ``stop(process)``."""
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    log = log_dir / "moto_server.log"
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": str(_OPEN_ACTIONS)}
    with open(log, "w") as handle:
        process = subprocess.Popen(
            [str(tool_env("moto-server") / "bin" / "moto_server"), "-H", "127.0.0.1"]
            + ["-p", str(port)],
            stdout=handle,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        _wait_until_up(endpoint, process, log)
        key_id, secret = _create_user(endpoint)
        server = S3Server(endpoint, key_id, secret)
        server.create_bucket(server.bucket)
    except BaseException:
        stop(process)
        raise
    return server, process


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
