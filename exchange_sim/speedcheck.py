"""Measure the simulator's throughput and memory; prints figures, asserts nothing.

    python -m exchange_sim.speedcheck [--items 2000] [--batch 100] [--memory 100000]

Runs the simulator in its own process (as the benchmark does), delivers ~5 KB messages
through the side channel, then times GetItem (MimeContent plus the queue's field list) and
MoveItem in batches over HTTP from one client thread. "server items/cpu-s" divides by the
simulator process's CPU time, i.e. what one core of simulator sustains. --memory fills an
in-process store with small messages and reports the resident-set growth.
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable

import requests

from exchange_sim.store import Store

ENVELOPE = (
    '<?xml version="1.0" encoding="utf-8"?>'
    '<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" '
    'xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages" '
    'xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types">'
    '<s:Header><t:RequestServerVersion Version="Exchange2016"/></s:Header>'
    "<s:Body>{}</s:Body></s:Envelope>"
)
GET_FIELDS = [
    "item:DateTimeReceived",
    "item:MimeContent",
    "item:Sensitivity",
    "item:Size",
    "item:Subject",
    "message:CcRecipients",
    "message:From",
    "message:InternetMessageId",
    "message:Sender",
    "message:ToRecipients",
]
SIM_COMMAND = ["-m", "exchange_sim", "--port", "0", "--folder", "Queue", "--folder", "Storage"]
MAILBOX = "queue@example.com"


def sample_message(n: int, size: int = 5000) -> bytes:
    head = (
        f"From: Alice Contact <alice@contoso.com>\r\nTo: Sam Sales <sam@example.com>\r\n"
        f"Cc: Carl <carl@contoso.com>\r\nSubject: Quote {n}\r\n"
        f"Message-ID: <speed-{n}@contoso.com>\r\nDate: Mon, 01 Jan 2024 10:00:00 +0000\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
    )
    line = "The quick brown fox jumps over the lazy dog. 0123456789\r\n"
    body = line * ((size - len(head)) // len(line) + 1)
    return (head + body).encode()[:size]


def get_item_request(ids: list[str]) -> bytes:
    fields = "".join(f'<t:FieldURI FieldURI="{f}"/>' for f in GET_FIELDS)
    item_ids = "".join(f'<t:ItemId Id="{i}"/>' for i in ids)
    return ENVELOPE.format(
        "<m:GetItem><m:ItemShape><t:BaseShape>IdOnly</t:BaseShape><t:AdditionalProperties>"
        f"{fields}</t:AdditionalProperties></m:ItemShape><m:ItemIds>{item_ids}</m:ItemIds>"
        "</m:GetItem>"
    ).encode()


def move_item_request(ids: list[str], folder_id: str) -> bytes:
    item_ids = "".join(f'<t:ItemId Id="{i}"/>' for i in ids)
    return ENVELOPE.format(
        f'<m:MoveItem><m:ToFolderId><t:FolderId Id="{folder_id}"/></m:ToFolderId>'
        f"<m:ItemIds>{item_ids}</m:ItemIds></m:MoveItem>"
    ).encode()


def new_ids(body: bytes) -> list[str]:
    parts = body.split(b'<t:ItemId Id="')[1:]
    return [p.split(b'"', 1)[0].decode() for p in parts]


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def timed(label: str, pid: int, count: int, work: Callable[[], None]) -> None:
    cpu0, t0 = cpu_seconds(pid), time.perf_counter()
    work()
    elapsed, cpu = time.perf_counter() - t0, cpu_seconds(pid) - cpu0
    print(
        f"{label:<28} {count:>7} items  {count / elapsed:>9.0f} items/s wall"
        f"  {count / max(cpu, 1e-9):>9.0f} server items/cpu-s"
    )


def http_benchmark(items: int, batch: int) -> None:
    process = subprocess.Popen(
        [sys.executable, *SIM_COMMAND],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        ews_url = process.stdout.readline().split(" at ", 1)[1].strip()
        base = ews_url.rsplit("/EWS/", 1)[0]
        http = requests.Session()
        headers = {"Content-Type": "text/xml; charset=utf-8"}
        messages = [sample_message(n) for n in range(items)]

        def deliver() -> None:
            params = {"mailbox": MAILBOX, "folder": "Queue"}
            for raw in messages:
                http.post(f"{base}/_sim/deliver", params=params, data=raw).raise_for_status()

        timed("deliver (side channel)", process.pid, items, deliver)
        queue = {"mailbox": MAILBOX, "folder": "Queue"}
        listing = http.get(f"{base}/_sim/items", params=queue).json()
        ids = [i["id"] for i in listing["items"]]
        storage = http.get(f"{base}/_sim/items", params={"mailbox": MAILBOX, "folder": "Storage"})
        storage_id = storage.json()["folder_id"]
        batches = [ids[i : i + batch] for i in range(0, len(ids), batch)]
        get_bodies = [get_item_request(b) for b in batches]

        def get_items() -> None:
            for body in get_bodies:
                response = http.post(ews_url, data=body, headers=headers)
                assert response.status_code == 200 and b"ErrorItemNotFound" not in response.content

        timed(f"GetItem x{batch} (+MimeContent)", process.pid, len(ids), get_items)
        moves = [(len(b), move_item_request(b, storage_id)) for b in batches]

        def move_items() -> None:
            for size, body in moves:
                response = http.post(ews_url, data=body, headers=headers)
                assert response.status_code == 200 and len(new_ids(response.content)) == size

        timed(f"MoveItem x{batch}", process.pid, len(ids), move_items)
    finally:
        process.terminate()
        process.wait(timeout=30)


def memory_check(count: int) -> None:
    gc.collect()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    store = Store()
    mailbox = store.add_mailbox(MAILBOX)
    folder = store.ensure_path("Queue", mailbox)
    t0 = time.perf_counter()
    for n in range(count):
        store.deliver(folder, sample_message(n, size=1000))
    elapsed = time.perf_counter() - t0
    gc.collect()
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        f"memory: {count} messages of 1 KB: +{(after - before) / 1024:.0f} MB RSS"
        f" ({(after - before) * 1024 / count:.0f} B/message), delivered at {count / elapsed:.0f}/s"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--memory", type=int, default=0, help="also fill a store with N messages")
    args = parser.parse_args(argv)
    http_benchmark(args.items, args.batch)
    if args.memory:
        memory_check(args.memory)


if __name__ == "__main__":
    main()
