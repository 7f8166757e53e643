"""The Graph face through the whole logging workflow, over the same store as EWS."""

from __future__ import annotations

import requests

from exchange_sim import SimulatorThread
from tests.sim_graph.conftest import MAILBOX, QUEUE, STORAGE, GraphClient, GraphRecorder, message

SENSITIVITY = "singleValueExtendedProperties($filter=id eq 'Integer 0x0036')"


def test_folders_by_display_name(graph: GraphClient, sim: SimulatorThread) -> None:
    top = graph.get("mailFolders").json()
    names = {f["displayName"] for f in top["value"]}
    assert {"Inbox", "Email Logging"} <= names
    queue_id = graph.folder_id(QUEUE)
    assert graph.get(f"mailFolders/{queue_id}").json()["displayName"] == "Queue"
    assert graph.get("mailFolders/inbox").json()["displayName"] == "Inbox"
    # Graph ids are the EWS ids in URL-safe base64.
    ews_id = sim.folder_id(MAILBOX, QUEUE)
    assert queue_id == ews_id.replace("/", "-").replace("+", "_")


def test_delivered_through_sideband_visible_in_both_faces(
    graph: GraphClient, sim: SimulatorThread
) -> None:
    raw = message(1)
    answer = requests.post(
        f"{sim.base_url}/_sim/deliver",
        params={"mailbox": MAILBOX, "folder": QUEUE},
        data=raw,
        timeout=10,
    )
    assert answer.status_code < 300, answer.text
    queue_id = graph.folder_id(QUEUE)
    listed = graph.get(f"mailFolders/{queue_id}/messages").json()["value"]
    assert [m["internetMessageId"] for m in listed] == ["<msg-1@contoso.com>"]
    assert [i["message_id"] for i in sim.list_items(MAILBOX, QUEUE)] == ["<msg-1@contoso.com>"]


def test_delta_rounds_and_removals(graph: GraphClient, sim: SimulatorThread) -> None:
    for n in range(5):
        sim.deliver(MAILBOX, QUEUE, message(n))
    queue_id = graph.folder_id(QUEUE)
    first = f"mailFolders/{queue_id}/messages/delta"
    params = {"$select": "subject,internetMessageId,sender,from,toRecipients,isDraft"}
    prefer = {"Prefer": "odata.maxpagesize=2"}
    page = graph.get(first, params=params, headers=prefer).json()
    assert len(page["value"]) == 2 and "$skiptoken=" in page["@odata.nextLink"]
    entries, delta_link = graph.delta_round(first, params=params, headers=prefer)
    assert sorted(e["subject"] for e in entries) == [f"Quote {n}" for n in range(5)]
    assert set(entries[0]) == {"@odata.type", "@odata.etag", "id", *params["$select"].split(",")}
    again, delta_link = graph.delta_round(delta_link)
    assert again == []
    sim.deliver(MAILBOX, QUEUE, message(9))
    storage = {"destinationId": graph.folder_id(STORAGE)}
    moved = graph.post(f"messages/{entries[0]['id']}/move", storage)
    assert moved.status_code == 201
    changes, _ = graph.delta_round(delta_link)
    assert {e.get("subject") for e in changes if "@removed" not in e} == {"Quote 9"}
    assert [e["id"] for e in changes if "@removed" in e] == [entries[0]["id"]]


def test_move_copy_delete_permanent_delete(graph: GraphClient, sim: SimulatorThread) -> None:
    old_id = graph_id(sim.deliver(MAILBOX, QUEUE, message(1)))
    storage_id = graph.folder_id(STORAGE)
    moved = graph.post(f"messages/{old_id}/move", {"destinationId": storage_id}).json()
    assert moved["id"] != old_id and moved["parentFolderId"] == storage_id
    assert moved["webLink"].startswith("https://outlook.office365.com/owa/?ItemID=")
    assert graph.get(f"messages/{old_id}").status_code == 404
    copied = graph.post(f"messages/{moved['id']}/copy", {"destinationId": "inbox"})
    assert copied.status_code == 201
    assert graph.delete(f"messages/{copied.json()['id']}").status_code == 204
    trash = graph.get("mailFolders/deleteditems/messages").json()["value"]
    assert [m["internetMessageId"] for m in trash] == ["<msg-1@contoso.com>"]
    assert graph.post(f"messages/{trash[0]['id']}/permanentDelete").status_code == 204
    assert graph.get("mailFolders/deleteditems/messages").json()["value"] == []
    assert [i["message_id"] for i in sim.list_items(MAILBOX, STORAGE)] == ["<msg-1@contoso.com>"]


