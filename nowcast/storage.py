"""Where stores live: local paths or object storage URLs (``s3://bucket/prefix``) through fsspec.

This module turns a store URL plus optional storage options into the fsspec/s3fs options
that the Zarr stores pass on (``zarr.open_group(url, storage_options=...)``), and checks,
within a bounded time, that the location can be reached before anything is written:

- **Credentials and endpoint** come from, highest first: the explicit options (e.g. the
  service's ``store_options`` setting), then ``NOWCAST_S3_*`` environment variables, then the
  standard ``AWS_*`` variables (see :data:`ENV_VARS`). Local paths need no options (None).
- **Bounded waits.** Every S3 client gets a connect timeout, a read timeout and a bounded
  number of attempts (``NOWCAST_S3_CONNECT_TIMEOUT``, ``NOWCAST_S3_READ_TIMEOUT``,
  ``NOWCAST_S3_MAX_ATTEMPTS``), so a wrong endpoint fails instead of hanging.
- **Listings are not cached** (``use_listings_cache=False``): a reader in another process sees
  the day groups a writer adds.
- :func:`check_access` probes the bucket once, with an overall deadline, and raises
  :class:`StorageError` naming the cause (unreachable endpoint, wrong credentials, missing
  bucket). Stores call it before creating anything, so bad configuration never leaves a
  partial store behind.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping
from typing import Any

from nowcast.durability import is_remote  # re-exported: one remote check

log = logging.getLogger(__name__)

#: environment variables read for ``s3://`` URLs: name -> (storage option, meaning)
ENV_VARS: dict[str, tuple[str, str]] = {
    "NOWCAST_S3_KEY": ("key", "access key id (else AWS_ACCESS_KEY_ID)"),
    "NOWCAST_S3_SECRET": ("secret", "secret access key (else AWS_SECRET_ACCESS_KEY)"),
    "NOWCAST_S3_TOKEN": ("token", "session token (else AWS_SESSION_TOKEN)"),
    "NOWCAST_S3_ENDPOINT_URL": ("endpoint_url", "S3-compatible endpoint, e.g. http://minio:9000 (else AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL)"),
    "NOWCAST_S3_REGION": ("region", "region name (else AWS_REGION / AWS_DEFAULT_REGION)"),
    "NOWCAST_S3_ANON": ("anon", "true: unsigned (anonymous) requests to a public bucket"),
    "NOWCAST_S3_CONNECT_TIMEOUT": ("connect_timeout", "seconds to open a connection (default 5)"),
    "NOWCAST_S3_READ_TIMEOUT": ("read_timeout", "seconds to wait for an answer (default 20)"),
    "NOWCAST_S3_MAX_ATTEMPTS": ("max_attempts", "attempts per request, retries included (default 3)"),
}

#: the standard AWS variables used when no NOWCAST_S3_* variable is set, per option
AWS_FALLBACKS: dict[str, tuple[str, ...]] = {
    "key": ("AWS_ACCESS_KEY_ID",),
    "secret": ("AWS_SECRET_ACCESS_KEY",),
    "token": ("AWS_SESSION_TOKEN",),
    "endpoint_url": ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"),
    "region": ("AWS_REGION", "AWS_DEFAULT_REGION"),
}

DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_READ_TIMEOUT = 20.0
DEFAULT_MAX_ATTEMPTS = 3
#: overall deadline of :func:`check_access`, seconds
DEFAULT_CHECK_TIMEOUT = 10.0

_S3_PROTOCOLS = ("s3", "s3a")


class StorageError(OSError):
    """An object-storage location that cannot be used; the message names the URL and the cause."""


def protocol(url: str) -> str:
    """The URL scheme (``"file"`` for plain paths)."""
    url = str(url)
    return url.split("://", 1)[0].lower() if "://" in url else "file"


def join(url: str, *parts: str) -> str:
    """``url`` with path parts appended with ``/`` (works for paths and URLs alike)."""
    out = str(url).rstrip("/")
    for p in parts:
        out = f"{out}/{str(p).strip('/')}"
    return out


def _env_bool(value: str) -> bool:
    v = value.strip().lower()
    if v in ("1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off", ""):
        return False
    raise StorageError(f"NOWCAST_S3_ANON={value!r}: expected true or false")


def _env_number(name: str, value: str, kind: type) -> float | int:
    try:
        n = kind(value)
    except ValueError:
        raise StorageError(f"{name}={value!r}: expected a number") from None
    if n <= 0:
        raise StorageError(f"{name}={value!r}: must be positive")
    return n


def storage_options(
    url: str, options: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
) -> dict[str, Any] | None:
    """The fsspec storage options for ``url``: None for local paths, resolved s3fs options for S3.

    ``options`` may use the short names ``key``, ``secret``, ``token``, ``endpoint_url``,
    ``region``, ``anon``, ``connect_timeout``, ``read_timeout``, ``max_attempts`` or any s3fs
    option (``client_kwargs``, ``config_kwargs``, ...); explicit values win over the
    environment (``environ``, default ``os.environ``).
    """
    if not is_remote(url):
        return None
    given = dict(options or {})
    if protocol(url) not in _S3_PROTOCOLS:
        return given  # another fsspec backend (gcs, az, memory, ...): passed through unchanged
    env = os.environ if environ is None else environ
    short: dict[str, Any] = {}
    for var, (opt, _) in ENV_VARS.items():
        if env.get(var):
            short[opt] = env[var]
    for opt, names in AWS_FALLBACKS.items():
        if opt not in short:
            for name in names:
                if env.get(name):
                    short[opt] = env[name]
                    break
    if "anon" in short:
        short["anon"] = _env_bool(str(short["anon"]))
    for opt, kind in (("connect_timeout", float), ("read_timeout", float), ("max_attempts", int)):
        if opt in short:
            short[opt] = _env_number(f"NOWCAST_S3_{opt.upper()}", str(short[opt]), kind)
    short.update({k: v for k, v in given.items() if v is not None})

    out: dict[str, Any] = {}
    for opt in ("key", "secret", "token", "endpoint_url", "anon"):
        if opt in short:
            out[opt] = short.pop(opt)
    region = short.pop("region", None)
    connect = float(short.pop("connect_timeout", DEFAULT_CONNECT_TIMEOUT))
    read = float(short.pop("read_timeout", DEFAULT_READ_TIMEOUT))
    attempts = int(short.pop("max_attempts", DEFAULT_MAX_ATTEMPTS))
    client_kwargs = dict(short.pop("client_kwargs", None) or {})
    if region:
        client_kwargs.setdefault("region_name", region)
    config_kwargs = dict(short.pop("config_kwargs", None) or {})
    config_kwargs.setdefault("connect_timeout", connect)
    config_kwargs.setdefault("read_timeout", read)
    config_kwargs.setdefault("retries", {"max_attempts": attempts, "mode": "standard"})
    out["client_kwargs"] = client_kwargs
    out["config_kwargs"] = config_kwargs
    out.setdefault("use_listings_cache", False)
    out.update(short)  # any other s3fs option, verbatim
    return out


def describe(url: str, options: Mapping[str, Any] | None) -> str:
    """A one-line, secret-free description of where ``url`` points (for logs and errors)."""
    if not is_remote(url):
        return str(url)
    opts = options or {}
    endpoint = opts.get("endpoint_url") or "AWS default endpoint"
    key = opts.get("key")
    who = "anonymous" if opts.get("anon") else (f"key {str(key)[:4]}..." if key else "default credentials")
    return f"{url} (endpoint {endpoint}, {who})"


def filesystem(url: str, options: Mapping[str, Any] | None = None) -> tuple[Any, str]:
    """``(fsspec filesystem, path)`` for ``url`` with the resolved options."""
    import fsspec

    opts = storage_options(url, options) if is_remote(url) else None
    return fsspec.core.url_to_fs(str(url), **(opts or {}))


def _explain(url: str, options: Mapping[str, Any], exc: BaseException) -> str:
    """A human cause for a failed probe, by exception type and S3 error code."""
    text = f"{type(exc).__name__}: {exc}"
    endpoint = options.get("endpoint_url") or "the AWS default endpoint"
    try:
        from botocore import exceptions as bx
    except ImportError:  # pragma: no cover - s3fs always brings botocore
        bx = None
    if bx is not None:
        if isinstance(exc, bx.NoCredentialsError):
            return "no credentials: set NOWCAST_S3_KEY/NOWCAST_S3_SECRET (or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY) or the store options key/secret"
        if isinstance(exc, bx.ReadTimeoutError | bx.ConnectTimeoutError):
            return f"endpoint {endpoint} did not answer in time ({text}); check NOWCAST_S3_ENDPOINT_URL"
        if isinstance(exc, bx.EndpointConnectionError | bx.ConnectionError):
            return f"cannot connect to endpoint {endpoint} ({text}); check NOWCAST_S3_ENDPOINT_URL"
    low = text.lower()
    if isinstance(exc, PermissionError) or any(
        s in low for s in ("accessdenied", "access denied", "invalidaccesskeyid", "signaturedoesnotmatch", "forbidden", "does not exist in our records", "signature we calculated")
    ):
        return f"access denied by {endpoint}: wrong or insufficient credentials ({exc})"
    if isinstance(exc, FileNotFoundError) or "nosuchbucket" in low:
        return f"bucket not found at {endpoint} ({exc})"
    if isinstance(exc, TimeoutError):
        return f"endpoint {endpoint} did not answer in time ({exc})"
    return text


def check_access(url: str, options: Mapping[str, Any] | None = None, timeout: float = DEFAULT_CHECK_TIMEOUT) -> None:
    """Probe ``url`` once (a one-key listing under its prefix); raises StorageError naming the cause.

    ``options`` are resolved storage options (see :func:`storage_options`). Local paths and
    non-S3 URLs are not probed. The probe uses its own client without s3fs-level retries and
    an overall deadline of ``timeout`` seconds, so it returns or fails within that time.
    """
    if protocol(url) not in _S3_PROTOCOLS:
        return
    import s3fs

    opts = dict(options or {})
    opts.pop("skip_instance_cache", None)
    rest = str(url).split("://", 1)[1]
    bucket, _, prefix = rest.partition("/")
    if not bucket:
        raise StorageError(f"{url}: no bucket in the URL (expected s3://bucket/prefix)")
    result: dict[str, BaseException | None] = {}

    def probe() -> None:
        try:
            fs = s3fs.S3FileSystem(skip_instance_cache=True, **opts)
            fs.retries = 1  # one s3fs attempt; botocore's bounded attempts still apply
            # one listing under the store's own prefix: works with prefix-scoped policies too
            fs.call_s3("list_objects_v2", Bucket=bucket, Prefix=prefix, MaxKeys=1)
            result["error"] = None
        except BaseException as exc:  # noqa: BLE001 - reported to the caller below
            result["error"] = exc

    thread = threading.Thread(target=probe, name=f"s3-probe-{bucket}", daemon=True)
    thread.start()
    thread.join(timeout)
    where = describe(url, opts)
    if thread.is_alive():
        raise StorageError(f"{where}: no answer within {timeout:g} s; check NOWCAST_S3_ENDPOINT_URL and the network")
    err = result.get("error")
    if err is not None:
        raise StorageError(f"{where}: {_explain(url, opts, err)}") from err
    log.debug("storage reachable: %s", where)


def prepare(url: str, options: Mapping[str, Any] | None = None, check: bool = True) -> dict[str, Any] | None:
    """Resolved options for ``url`` (None for local paths), after :func:`check_access` when ``check``."""
    opts = storage_options(url, options)
    if check and opts is not None:
        check_access(url, opts)
    return opts


__all__ = [
    "ENV_VARS",
    "StorageError",
    "check_access",
    "describe",
    "filesystem",
    "is_remote",
    "join",
    "prepare",
    "protocol",
    "storage_options",
]
