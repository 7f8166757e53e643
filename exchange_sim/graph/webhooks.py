"""Change notifications: subscriptions on a mail folder's messages (or a mailbox's), the
validation handshake, and delivery of notifications to the subscriber's URL.

    POST /subscriptions        validates notificationUrl (and lifecycleNotificationUrl):
                               POST {url}?validationToken=... must answer 200, text/plain,
                               the token, within 10 s; else 400. 201 + the subscription.
    PATCH /subscriptions/{id}  a new expirationDateTime (200); DELETE (204); GET, list.

A message entering the folder (delivery, move, copy) is `created`; leaving it (move,
delete) is `deleted`. Notifications are basic (no resource data): the subscriber GETs the
message. Each goes out as its own POST in a task; the answer is not awaited by the store.
`GraphControl.drop_notifications(n)` loses the next n (the subscriber's delta query must
close the gap), `remove_subscriptions()` sends `subscriptionRemoved` lifecycle events.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp

from exchange_sim.graph.folders import folder, mailbox
from exchange_sim.graph.render import ODATA, graph_id, timestamp
from exchange_sim.graph.router import GraphError, GraphRequest, GraphResponse
from exchange_sim.model import Event
from exchange_sim.state import SimState

#: Outlook message subscriptions live at most 10,080 minutes (under seven days).
MAX_LIFETIME_MINUTES = 10_080
VALIDATION_TIMEOUT_SECONDS = 10.0
TENANT_ID = "6f4b1ad8-1b6c-4c29-9a43-0c3f5ab1e1a1"
_RESOURCE = re.compile(
    r"^/?users/(?P<upn>[^/(]+)(?:/mailFolders(?:\('(?P<q>[^']+)'\)|/(?P<p>[^/]+)))?/messages$",
    re.I,
)
_CHANGES = {"created", "updated", "deleted"}


@dataclass
class Subscription:
    id: str
    resource: str
    mailbox: str
    folder_id: str | None  # None: the whole mailbox
    change_type: str
    notification_url: str
    lifecycle_url: str | None
    client_state: str | None
    expires: datetime
    application_id: str

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "resource": self.resource,
            "applicationId": self.application_id,
            "changeType": self.change_type,
            "clientState": self.client_state,
            "notificationUrl": self.notification_url,
            "lifecycleNotificationUrl": self.lifecycle_url,
            "expirationDateTime": timestamp(self.expires),
            "creatorId": self.application_id,
            "latestSupportedTlsVersion": "v1_2",
        }


def _expiry(value: Any) -> datetime:
    try:
        expires = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise GraphError(400, "InvalidRequest", "expirationDateTime is invalid.") from None
    expires = expires if expires.tzinfo else expires.replace(tzinfo=UTC)
    now = datetime.now(UTC)
    if expires <= now or expires > now + timedelta(minutes=MAX_LIFETIME_MINUTES):
        text = f"expirationDateTime must be in the next {MAX_LIFETIME_MINUTES} minutes."
        raise GraphError(400, "InvalidRequest", text)
    return expires


async def _validate_url(url: str) -> None:
    token = uuid.uuid4().hex + " <&>"  # opaque; the answer must be the decoded token
    timeout = aiohttp.ClientTimeout(total=VALIDATION_TIMEOUT_SECONDS)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as http,
            http.post(url, params={"validationToken": token}, data=b"") as answer,
        ):
            ok = answer.status == 200 and (await answer.text()) == token
    except (aiohttp.ClientError, OSError, TimeoutError):
        ok = False
    if not ok:
        text = (
            "Subscription validation request failed. Notification endpoint must respond "
            "with 200 OK to validation request."
        )
        raise GraphError(400, "InvalidRequest", text)


async def create(sim: SimState, request: GraphRequest, args: Sequence[str]) -> GraphResponse:
    body = request.json()
    resource = str(body.get("resource", ""))
    match = _RESOURCE.match(resource)
    if match is None:
        raise GraphError(400, "InvalidRequest", f"Unsupported resource: {resource}")
    box = mailbox(sim, match.group("upn"))
    folder_ref = match.group("q") or match.group("p")
    changes = str(body.get("changeType", ""))
    if not changes or not set(changes.split(",")) <= _CHANGES:
        raise GraphError(400, "InvalidRequest", f"Invalid changeType: {changes}")
    url = str(body.get("notificationUrl", ""))
    if not url.startswith(("https://", "http://")):
        raise GraphError(400, "InvalidRequest", "notificationUrl must be an absolute URL.")
    subscription = Subscription(
        id=str(uuid.uuid4()),
        resource=resource,
        mailbox=box.address,
        folder_id=folder(sim, box, folder_ref).id if folder_ref else None,
        change_type=changes,
        notification_url=url,
        lifecycle_url=body.get("lifecycleNotificationUrl"),
        client_state=body.get("clientState"),
        expires=_expiry(body.get("expirationDateTime")),
        application_id=request.client or str(uuid.UUID(int=0)),
    )
    for target in filter(None, (url, subscription.lifecycle_url)):
        await _validate_url(str(target))
    sim.graph.subscriptions[subscription.id] = subscription
    _watch(sim)
    return _answer(subscription, 201)


def _answer(subscription: Subscription, status: int = 200) -> GraphResponse:
    body = {"@odata.context": f"{ODATA}#subscriptions/$entity"} | subscription.as_json()
    return GraphResponse(status, body, "subscription")


def _find(sim: SimState, subscription_id: str) -> Subscription:
    found: Subscription | None = sim.graph.subscriptions.get(subscription_id)
    if found is None or found.expires <= datetime.now(UTC):
        text = f"The object was not found: {subscription_id}"
        raise GraphError(404, "ResourceNotFound", text)
    return found


def get(sim: SimState, request: GraphRequest, args: Sequence[str]) -> GraphResponse:
    return _answer(_find(sim, args[0]))


def list_subscriptions(sim: SimState, request: GraphRequest, args: Sequence[str]) -> GraphResponse:
    now = datetime.now(UTC)
    live = [s.as_json() for s in sim.graph.subscriptions.values() if s.expires > now]
    body = {"@odata.context": f"{ODATA}#subscriptions", "value": live}
    return GraphResponse(200, body, "Collection(subscription)")


def renew(sim: SimState, request: GraphRequest, args: Sequence[str]) -> GraphResponse:
    subscription = _find(sim, args[0])
    subscription.expires = _expiry(request.json().get("expirationDateTime"))
    return _answer(subscription)


def delete(sim: SimState, request: GraphRequest, args: Sequence[str]) -> GraphResponse:
    sim.graph.subscriptions.pop(_find(sim, args[0]).id)
    return GraphResponse(204)


# -- delivery ---------------------------------------------------------------------------------


def _watch(sim: SimState) -> None:
    if not sim.graph.watching:
        sim.graph.watching = True
        sim.store.listeners.append(lambda event: _on_event(sim, event))


def _changes(event: Event) -> list[tuple[str, str | None]]:
    """(changeType, folder id) pairs an event means to subscribers."""
    if event.kind in ("CreatedEvent", "CopiedEvent", "MovedEvent"):
        found: list[tuple[str, str | None]] = [("created", event.parent_id)]
        if event.kind == "MovedEvent":
            found.append(("deleted", event.old_parent_id))
        return found
    if event.kind == "DeletedEvent":
        return [("deleted", event.parent_id)]
    return []


def _on_event(sim: SimState, event: Event) -> None:
    if event.mailbox is None:
        return
    now = datetime.now(UTC)
    for change, folder_id in _changes(event):
        item_id = event.item_id if change == "created" else (event.old_item_id or event.item_id)
        for subscription in list(sim.graph.subscriptions.values()):
            if (
                subscription.expires <= now
                or subscription.mailbox.lower() != event.mailbox.address.lower()
                or change not in subscription.change_type.split(",")
                or subscription.folder_id not in (None, folder_id)
            ):
                continue
            if sim.graph.drop_notifications > 0:
                sim.graph.drop_notifications -= 1
                continue
            body = {"value": [_notification(subscription, change, item_id, event)]}
            asyncio.get_running_loop().create_task(_post(sim, subscription.notification_url, body))


def _notification(
    subscription: Subscription, change: str, item_id: str, event: Event
) -> dict[str, Any]:
    resource = f"Users/{subscription.mailbox}/Messages/{graph_id(item_id)}"
    return {
        "subscriptionId": subscription.id,
        "subscriptionExpirationDateTime": timestamp(subscription.expires),
        "changeType": change,
        "resource": resource,
        "resourceData": {
            "@odata.type": "#Microsoft.Graph.Message",
            "@odata.id": resource,
            "@odata.etag": f'W/"{event.item_changekey}"',
            "id": graph_id(item_id),
        },
        "clientState": subscription.client_state,
        "tenantId": TENANT_ID,
    }


async def _post(sim: SimState, url: str, body: dict[str, Any]) -> None:
    recorder = sim.graph.recorder
    if recorder is not None:
        recorder("notification", body)
    timeout = aiohttp.ClientTimeout(total=VALIDATION_TIMEOUT_SECONDS)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as http, http.post(url, json=body):
            sim.graph.notifications_sent += 1
    except (aiohttp.ClientError, OSError, TimeoutError):
        pass  # Graph retries for hours; the simulator gives up (delta closes the gap)


async def remove_all(sim: SimState, removed: Sequence[Subscription]) -> None:
    """Send `subscriptionRemoved` to the lifecycle URLs of `removed` subscriptions."""
    for subscription in removed:
        if subscription.lifecycle_url:
            event = {
                "subscriptionId": subscription.id,
                "subscriptionExpirationDateTime": timestamp(subscription.expires),
                "tenantId": TENANT_ID,
                "clientState": subscription.client_state,
                "lifecycleEvent": "subscriptionRemoved",
            }
            await _post(sim, subscription.lifecycle_url, {"value": [event]})
