"""XML output: escaping, SOAP envelopes, response messages and faults.

Responses are built by string concatenation (fast, and the shapes are fixed); every text and
attribute value goes through `esc`/`attr`, which also drop characters XML 1.0 forbids (decoded
mail headers can contain control characters).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

SOAP_NS = "http://schemas.xmlsoap.org/soap/envelope/"
M_NS = "http://schemas.microsoft.com/exchange/services/2006/messages"
T_NS = "http://schemas.microsoft.com/exchange/services/2006/types"
E_NS = "http://schemas.microsoft.com/exchange/services/2006/errors"

# Exchange 2016 CU (build 15.1) reports this schema version on the wire.
SERVER_VERSION_INFO = (
    '<h:ServerVersionInfo MajorVersion="15" MinorVersion="1" MajorBuildNumber="2507" '
    f'MinorBuildNumber="6" Version="V2017_07_11" xmlns:h="{T_NS}"/>'
)
XML_DECL = '<?xml version="1.0" encoding="utf-8"?>'

_INVALID_XML_CHARS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")
_TEXT_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;"})
_ATTR_ESCAPES = str.maketrans(
    {
        "&": "&amp;",
        "<": "&lt;",
        ">": "&gt;",
        '"': "&quot;",
        "\n": "&#10;",
        "\r": "&#13;",
        "\t": "&#9;",
    }
)


def esc(text: str) -> str:
    """Escape element text."""
    if _INVALID_XML_CHARS.search(text):
        text = _INVALID_XML_CHARS.sub("", text)
    return text.translate(_TEXT_ESCAPES)


def attr(text: str) -> str:
    """Escape an attribute value (without the quotes)."""
    if _INVALID_XML_CHARS.search(text):
        text = _INVALID_XML_CHARS.sub("", text)
    return text.translate(_ATTR_ESCAPES)


def xml_datetime(value: datetime) -> str:
    """xs:dateTime in UTC with a Z suffix, as Exchange sends it."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def envelope(body: str) -> str:
    """A complete response document: ServerVersionInfo header plus `body` in s:Body."""
    return (
        f'{XML_DECL}<s:Envelope xmlns:s="{SOAP_NS}"><s:Header>{SERVER_VERSION_INFO}</s:Header>'
        f"<s:Body>{body}</s:Body></s:Envelope>"
    )


def operation_response(op: str, messages: str) -> str:
    """`m:{op}Response` holding `m:ResponseMessages`."""
    return envelope(
        f'<m:{op}Response xmlns:m="{M_NS}" xmlns:t="{T_NS}">'
        f"<m:ResponseMessages>{messages}</m:ResponseMessages></m:{op}Response>"
    )


def success(op: str, content: str = "") -> str:
    """One successful `m:{op}ResponseMessage` with the operation-specific `content`."""
    return (
        f'<m:{op}ResponseMessage ResponseClass="Success"><m:ResponseCode>NoError</m:ResponseCode>'
        f"{content}</m:{op}ResponseMessage>"
    )


# What Exchange puts after DescriptiveLinkKey in an error message (as in Microsoft's samples);
# for these operations the schema requires it.
_ERROR_TAIL = {
    "GetItem": "<m:Items/>",
    "CreateItem": "<m:Items/>",
    "CopyItem": "<m:Items/>",
    "MoveItem": "<m:Items/>",
    "GetFolder": "<m:Folders/>",
    "CreateFolder": "<m:Folders/>",
    "SyncFolderItems": "<m:SyncState/><m:IncludesLastItemInRange>true</m:IncludesLastItemInRange>",
    "GetStreamingEvents": "<m:ConnectionStatus>Closed</m:ConnectionStatus>",
}


def error(op: str, code: str, text: str, content: str | None = None, message_xml: str = "") -> str:
    """One failed `m:{op}ResponseMessage` (schema order: MessageText, ResponseCode,
    DescriptiveLinkKey, MessageXml, then operation-specific elements: `content`, or what
    Exchange sends for the operation)."""
    if content is None:
        content = _ERROR_TAIL.get(op, "")
    xml_part = f"<m:MessageXml>{message_xml}</m:MessageXml>" if message_xml else ""
    return (
        f'<m:{op}ResponseMessage ResponseClass="Error"><m:MessageText>{esc(text)}</m:MessageText>'
        f"<m:ResponseCode>{code}</m:ResponseCode><m:DescriptiveLinkKey>0</m:DescriptiveLinkKey>"
        f"{xml_part}{content}</m:{op}ResponseMessage>"
    )


def fault(code: str, text: str, back_off_ms: int | None = None) -> str:
    """A SOAP 1.1 fault in the EWS shape (sent with HTTP 500)."""
    message_xml = ""
    if back_off_ms is not None:
        message_xml = (
            f'<t:MessageXml xmlns:t="{T_NS}"><t:Value Name="BackOffMilliseconds">{back_off_ms}'
            "</t:Value></t:MessageXml>"
        )
    return (
        f'{XML_DECL}<s:Envelope xmlns:s="{SOAP_NS}"><s:Body><s:Fault>'
        f'<faultcode xmlns:a="{T_NS}">a:{code}</faultcode>'
        f'<faultstring xml:lang="en-US">{esc(text)}</faultstring>'
        f'<detail><e:ResponseCode xmlns:e="{E_NS}">{code}</e:ResponseCode>'
        f'<e:Message xmlns:e="{E_NS}">{esc(text)}</e:Message>{message_xml}</detail>'
        "</s:Fault></s:Body></s:Envelope>"
    )


def folder_id(tag: str, id_: str, changekey: str) -> str:
    return f'<t:{tag} Id="{id_}" ChangeKey="{changekey}"/>'
