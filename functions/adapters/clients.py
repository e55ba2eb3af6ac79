"""boto3 clients, created once per process and lazily, from settings (endpoint and region)."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache, partial
from typing import Any

from functions.settings import Settings, get_settings


@cache
def client(service: str) -> Any:
    """A cached boto3 client for ``service`` honouring AWS_ENDPOINT_URL and AWS_REGION."""
    return new_client(service, get_settings())


def clients_for(settings: Settings) -> Callable[[str], Any]:
    """service -> a client configured by ``settings``, one per service, created at its first use (for a
    tool that runs the functions' code against a stack: its settings are not the process's)."""
    return cache(partial(new_client, settings=settings))


def new_client(service: str, settings: Settings) -> Any:
    """A boto3 client for ``service`` at ``settings``' endpoint and region, with the functions' timeouts,
    retries and connection pool."""
    import boto3  # deferred: unit tests of pure logic never import boto3
    from botocore.config import Config

    endpoint_url = settings.endpoint_url
    if service == "sagemaker-runtime":
        # The detector waits SAGEMAKER_TIMEOUT_S for a score and then applies its failure policy: retries
        # and reads beyond that would only keep its one worker thread busy while later batches queue.
        timeout = settings.sagemaker_timeout_s
        config = Config(retries={"mode": "standard", "max_attempts": 2}, connect_timeout=min(5.0, timeout),
                        read_timeout=timeout, tcp_keepalive=True)
        # An explicit endpoint_url would hide the service-specific variable from botocore: apply it here.
        endpoint_url = settings.sagemaker_runtime_endpoint_url or endpoint_url
    else:
        config = Config(
            retries={"mode": "adaptive", "max_attempts": 8},
            connect_timeout=5,
            read_timeout=30,
            tcp_keepalive=True,
            # botocore keeps 10 connections; the processor's window writes run on WRITE_CONCURRENCY
            # threads (16), and every call beyond the pool opens a connection (a TLS handshake on AWS).
            max_pool_connections=max(10, settings.write_concurrency + 4),
        )
    return boto3.client(service, region_name=settings.region, endpoint_url=endpoint_url, config=config)
