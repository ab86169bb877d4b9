import os

import pytest

# Quiet TensorFlow's C++ start-up logs in test output; set before TensorFlow is imported.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """A real S3 server (moto_server) on 127.0.0.1 for the whole session, with one bucket.

    Yields a ``tests.s3_server.S3Server``: ``.endpoint``, ``.env`` (S3_ENDPOINT,
    AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION, S3_USE_HTTPS=0, S3_VERIFY_SSL=0:
    pass it to subprocesses), ``.bucket``, ``.uri(path)``, ``.client()``, ``.keys(prefix=)``.
    The server checks credentials.
    """
    from tests import s3_server as s3

    server, process = s3.start(tmp_path_factory.mktemp("s3-server"))
    try:
        yield server
    finally:
        s3.stop(process)
