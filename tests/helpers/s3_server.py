"""An S3 server on this machine for the object-storage tests: moto's standalone server,
started as a process on a free port and stopped by its process id."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import httpx
import pytest

from cluster.redis_server import free_port

# What the real AWS SDK (boto3 here, pyarrow's in tunefleet) sends; moto takes any key.
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "tunefleet-test",
    "AWS_SECRET_ACCESS_KEY": "tunefleet-test-secret",
    "AWS_REGION": "us-east-1",
}


class S3Server:
    """``python -m moto.server`` on a free port of 127.0.0.1."""

    def __init__(self, folder: Path, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = folder / f"moto-{self.port}.log"
        self._env = {**os.environ, **(env or {})}
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 60) -> None:
        with open(self._log, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                stdout=log, stderr=subprocess.STDOUT, env=self._env,
            )  # fmt: skip
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"moto.server exited:\n{self._log.read_text()[-2000:]}")
            try:
                httpx.get(self.url, timeout=1)
                return
            except httpx.HTTPError:
                time.sleep(0.2)
        raise RuntimeError(f"moto.server did not answer in {timeout_s} s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def requests(self, method: str, key_part: str) -> list[str]:
        """The request lines of the server's log with ``method`` for a key holding
        ``key_part``."""
        lines = self._log.read_text(errors="replace").splitlines()
        return [line for line in lines if f'"{method} ' in line and key_part in line]

    def client(self) -> object:
        """A boto3 S3 client of this server: how the tests look into the bucket."""
        return boto3.client("s3", endpoint_url=self.url, **_boto_credentials())

    def new_bucket(self) -> str:
        name = f"tunefleet-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)  # type: ignore[attr-defined]
        return name

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        """Every object key in ``bucket`` below ``prefix``, but the empty ``folder/``
        markers that pyarrow leaves where it removed a folder's last file."""
        pages = self.client().get_paginator("list_objects_v2")  # type: ignore[attr-defined]
        return [
            item["Key"]
            for page in pages.paginate(Bucket=bucket, Prefix=prefix)
            for item in page.get("Contents", [])
            if not item["Key"].endswith("/")
        ]


def _boto_credentials() -> dict[str, str]:
    return {
        "aws_access_key_id": CREDENTIALS["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        "region_name": CREDENTIALS["AWS_REGION"],
    }


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A moto S3 server for the whole session; the AWS variables point at nothing else."""
    server = S3Server(tmp_path_factory.mktemp("s3"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def s3_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The standard AWS variables of the test server, set in this process."""
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    return dict(CREDENTIALS)
