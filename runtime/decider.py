"""The functional event-sourcing shape every aggregate follows, with no I/O:

    decide(command, state) -> events      # refuse with CommandRefused, or say what happened
    evolve(state, event) -> state         # fold one event into the state

A service's domain modules implement these; its service layer loads a stream, folds it, decides,
and appends the events with the version it read (runtime.commands)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Generic, Protocol, TypeVar

C = TypeVar("C", contravariant=True)
S = TypeVar("S")
E = TypeVar("E")


class CommandRefused(Exception):
    """A business rule refused a command. `rule` is a stable identifier clients can match on,
    the message says in words what was refused and why. `invalid` marks a value that can never
    be accepted as given (HTTP 422, naming the field), rather than a refusal in the present
    state of things (409)."""

    def __init__(
        self, rule: str, message: str, *, field: str | None = None, invalid: bool = False
    ) -> None:
        self.rule = rule
        self.message = message
        self.field = field
        self.invalid = invalid
        super().__init__(message)


class Decider(Protocol, Generic[C, S, E]):
    def initial_state(self) -> S: ...

    def decide(self, command: C, state: S) -> Sequence[E]: ...

    def evolve(self, state: S, event: E) -> S: ...


def fold(decider: Decider[C, S, E], events: Iterable[E], state: S | None = None) -> S:
    current = decider.initial_state() if state is None else state
    for event in events:
        current = decider.evolve(current, event)
    return current
