"""``s3://`` for every process of the pipeline: AWS S3, MinIO and other S3-compatible stores.

Three clients read the same store, each from its own environment variables:

* TensorFlow's ``tf.io.gfile`` (and so ``tfx.dsl.io.fileio``, Keras, TFX's artifact I/O, TFMA's
  model loading) gets ``s3://`` from tensorflow-io's plugin, registered by ``import
  tensorflow_io``. It reads ``S3_ENDPOINT``, ``S3_USE_HTTPS``, ``S3_VERIFY_SSL``,
  ``S3_CA_FILE``, ``AWS_REGION``, ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``.
* Beam's own file I/O (TFRecords written by ExampleGen, read by StatisticsGen, the Trainer's
  input and TFMA) uses boto3, which reads ``AWS_ENDPOINT_URL``, ``AWS_DEFAULT_REGION``,
  ``AWS_CA_BUNDLE`` and the same key pair. No ``--s3_*`` Beam option is set: those would be
  recorded in ML Metadata with the other Beam arguments.
* ``check_uris`` (the fail-fast check before a run) uses boto3 with short timeouts.

``configure_process`` derives each client's variables from what the user set (an endpoint in
either spelling, a region in either spelling), in the process's own environment, so Beam
worker processes inherit them. Nothing here writes a value to a file, an artifact, a log or a
Beam argument; error messages name the endpoint, never a key.

>>> configure_process()          # at the start of every entrypoint
>>> check_uris({"root": "s3://bucket/pipeline"})
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, MutableMapping

from backbone_regularizer.components.extras import import_extra

S3_SCHEME = "s3://"
# Every variable the S3 clients read; ``kubeflow_env`` passes exactly these to each step.
ENDPOINT_VARS = ("S3_ENDPOINT", "AWS_ENDPOINT_URL")
REGION_VARS = ("AWS_REGION", "AWS_DEFAULT_REGION")
CA_VARS = ("S3_CA_FILE", "AWS_CA_BUNDLE")
TLS_VARS = ("S3_USE_HTTPS", "S3_VERIFY_SSL")
CREDENTIAL_VARS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
SETTING_VARS = ENDPOINT_VARS + REGION_VARS + CA_VARS + TLS_VARS
# Beam workers started as separate processes import this module, which registers s3://.
BEAM_PLUGIN_ARG = "--beam_plugins=tensorflow_io"

_FALSE = ("0", "false", "no", "off")
_CHECK_TIMEOUT_SECONDS = 10


class ObjectStoreError(OSError):
    """An ``s3://`` URI the run needs cannot be used: no bucket, no access, no server."""


def is_s3(uri: object) -> bool:
    return isinstance(uri, str) and uri.startswith(S3_SCHEME)


def _flag(environ: Mapping[str, str], name: str, default: bool) -> bool:
    value = environ.get(name)
    return default if value is None else value.strip().lower() not in _FALSE


