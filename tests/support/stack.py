"""Several real services side by side in the test process, sharing one stream prefix."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any
from uuid import uuid4

from runtime.service import ServiceDefinition
from tests.support.apps import Api, running, service_settings
from tests.support.waiting import wait_until


@asynccontextmanager
async def services(
    definitions: Iterable[ServiceDefinition],
    database_url: str,
    prefix: str,
    redis_url: str,
    **overrides: Any,
) -> AsyncIterator[dict[str, Api]]:
    async with AsyncExitStack() as stack:
        apis = {}
        for definition in definitions:
            settings = service_settings(
                database_url,
                f"t_{uuid4().hex[:10]}_{definition.name}",
                prefix,
                redis_url,
                **overrides,
            )
            apis[definition.name] = await stack.enter_async_context(running(definition, settings))
        yield apis


async def wait_for_members(api: Api, *member_ids: str, within: float = 20.0) -> None:
    """Until a consuming service's directory knows these members (they came over Redis)."""
    directory = api.context.directory
    assert directory is not None

    async def known() -> bool:
        return len(await directory.members(member_ids)) == len(set(member_ids))

    await wait_until(known, within=within, what=f"members {member_ids} in the directory")
