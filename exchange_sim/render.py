"""Render folders and items as EWS XML for a requested shape.

Item properties come out in the schema's order (ItemType, then MessageType). Fragments of
properties that never change for an item are cached on the item; ids, the parent folder and
MIME content are rendered per request.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote

from exchange_sim.mime import Address
from exchange_sim.model import Folder, Item
from exchange_sim.soapxml import esc, xml_datetime

ITEM_CLASS = "IPM.Note"


@dataclass(frozen=True, slots=True)
class Shape:
    base: str  # IdOnly, Default, AllProperties
    fields: frozenset[str]


def _mailbox(tag: str, address: Address) -> str:
    email_part = (
        f"<t:EmailAddress>{esc(address.email)}</t:EmailAddress><t:RoutingType>SMTP</t:RoutingType>"
        "<t:MailboxType>OneOff</t:MailboxType>"
        if address.email
        else ""
    )
    return f"<t:{tag}><t:Name>{esc(address.name)}</t:Name>{email_part}</t:{tag}>"


def _single(tag: str, address: Address | None) -> str:
    return f"<t:{tag}>{_mailbox('Mailbox', address)}</t:{tag}>" if address else ""


def _array(tag: str, addresses: tuple[Address, ...]) -> str:
    if not addresses:
        return ""
    return f"<t:{tag}>{''.join(_mailbox('Mailbox', a) for a in addresses)}</t:{tag}>"


def _text(tag: str, value: str | None) -> str:
    return f"<t:{tag}>{esc(value)}</t:{tag}>" if value is not None else ""


def _bool(value: bool) -> str:
    return "true" if value else "false"


def _display(addresses: tuple[Address, ...]) -> str:
    return "; ".join(a.name for a in addresses)


def _sent(item: Item) -> str:
    return xml_datetime(item.props.date_sent or item.received)


#: The OWA host in WebClientReadFormQueryString (.invalid: RFC 2606, never resolves).
OWA_BASE = "https://exsim.invalid/owa/"


def _owa_link(item: Item) -> str:
    """As Exchange 2013+ returns it: the full OWA read-form URL of the item."""
    url = f"{OWA_BASE}?ItemID={quote(item.id, safe='')}&exvsurl=1&viewmodel=ReadMessageItem"
    return f"<t:WebClientReadFormQueryString>{esc(url)}</t:WebClientReadFormQueryString>"


# (field URI, renderer, cacheable) in schema order. ItemId and ParentFolderId vary per copy.
_ITEM_FIELDS: tuple[tuple[str, Callable[[Item], str], bool], ...] = (
    (
        "item:MimeContent",
        lambda i: (
            '<t:MimeContent CharacterSet="UTF-8">'
            f"{base64.b64encode(i.raw).decode('ascii')}</t:MimeContent>"
        ),
        False,
    ),
    ("item:ItemId", lambda i: f'<t:ItemId Id="{i.id}" ChangeKey="{i.changekey}"/>', False),
    (
        "item:ParentFolderId",
        lambda i: f'<t:ParentFolderId Id="{i.folder.id}" ChangeKey="{i.folder.changekey}"/>',
        False,
    ),
    ("item:ItemClass", lambda i: f"<t:ItemClass>{ITEM_CLASS}</t:ItemClass>", True),
    ("item:Subject", lambda i: _text("Subject", i.props.subject), True),
    ("item:Sensitivity", lambda i: f"<t:Sensitivity>{i.props.sensitivity}</t:Sensitivity>", True),
    (
        "item:DateTimeReceived",
        lambda i: f"<t:DateTimeReceived>{xml_datetime(i.received)}</t:DateTimeReceived>",
        True,
    ),
    ("item:Size", lambda i: f"<t:Size>{len(i.raw)}</t:Size>", True),
    ("item:Importance", lambda i: "<t:Importance>Normal</t:Importance>", True),
    ("item:InReplyTo", lambda i: _text("InReplyTo", i.props.in_reply_to), True),
    ("item:IsSubmitted", lambda i: "<t:IsSubmitted>false</t:IsSubmitted>", True),
    ("item:IsDraft", lambda i: f"<t:IsDraft>{_bool(i.is_draft)}</t:IsDraft>", True),
    ("item:IsFromMe", lambda i: "<t:IsFromMe>false</t:IsFromMe>", True),
    ("item:IsResend", lambda i: "<t:IsResend>false</t:IsResend>", True),
    (
        "item:IsUnmodified",
        lambda i: f"<t:IsUnmodified>{_bool(not i.is_draft)}</t:IsUnmodified>",
        True,
    ),
    ("item:DateTimeSent", lambda i: f"<t:DateTimeSent>{_sent(i)}</t:DateTimeSent>", True),
    (
        "item:DateTimeCreated",
        lambda i: f"<t:DateTimeCreated>{xml_datetime(i.created)}</t:DateTimeCreated>",
        True,
    ),
    ("item:DisplayCc", lambda i: _text("DisplayCc", _display(i.props.cc)), True),
    ("item:DisplayTo", lambda i: _text("DisplayTo", _display(i.props.to)), True),
    ("item:HasAttachments", lambda i: "<t:HasAttachments>false</t:HasAttachments>", True),
    (
        "item:LastModifiedTime",
        lambda i: f"<t:LastModifiedTime>{xml_datetime(i.created)}</t:LastModifiedTime>",
        True,
    ),
    ("item:WebClientReadFormQueryString", lambda i: _owa_link(i), False),
    ("message:Sender", lambda i: _single("Sender", i.props.sender), True),
    ("message:ToRecipients", lambda i: _array("ToRecipients", i.props.to), True),
    ("message:CcRecipients", lambda i: _array("CcRecipients", i.props.cc), True),
    ("message:From", lambda i: _single("From", i.props.author), True),
    ("message:InternetMessageId", lambda i: _text("InternetMessageId", i.props.message_id), True),
    ("message:IsRead", lambda i: f"<t:IsRead>{_bool(i.is_read)}</t:IsRead>", False),
    ("message:References", lambda i: _text("References", i.props.references), True),
)

KNOWN_ITEM_FIELDS = frozenset(uri for uri, _, _ in _ITEM_FIELDS)
_DEFAULT_ITEM_FIELDS = frozenset(
    {
        "item:ItemId",
        "item:ParentFolderId",
        "item:ItemClass",
        "item:Subject",
        "item:Sensitivity",
        "item:DateTimeReceived",
        "item:Size",
        "item:HasAttachments",
        "item:IsDraft",
        "item:DateTimeSent",
        "item:DateTimeCreated",
        "message:Sender",
        "message:ToRecipients",
        "message:CcRecipients",
        "message:From",
        "message:InternetMessageId",
        "message:IsRead",
    }
)
_ALL_ITEM_FIELDS = KNOWN_ITEM_FIELDS - {"item:MimeContent"}


def item_fields(shape: Shape) -> frozenset[str]:
    if shape.base == "AllProperties":
        base = _ALL_ITEM_FIELDS
    elif shape.base == "Default":
        base = _DEFAULT_ITEM_FIELDS
    else:
        base = frozenset({"item:ItemId"})
    return base | shape.fields | {"item:ItemId"}


def item_xml(item: Item, fields: frozenset[str]) -> str:
    """`<t:Message>` with the given field URIs (unknown URIs are ignored)."""
    cache = item.fragments
    if cache is None:
        cache = item.fragments = {}
    parts = []
    for uri, render, cacheable in _ITEM_FIELDS:
        if uri not in fields:
            continue
        if cacheable:
            fragment = cache.get(uri)
            if fragment is None:
                fragment = cache[uri] = render(item)
            parts.append(fragment)
        else:
            parts.append(render(item))
    return f"<t:Message>{''.join(parts)}</t:Message>"


def item_id_xml(item: Item) -> str:
    return f'<t:Message><t:ItemId Id="{item.id}" ChangeKey="{item.changekey}"/></t:Message>'


# -- folders -------------------------------------------------------------------------------

_DEFAULT_FOLDER_FIELDS = frozenset(
    {
        "folder:FolderId",
        "folder:DisplayName",
        "folder:TotalCount",
        "folder:ChildFolderCount",
        "folder:UnreadCount",
    }
)
_ALL_FOLDER_FIELDS = _DEFAULT_FOLDER_FIELDS | {"folder:ParentFolderId", "folder:FolderClass"}


#: PR_REPLICA_LIST: which public-folder mailbox holds a public folder's content (as the
#: ASCII text of its mailbox GUID, NUL-terminated), read by clients to route content
#: requests (Microsoft's "Route public folder content requests").
PR_REPLICA_LIST = 0x6698
#: The mailbox GUID of the simulator's one public-folder content mailbox.
PUBLIC_CONTENT_MAILBOX_GUID = "5f1c1a0e-7d3b-4c2a-9e61-0b8d3f4a2c77"


def extended_field(tag: str) -> str:
    """The field key of an ExtendedFieldURI PropertyTag ("0x6698" or "26264")."""
    try:
        return f"ext:{int(tag, 0):#06x}"
    except ValueError:
        return f"ext:{tag.lower()}"


def _replica_list(folder: Folder) -> str:
    value = base64.b64encode(PUBLIC_CONTENT_MAILBOX_GUID.encode("ascii") + b"\0").decode()
    return (
        f'<t:ExtendedProperty><t:ExtendedFieldURI PropertyTag="{PR_REPLICA_LIST:#06x}" '
        f'PropertyType="Binary"/><t:Value>{value}</t:Value></t:ExtendedProperty>'
    )


def folder_fields(shape: Shape) -> frozenset[str]:
    if shape.base == "AllProperties":
        base = _ALL_FOLDER_FIELDS
    elif shape.base == "Default":
        base = _DEFAULT_FOLDER_FIELDS
    else:
        base = frozenset()
    return base | shape.fields | {"folder:FolderId"}


def folder_xml(folder: Folder, fields: frozenset[str]) -> str:
    parts = [f'<t:FolderId Id="{folder.id}" ChangeKey="{folder.changekey}"/>']
    if "folder:ParentFolderId" in fields and folder.parent is not None:
        parent = folder.parent
        parts.append(f'<t:ParentFolderId Id="{parent.id}" ChangeKey="{parent.changekey}"/>')
    if "folder:FolderClass" in fields and folder.folder_class:
        parts.append(f"<t:FolderClass>{folder.folder_class}</t:FolderClass>")
    if "folder:DisplayName" in fields:
        parts.append(f"<t:DisplayName>{esc(folder.name)}</t:DisplayName>")
    if "folder:TotalCount" in fields:
        parts.append(f"<t:TotalCount>{len(folder.items)}</t:TotalCount>")
    if "folder:ChildFolderCount" in fields:
        parts.append(f"<t:ChildFolderCount>{len(folder.children)}</t:ChildFolderCount>")
    if f"ext:{PR_REPLICA_LIST:#06x}" in fields and folder.is_public:
        parts.append(_replica_list(folder))
    if "folder:DistinguishedFolderId" in fields and folder.distinguished:
        parts.append(f"<t:DistinguishedFolderId>{folder.distinguished}</t:DistinguishedFolderId>")
    if "folder:UnreadCount" in fields:
        parts.append(f"<t:UnreadCount>{folder.unread_count}</t:UnreadCount>")
    return f"<t:Folder>{''.join(parts)}</t:Folder>"