def s3_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The variables each S3 client needs, derived from the ones the user set.

    ``S3_ENDPOINT`` (tensorflow-io, MinIO docs; ``host:port`` or a URL) and
    ``AWS_ENDPOINT_URL`` (boto3, AWS CLI) name the same endpoint: either one sets both, as a
    URL whose scheme follows ``S3_USE_HTTPS`` (default https). ``AWS_REGION`` and
    ``AWS_DEFAULT_REGION`` likewise, and ``S3_CA_FILE``/``AWS_CA_BUNDLE``.

    Raises:
        ValueError: the two endpoint (or region, or CA) variables are set and disagree.
    """
    derived: dict[str, str] = {}
    endpoint = _one_of(environ, ENDPOINT_VARS)
    if endpoint:
        if "://" not in endpoint:
            scheme = "https" if _flag(environ, "S3_USE_HTTPS", True) else "http"
            endpoint = f"{scheme}://{endpoint}"
        for name in ENDPOINT_VARS:
            derived[name] = endpoint
        derived["S3_USE_HTTPS"] = "1" if endpoint.startswith("https://") else "0"
    for names in (REGION_VARS, CA_VARS):
        value = _one_of(environ, names)
        if value:
            derived.update(dict.fromkeys(names, value))
    return derived


def _one_of(environ: Mapping[str, str], names: tuple[str, ...]) -> str | None:
    values = {environ[name].strip() for name in names if environ.get(name, "").strip()}
    if len(values) > 1:
        normalized = {v.rstrip("/") for v in values}
        if len(normalized) > 1:
            given = ", ".join(f"{n}={environ[n]!r}" for n in names if environ.get(n))
            raise ValueError(
                f"Expected {' and '.join(names)} to agree (they name the same setting). "
                f"Received: {given}"
            )
    return values.pop().rstrip("/") if values else None


def configure_process(environ: MutableMapping[str, str] | None = None) -> None:
    """Make ``s3://`` work in this process and the processes it starts.

    Sets the derived variables of ``s3_environment`` in ``environ`` (``os.environ`` by
    default) and registers tensorflow-io's ``s3://`` file system in ``tf.io.gfile``. Call it
    once at the start of an entrypoint; calling it again changes nothing. The process must
    then end through ``backbone_regularizer.pipeline.process_exit`` (tensorflow/io#2039 aborts the
    teardown).

    Raises:
        MissingExtraError: tensorflow-io is not installed (the ``s3`` extra).
    """
    environ = os.environ if environ is None else environ
    environ.update(s3_environment(environ))
    register_s3()


def register_s3() -> None:
    """Register ``s3://`` in ``tf.io.gfile`` (tensorflow-io's plugin; idempotent).

    Raises:
        MissingExtraError: tensorflow-io is not installed (the ``s3`` extra).
    """
    # Importing tensorflow_io registers its file system plugins.
    import_extra("tensorflow_io", "s3:// in TensorFlow (tf.io.gfile)")


def s3_uris(uris: Mapping[str, str | None]) -> dict[str, str]:
    return {name: uri for name, uri in uris.items() if is_s3(uri)}


def bucket_of(uri: str) -> str:
    """``s3://bucket/key`` -> ``bucket``.

    Raises:
        ValueError: no bucket name (S3 needs 3 to 63 characters).
    """
    bucket = uri[len(S3_SCHEME) :].split("/", 1)[0]
    if len(bucket) < 3:
        raise ValueError(f"Expected s3://<bucket>/<path> with a bucket name. Received: {uri!r}")
    return bucket


def _client(environ: Mapping[str, str]):
    boto3 = import_extra("boto3", "Checking s3:// buckets")
    from botocore.config import Config

    settings = {**environ, **s3_environment(environ)}
    https = settings.get("AWS_ENDPOINT_URL", "https://").startswith("https://")
    verify: bool | str = _flag(settings, "S3_VERIFY_SSL", True)
    if verify and settings.get("AWS_CA_BUNDLE"):
        verify = settings["AWS_CA_BUNDLE"]
    if https and verify is False:
        # Beam's S3 file system (boto3) has no switch to skip verification; it would fail
        # mid-run where tensorflow-io did not.
        raise ObjectStoreError(
            "S3_VERIFY_SSL=0 reaches TensorFlow's S3 client only; Beam's (boto3) always "
            "verifies. Expected AWS_CA_BUNDLE (or S3_CA_FILE) naming the server's CA "
            f"certificate, or an http:// endpoint. Received: endpoint "
            f"{settings.get('AWS_ENDPOINT_URL', 'AWS default')}, S3_VERIFY_SSL=0"
        )
    return boto3.session.Session().client(
        "s3",
        endpoint_url=settings.get("AWS_ENDPOINT_URL"),
        region_name=settings.get("AWS_DEFAULT_REGION"),
        aws_access_key_id=settings.get("AWS_ACCESS_KEY_ID"),
        aws_secret_access_key=settings.get("AWS_SECRET_ACCESS_KEY"),
        aws_session_token=settings.get("AWS_SESSION_TOKEN"),
        verify=verify,
        config=Config(
            connect_timeout=_CHECK_TIMEOUT_SECONDS,
            read_timeout=_CHECK_TIMEOUT_SECONDS,
            retries={"max_attempts": 1, "mode": "standard"},
        ),
    )


def check_uris(uris: Mapping[str, str | None], environ: Mapping[str, str] | None = None) -> None:
    """Fail fast, before anything runs, when an ``s3://`` URI cannot be used.

    For each bucket named by ``uris`` (``{"config.root": "s3://b/run", ...}``), one
    ``HeadBucket`` call with 10 s timeouts and no retry. Without this, tensorflow-io retries an
    unreachable endpoint for minutes, and reports a missing bucket as a missing file.
    Non-``s3://`` values are ignored.

    Raises:
        ObjectStoreError: the message names the argument, the URI, the endpoint and the cause
            (unreachable endpoint, missing bucket, rejected credentials, no credentials).
        MissingExtraError: an ``s3://`` URI and no boto3 (the ``s3`` extra).
    """
    environ = os.environ if environ is None else environ
    uris = s3_uris(uris)
    if not uris:
        return
    client = _client(environ)  # first: it names the `s3` extra when boto3 is missing
    from botocore import exceptions

    endpoint = client.meta.endpoint_url
    checked: set[str] = set()
    for name, uri in uris.items():
        bucket = bucket_of(uri)
        if bucket in checked:
            continue
        where = f"{name}={uri!r} (bucket {bucket!r} at {endpoint})"
        try:
            client.head_bucket(Bucket=bucket)
        except exceptions.NoCredentialsError:
            raise ObjectStoreError(
                f"No S3 credentials for {where}. Expected AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY in the environment."
            ) from None
        except (exceptions.EndpointConnectionError, exceptions.ConnectTimeoutError) as err:
            raise ObjectStoreError(
                f"Cannot reach the S3 endpoint for {where}. Expected a running S3 server at "
                f"S3_ENDPOINT/AWS_ENDPOINT_URL. Received: {type(err).__name__}: {err}"
            ) from None
        except exceptions.SSLError as err:
            raise ObjectStoreError(
                f"TLS failed for {where}. Expected a certificate the client trusts "
                f"(AWS_CA_BUNDLE/S3_CA_FILE) or S3_USE_HTTPS=0. Received: {err}"
            ) from None
        except exceptions.ClientError as err:
            raise ObjectStoreError(f"{_cause(err)} for {where}.") from None
        checked.add(bucket)


def _cause(err) -> str:
    code = str(err.response.get("Error", {}).get("Code", ""))
    status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    if code in ("404", "NoSuchBucket") or status == 404:
        return "The bucket does not exist (create it first)"
    if code in ("403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch") or (
        status == 403
    ):
        return (
            "Access denied: the server rejected the credentials (AWS_ACCESS_KEY_ID/"
            "AWS_SECRET_ACCESS_KEY) or they lack permission on the bucket"
        )
    return f"The S3 server refused the request (HTTP {status}, {code or 'no code'})"


def with_beam_plugin(beam_args: Iterable[str], uris: Iterable[str | None]) -> list[str]:
    """``beam_args`` plus ``--beam_plugins=tensorflow_io`` when a URI is ``s3://``.

    Beam runners that start separate worker processes (``direct_running_mode=
    multi_processing``, Flink, Spark, Dataflow) import the listed plugins in each worker, so
    tf.io.gfile reads ``s3://`` there too (TFMA loads the model in a worker). In-process
    runners ignore the option.
    """
    args = list(beam_args)
    if any(is_s3(uri) for uri in uris) and BEAM_PLUGIN_ARG not in args:
        args.append(BEAM_PLUGIN_ARG)
    return args
