"""The simulator driven by Microsoft's official Python SDK (msgraph-sdk, over kiota and
httpx): an independent client through the whole logging workflow, app-only with a token
from the simulator's token endpoint. Every JSON answer is validated by the conftest hook."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from kiota_abstractions.authentication import (
    AccessTokenProvider,
    AllowedHostsValidator,
    BaseBearerTokenAuthenticationProvider,
)
from kiota_abstractions.base_request_configuration import RequestConfiguration
from msgraph import GraphRequestAdapter, GraphServiceClient
from msgraph.generated.users.item.mail_folders.item.child_folders.child_folders_request_builder import (  # noqa: E501
    ChildFoldersRequestBuilder,
)
from msgraph.generated.users.item.mail_folders.item.messages.delta.delta_request_builder import (
    DeltaRequestBuilder,
)
from msgraph.generated.users.item.mail_folders.mail_folders_request_builder import (
    MailFoldersRequestBuilder,
)
from msgraph.generated.users.item.messages.item.copy.copy_post_request_body import (
    CopyPostRequestBody,
)
from msgraph.generated.users.item.messages.item.message_item_request_builder import (
    MessageItemRequestBuilder,
)
from msgraph.generated.users.item.messages.item.move.move_post_request_body import (
    MovePostRequestBody,
)

from exchange_sim import SimulatorThread
from tests.sim_graph.conftest import MAILBOX, QUEUE, STORAGE, message

APP, SECRET = "sdk-app", "sdk-secret"
SENSITIVITY = "singleValueExtendedProperties($filter=id eq 'Integer 0x0036')"


class SimulatorTokens(AccessTokenProvider):
    """Client credentials at the simulator's /{tenant}/oauth2/v2.0/token."""

    def __init__(self, token_url: str) -> None:
        self.token_url = token_url

    async def get_authorization_token(
        self, uri: str, additional_authentication_context: dict[str, Any] | None = None
    ) -> str:
        form = {
            "grant_type": "client_credentials",
            "client_id": APP,
            "client_secret": SECRET,
            "scope": "https://graph.microsoft.com/.default",
        }
        async with httpx.AsyncClient() as http:
            answer = await http.post(self.token_url, data=form)
        answer.raise_for_status()
        return str(answer.json()["access_token"])

    def get_allowed_hosts_validator(self) -> AllowedHostsValidator:
        return AllowedHostsValidator([])


@pytest.fixture
def client(sim: SimulatorThread) -> GraphServiceClient:
    sim.graph.register_app(APP, SECRET)
    tokens = SimulatorTokens(f"{sim.base_url}/contoso.onmicrosoft.com/oauth2/v2.0/token")
    adapter = GraphRequestAdapter(BaseBearerTokenAuthenticationProvider(tokens))
    adapter.base_url = sim.graph_url
    return GraphServiceClient(request_adapter=adapter)


async def folder_id(client: GraphServiceClient, path: str) -> str:
    user = client.users.by_user_id(MAILBOX)
    top, child = path.split("/")
    top_query = MailFoldersRequestBuilder.MailFoldersRequestBuilderGetQueryParameters(
        filter=f"displayName eq '{top}'"
    )
    found = await user.mail_folders.get(RequestConfiguration(query_parameters=top_query))
    assert found is not None and found.value
    child_query = ChildFoldersRequestBuilder.ChildFoldersRequestBuilderGetQueryParameters(
        filter=f"displayName eq '{child}'"
    )
    parent = user.mail_folders.by_mail_folder_id(str(found.value[0].id))
    children = await parent.child_folders.get(RequestConfiguration(query_parameters=child_query))
    assert children is not None and children.value
    return str(children.value[0].id)


async def test_the_whole_workflow_through_msgraph_sdk(
    client: GraphServiceClient, sim: SimulatorThread
) -> None:
    for n in range(3):
        sim.deliver(MAILBOX, QUEUE, message(n, Sensitivity="Private" if n == 0 else ""))
    user = client.users.by_user_id(MAILBOX)
    queue, storage = await folder_id(client, QUEUE), await folder_id(client, STORAGE)

    # Delta: the first round pages through the folder, the next one sees only news.
    delta = user.mail_folders.by_mail_folder_id(queue).messages.delta
    query = DeltaRequestBuilder.DeltaRequestBuilderGetQueryParameters(
        select=["id", "subject", "internetMessageId", "receivedDateTime"]
    )
    config = RequestConfiguration(query_parameters=query)
    config.headers.add("Prefer", "odata.maxpagesize=2")
    page = await delta.get(config)
    seen = []
    while page is not None and page.odata_next_link:
        seen += page.value or []
        page = await delta.with_url(page.odata_next_link).get()
    assert page is not None and page.odata_delta_link
    seen += page.value or []
    assert sorted(m.subject for m in seen) == ["Quote 0", "Quote 1", "Quote 2"]
    again = await delta.with_url(page.odata_delta_link).get()
    assert again is not None and again.value == []

    # Sensitivity through the extended property; the MIME.
    private = next(m for m in seen if m.subject == "Quote 0")
    get_query = MessageItemRequestBuilder.MessageItemRequestBuilderGetQueryParameters(
        expand=[SENSITIVITY], select=["sender", "from", "isDraft"]
    )
    item = user.messages.by_message_id(str(private.id))
    got = await item.get(RequestConfiguration(query_parameters=get_query))
    assert got is not None and got.single_value_extended_properties
    assert got.single_value_extended_properties[0].value == "2"
    assert got.is_draft is False and got.sender and got.sender.email_address
    mime = await item.content.get()
    assert mime is not None and b"Subject: Quote 0" in mime

    # Move (a new id and webLink), copy, delete (to Deleted Items), permanentDelete.
    moved = await item.move.post(MovePostRequestBody(destination_id=storage))
    assert moved is not None and moved.id != private.id and moved.web_link
    copy_body = CopyPostRequestBody(destination_id="inbox")
    copied = await user.messages.by_message_id(str(moved.id)).copy.post(copy_body)
    assert copied is not None and copied.parent_folder_id != moved.parent_folder_id
    await user.messages.by_message_id(str(copied.id)).delete()
    trash = await user.mail_folders.by_mail_folder_id("deleteditems").messages.get()
    assert trash is not None and trash.value and len(trash.value) == 1
    await user.messages.by_message_id(str(trash.value[0].id)).permanent_delete.post()
    trash = await user.mail_folders.by_mail_folder_id("deleteditems").messages.get()
    assert trash is not None and trash.value == []
    changes = await delta.with_url(page.odata_delta_link).get()
    assert changes is not None and changes.value and len(changes.value) == 1
    assert changes.value[0].id == private.id  # reported as removed from the queue
    assert [i["subject"] for i in sim.list_items(MAILBOX, STORAGE)] == ["Quote 0"]
