"""The HTTP adapter the source installs into exchangelib: in-memory bodies are parsed in
slices (exchangelib asks requests for one byte at a time), streaming bodies byte by byte."""

from __future__ import annotations

import asyncio

import requests
from exchangelib.protocol import BaseProtocol

from exchange_sim import Simulator
from pipeline.sources.ews_connect import (
    IN_MEMORY_CHUNK_BYTES,
    SlicedHTTPAdapter,
    SlicedNoVerifyHTTPAdapter,
    set_http_adapter,
)

from .conftest import MAILBOX, QUEUE, mime


def _first_chunks(url: str, *, stream: bool) -> tuple[int, bytes]:
    session = requests.Session()
    session.mount("http://", SlicedHTTPAdapter())
    response = session.get(url, stream=stream)
    chunks = list(response.iter_content())  # chunk_size defaults to 1, as exchangelib calls it
    return len(chunks), b"".join(chunks)


async def test_in_memory_bodies_are_sliced_streams_are_not(sim: Simulator) -> None:
    for n in range(30):  # a listing large enough to need several slices at one byte each
        sim.deliver(MAILBOX, QUEUE, mime(f"Quote {n}"))
    url = f"{sim.base_url}/_sim/items?mailbox={MAILBOX}&folder={QUEUE}"
    sliced_count, sliced = await asyncio.to_thread(_first_chunks, url, stream=False)
    streamed_count, streamed = await asyncio.to_thread(_first_chunks, url, stream=True)
    assert sliced == streamed and len(sliced) > 1000
    assert sliced_count == -(-len(sliced) // IN_MEMORY_CHUNK_BYTES)
    assert streamed_count == len(streamed)  # one byte at a time, as requests does


def test_adapter_follows_tls_verification() -> None:
    before = BaseProtocol.HTTP_ADAPTER_CLS
    try:
        set_http_adapter(verify_tls=False)
        assert BaseProtocol.HTTP_ADAPTER_CLS is SlicedNoVerifyHTTPAdapter
        set_http_adapter(verify_tls=True)
        assert BaseProtocol.HTTP_ADAPTER_CLS is SlicedHTTPAdapter
    finally:
        BaseProtocol.HTTP_ADAPTER_CLS = before
