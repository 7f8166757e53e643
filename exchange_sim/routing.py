"""Public-folder routing: content requests must name the folder's content mailbox.

Exchange routes a request by `X-AnchorMailbox`; a request for public-folder *content*
(items of a public folder, a subscription to one) must also carry `X-PublicFolderMailbox`,
both set to the public-folder mailbox that holds the folder's content (Microsoft's "Route
public folder content requests": the GUID from the folder's PR_REPLICA_LIST plus the
domain). Hierarchy requests (GetFolder, FindFolder) and a move from a user's mailbox INTO
a public folder are not content requests of a public folder.

With the fault armed (`Faults.require_public_routing`), a content request without those
headers is refused the way a mailbox holding no replica refuses it:
ErrorNoPublicFolderReplicaAvailable, one response message per item.
"""

from __future__ import annotations

from lxml import etree

from exchange_sim.render import PUBLIC_CONTENT_MAILBOX_GUID
from exchange_sim.soapxml import M_NS, T_NS
from exchange_sim.store import Store

CONTENT_OPS = frozenset(
    {"FindItem", "GetItem", "SyncFolderItems", "Subscribe", "MoveItem", "CopyItem", "DeleteItem"}
)
REFUSAL = "ErrorNoPublicFolderReplicaAvailable"
REFUSAL_TEXT = "There is no replica of that public folder on this public folder mailbox."
_TO_FOLDER = "{" + M_NS + "}ToFolderId"
_FOLDER_ID = "{" + T_NS + "}FolderId"
_ITEM_ID = "{" + T_NS + "}ItemId"


def touches_public_content(store: Store, op: str, element: etree._Element) -> bool:
    """Whether this request reads or changes the content of a public folder."""
    if op not in CONTENT_OPS:
        return False
    for elem in element.iter(_FOLDER_ID):
        parent = elem.getparent()
        if parent is not None and parent.tag == _TO_FOLDER:
            continue  # the destination of a move is not what the request reads
        folder = store.folders.get(elem.get("Id", ""))
        if folder is not None and folder.is_public:
            return True
    for elem in element.iter(_ITEM_ID):
        item = store.items.get(elem.get("Id", ""))
        if item is not None and item.folder.is_public:
            return True
    return False


def routed_right(anchor: str | None, public_mailbox: str | None) -> bool:
    """Both headers name the content mailbox (its GUID as the local part)."""
    expected = PUBLIC_CONTENT_MAILBOX_GUID.lower()
    return all(
        (value or "").split("@", 1)[0].strip().lower() == expected
        for value in (anchor, public_mailbox)
    )