def graph_id(ews_id: str) -> str:
    return ews_id.replace("/", "-").replace("+", "_")


def test_find_by_internet_message_id(graph: GraphClient, sim: SimulatorThread) -> None:
    sim.deliver(MAILBOX, QUEUE, message(1))
    sim.deliver(MAILBOX, STORAGE, message(2, Message_ID="<it's@contoso.com>"))
    found = graph.get("messages", params={"$filter": "internetMessageId eq '<it''s@contoso.com>'"})
    assert [m["subject"] for m in found.json()["value"]] == ["Quote 2"]


def test_sensitivity_sender_from_draft_and_mime(graph: GraphClient, sim: SimulatorThread) -> None:
    raw = message(1, Sensitivity="Company-Confidential", Sender="Del Egate <del@contoso.com>")
    sensitive = graph_id(sim.deliver(MAILBOX, QUEUE, raw))
    plain = graph_id(sim.deliver(MAILBOX, QUEUE, message(2)))
    draft = graph_id(sim.save_draft(MAILBOX, QUEUE, message(3)))
    params = {"$select": "sender,from,isDraft", "$expand": SENSITIVITY}
    got = graph.get(f"messages/{sensitive}", params=params).json()
    assert got["singleValueExtendedProperties"] == [{"id": "Integer 0x36", "value": "3"}]
    assert got["sender"]["emailAddress"]["address"] == "del@contoso.com"
    assert got["from"]["emailAddress"]["address"] == "alice@contoso.com"
    # No Sensitivity header: the property is absent (a client reads Normal).
    unmarked = graph.get(f"messages/{plain}", params=params).json()
    assert unmarked["singleValueExtendedProperties"] == []
    assert graph.get(f"messages/{draft}", params=params).json()["isDraft"] is True
    mime = graph.get(f"messages/{plain}/$value")
    assert mime.headers["Content-Type"].startswith("text/plain")
    assert mime.content == sim.call(lambda: sim.sim._state.store.items[ews(plain)].raw)


def ews(graph_id_: str) -> str:
    return graph_id_.replace("-", "/").replace("_", "+")


def test_default_message_validates_and_errors(
    graph: GraphClient, sim: SimulatorThread, graph_recorder: GraphRecorder
) -> None:
    item = graph_id(sim.deliver(MAILBOX, QUEUE, message(1)))
    assert graph.get(f"messages/{item}").json()["body"]["content"].strip() == "Hello."
    assert graph.get("messages/AAAA").status_code == 400
    assert graph.get("messages/" + item[:-2] + "AA").status_code in (400, 404)
    assert graph.get(f"{graph.graph_url}/users/nobody@example.com/mailFolders").status_code == 404
    assert graph.get(f"messages/{item}", params={"$expand": "attachments"}).status_code == 400
    assert {"message", "error"} <= graph_recorder.specs()


def test_messages_under_a_folder_path_and_new_folders(
    graph: GraphClient, sim: SimulatorThread
) -> None:
    item = graph_id(sim.deliver(MAILBOX, QUEUE, message(1)))
    queue, storage = graph.folder_id(QUEUE), graph.folder_id(STORAGE)
    assert graph.get(f"mailFolders/{queue}/messages/{item}").json()["id"] == item
    assert graph.get(f"mailFolders/{storage}/messages/{item}").status_code == 404
    assert graph.get(f"mailFolders/{queue}/messages/{item}/$value").status_code == 200
    moved = graph.post(f"mailFolders/{queue}/messages/{item}/move", {"destinationId": storage})
    assert moved.status_code == 201
    new_id = moved.json()["id"]
    deleted = graph.post(f"mailFolders/{storage}/messages/{new_id}/permanentDelete")
    assert deleted.status_code == 204
    made = graph.post("mailFolders", {"displayName": "Archive"})
    assert made.status_code == 201 and made.json()["displayName"] == "Archive"
    assert graph.post("mailFolders", {"displayName": "archive"}).status_code == 409
    child = graph.post(f"mailFolders/{made.json()['id']}/childFolders", {"displayName": "2026"})
    assert child.status_code == 201 and graph.folder_id("Archive/2026") == child.json()["id"]


def test_folder_select(graph: GraphClient) -> None:
    listed = graph.get("mailFolders", params={"$select": "displayName"}).json()["value"]
    assert all(set(f) == {"id", "displayName"} for f in listed)
    inbox = graph.get("mailFolders/inbox", params={"$select": "totalItemCount"}).json()
    assert set(inbox) == {"@odata.context", "id", "totalItemCount"}
