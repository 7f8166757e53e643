"""What every operation needs: the request context and parsers for shapes and ids."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from lxml import etree

from exchange_sim.config import SimConfig
from exchange_sim.faults import Faults
from exchange_sim.model import Folder, Mailbox, StoreError
from exchange_sim.render import PUBLIC_CONTENT_MAILBOX_GUID, Shape, extended_field
from exchange_sim.soapxml import M_NS, T_NS
from exchange_sim.store import Store
from exchange_sim.subscriptions import Subscriptions

M = "{" + M_NS + "}"
T = "{" + T_NS + "}"


class RequestError(Exception):
    """The whole request is refused with a SOAP fault (HTTP 500)."""

    def __init__(self, code: str, text: str) -> None:
        super().__init__(f"{code}: {text}")
        self.code = code
        self.text = text


@dataclass
class Ctx:
    store: Store
    subscriptions: Subscriptions
    faults: Faults
    config: SimConfig
    anchor: str | None  # X-AnchorMailbox header
    user: str | None  # set by the auth middleware

    def default_mailbox(self) -> Mailbox:
        # A public-folder content mailbox in X-AnchorMailbox (routing.py) is no user's.
        if self.anchor and not self.anchor.lower().startswith(PUBLIC_CONTENT_MAILBOX_GUID):
            return self.store.mailbox(self.anchor)
        if self.user and self.user.lower() in self.store.mailboxes:
            return self.store.mailboxes[self.user.lower()]
        return next(iter(self.store.mailboxes.values()))


def local(elem: etree._Element) -> str:
    return str(etree.QName(elem).localname)


def parse_shape(elem: etree._Element | None) -> Shape:
    if elem is None:
        raise RequestError("ErrorSchemaValidation", "The request is missing its shape element.")
    base = elem.findtext(T + "BaseShape") or "Default"
    fields: set[str] = set()
    extra = elem.find(T + "AdditionalProperties")
    if extra is not None:
        for path in extra:
            uri = path.get("FieldURI")
            if uri:
                fields.add(uri)
            tag = path.get("PropertyTag")
            if tag is not None:  # t:ExtendedFieldURI by tag: "ext:0x6698"
                fields.add(extended_field(tag))
    return Shape(base=base, fields=frozenset(fields))


def resolve_folder(ctx: Ctx, elem: etree._Element) -> Folder:
    """A t:FolderId or t:DistinguishedFolderId element -> Folder (raises StoreError)."""
    name = local(elem)
    if name == "FolderId":
        return ctx.store.folder(elem.get("Id", ""))
    if name == "DistinguishedFolderId":
        did = elem.get("Id", "")
        if did == "publicfoldersroot":
            return ctx.store.public_root
        address = elem.findtext(f"{T}Mailbox/{T}EmailAddress")
        mailbox = ctx.store.mailbox(address) if address else ctx.default_mailbox()
        folder = mailbox.distinguished.get(did)
        if folder is None:
            raise StoreError(
                "ErrorFolderNotFound", "The specified folder could not be found in the store."
            )
        return folder
    raise RequestError("ErrorSchemaValidation", f"Unexpected folder id element {name!r}.")


def folder_id_elements(parent: etree._Element | None) -> list[etree._Element]:
    if parent is None:
        raise RequestError("ErrorSchemaValidation", "The request is missing its folder ids.")
    return list(parent)


def single_folder(ctx: Ctx, parent: etree._Element | None) -> Folder:
    elems = folder_id_elements(parent)
    if len(elems) != 1:
        raise RequestError("ErrorSchemaValidation", "Exactly one folder id is expected.")
    return resolve_folder(ctx, elems[0])


def item_id_elements(parent: etree._Element | None) -> list[etree._Element]:
    if parent is None:
        raise RequestError("ErrorSchemaValidation", "The request is missing its item ids.")
    return list(parent)


Found = TypeVar("Found")


def paged_root_folder(
    found: Sequence[Found], offset: int, max_entries: int, tag: str, render: Callable[[Found], str]
) -> str:
    """FindFolder/FindItem's m:RootFolder for one IndexedPageView page of `found`
    (TotalItemsInView and IncludesLastItemInRange are what exchangelib pages by)."""
    page = found[offset : offset + max_entries]
    end = offset + len(page)
    last = "true" if end >= len(found) else "false"
    return (
        f'<m:RootFolder IndexedPagingOffset="{end}" TotalItemsInView="{len(found)}" '
        f'IncludesLastItemInRange="{last}"><t:{tag}>'
        f"{''.join(render(x) for x in page)}</t:{tag}></m:RootFolder>"
    )


def int_value(text: str | None, default: int, lo: int, hi: int) -> int:
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise RequestError("ErrorSchemaValidation", f"{text!r} is not an integer.") from None
    if not lo <= value <= hi:
        raise RequestError("ErrorSchemaValidation", f"{value} is out of range {lo}..{hi}.")
    return value
