"""GetFolder, FindFolder, CreateFolder."""

from __future__ import annotations

from lxml import etree

from exchange_sim import soapxml as sx
from exchange_sim.model import StoreError
from exchange_sim.ops.common import (
    Ctx,
    M,
    T,
    folder_id_elements,
    int_value,
    paged_root_folder,
    parse_shape,
    resolve_folder,
    single_folder,
)
from exchange_sim.render import folder_fields, folder_xml
from exchange_sim.restrict import folder_restriction


def get_folder(ctx: Ctx, req: etree._Element) -> str:
    fields = folder_fields(parse_shape(req.find(M + "FolderShape")))
    messages = []
    for elem in folder_id_elements(req.find(M + "FolderIds")):
        try:
            folder = resolve_folder(ctx, elem)
        except StoreError as e:
            messages.append(sx.error("GetFolder", e.code, e.text))
            continue
        content = f"<m:Folders>{folder_xml(folder, fields)}</m:Folders>"
        messages.append(sx.success("GetFolder", content))
    return sx.operation_response("GetFolder", "".join(messages))


def find_folder(ctx: Ctx, req: etree._Element) -> str:
    fields = folder_fields(parse_shape(req.find(M + "FolderShape")))
    deep = req.get("Traversal", "Shallow") == "Deep"
    view = req.find(M + "IndexedPageFolderView")
    max_entries = int_value(
        view.get("MaxEntriesReturned") if view is not None else None, 1000, 1, 1000
    )
    offset = int_value(view.get("Offset") if view is not None else None, 0, 0, 2**31 - 1)
    predicate = folder_restriction(req.find(M + "Restriction"))
    messages = []
    for elem in folder_id_elements(req.find(M + "ParentFolderIds")):
        try:
            parent = resolve_folder(ctx, elem)
        except StoreError as e:
            messages.append(sx.error("FindFolder", e.code, e.text))
            continue
        found = list(parent.descendants()) if deep else list(parent.children)
        if predicate is not None:
            found = [f for f in found if predicate(f)]
        content = paged_root_folder(
            found, offset, max_entries, "Folders", lambda f: folder_xml(f, fields)
        )
        messages.append(sx.success("FindFolder", content))
    return sx.operation_response("FindFolder", "".join(messages))


def create_folder(ctx: Ctx, req: etree._Element) -> str:
    parent_ref = req.find(M + "ParentFolderId")
    folders = req.find(M + "Folders")
    specs = list(folders) if folders is not None else []
    try:
        parent = single_folder(ctx, parent_ref)
    except StoreError as e:
        return sx.operation_response(
            "CreateFolder", "".join(sx.error("CreateFolder", e.code, e.text) for _ in specs or [0])
        )
    messages = []
    for spec in specs:
        name = spec.findtext(T + "DisplayName") or ""
        try:
            folder = ctx.store.create_folder(parent, name)
        except StoreError as e:
            messages.append(sx.error("CreateFolder", e.code, e.text))
            continue
        folder_class = spec.findtext(T + "FolderClass")
        if folder_class:
            folder.folder_class = folder_class
        content = f"<m:Folders>{folder_xml(folder, frozenset())}</m:Folders>"
        messages.append(sx.success("CreateFolder", content))
    return sx.operation_response("CreateFolder", "".join(messages))
