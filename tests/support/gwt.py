"""Given / when / then for the pure deciders: no I/O, no clock, no database.

given  the events a stream holds, folded by the domain's own `fold`
when   one command (or intent) decided against that state and the facts
then   the exact events, or the refusal's `rule` and `field`
"""

from __future__ import annotations

from collections.abc import Callable
from uuid import UUID

import pytest

from contracts.envelope import EventPayload
from runtime.decider import CommandRefused


def then_refused(call: Callable[[], object], rule: str, field: str | None = None) -> CommandRefused:
    """`call` is refused by `rule`, naming `field` (None: the refusal names no field)."""
    with pytest.raises(CommandRefused) as refused:
        call()
    assert (refused.value.rule, refused.value.field) == (rule, field), refused.value.message
    return refused.value


def event_id(n: int) -> UUID:
    """A recognisable event id: 00000000-0000-0000-0000-00000000000n."""
    return UUID(int=n)


def recorded(*events: EventPayload) -> list[tuple[UUID, EventPayload]]:
    """A stream as the service layer hands it to a fold: each event with its id, numbered
    from 1 in order (`event_id(1)` is the first)."""
    return [(event_id(n), event) for n, event in enumerate(events, start=1)]
