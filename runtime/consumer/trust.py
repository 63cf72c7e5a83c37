"""What a consumer believes (DESIGN §9): only what a producer recorded and signed.

Redis is an untrusted transport: anyone who can write to it can add an entry, and anyone who
can read a group can take entries away. So an entry from a producer's log stream is believed
only when

* it comes from that producer and its type is of a family that producer owns
  (contracts.catalogue.produced_by), on that producer's stream;
* its envelope hashes to the hash it claims (the canonical bytes, recomputed here);
* it is covered by the producer's signature: it chains (position + 1, `prev_hash` equal to the
  hash before) up to an event that carries a signature verifying under the producer's key.

The last event of every commit is signed, and the relay ends every batch with one, so a run of
entries is usually covered by a signature in the same delivery or just after it on the stream
(which is looked at without taking it). What is not covered that way is settled by the
producer's own record: the record's events at those positions are believed (they are signed),
and an entry that disagrees with the record — another event at its position, or a position the
record does not have — is refused, with the reason, and counts nowhere.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from contracts.catalogue import CATALOGUE, Catalogue, produced_by
from runtime.consumer.incoming import ChainLink, IncomingEvent
from runtime.consumer.records import ProducerRecord, RecordUnavailable
from runtime.signing import KeyRing

#: How far past a delivery the stream is looked at for the signature that covers its tail
#: (the relay ends every batch it publishes with one), and how much of it at a time.
PEEK_LIMIT = 2500
PEEK_PAGE = 100

#: The next entries on the stream after the delivery (after the n-th page of them).
Peek = Callable[[int], Awaitable[list[ChainLink]]]


@dataclass
class Verdict:
    """What to make of a delivery: events to apply, entries to refuse (with why), and
    entries that cannot be settled now (the record is unreachable: they wait)."""

    believed: list[IncomingEvent] = field(default_factory=list)
    refused: list[tuple[IncomingEvent, str]] = field(default_factory=list)
    held: list[IncomingEvent] = field(default_factory=list)
    #: events read from the producer's record in place of missing or refused entries
    from_record: int = 0
    bad_signatures: int = 0


class Verifier:
    def __init__(
        self,
        producer: str,
        keyring: Callable[[], KeyRing],
        record: ProducerRecord | None,
        catalogue: Catalogue = CATALOGUE,
    ) -> None:
        self.producer = producer
        self._keyring = keyring
        self.record = record
        self._catalogue = catalogue

    def screen(self, event: IncomingEvent) -> str | None:
        """Why an entry cannot be the producer's, whatever else is true; None if it may be."""
        if event.source != self.producer:
            return f"entry says it comes from {event.source!r} on {self.producer}'s log stream"
        family = self._catalogue.family_of(event.type)
        if not produced_by(family, self.producer):
            return f"{event.type} is a {family} event, which {self.producer} does not produce"
        if event.computed_hash != event.hash:
            return "the envelope does not hash to the hash it claims"
        return None

    def _signature_holds(self, event: IncomingEvent | ChainLink) -> bool:
        if event.signature is None or event.key_id is None:
            return False
        return (
            self._keyring().check(
                self.producer, event.position, event.hash, event.key_id, event.signature
            )
            is None
        )

    def covered(
        self, events: Sequence[IncomingEvent], verdict: Verdict
    ) -> list[list[IncomingEvent]]:
        """Split screened events into runs and believe each run up to its last valid
        signature; return the uncovered rest, as runs."""
        by_position: dict[int, IncomingEvent] = {}
        rivals: list[list[IncomingEvent]] = []  # a second entry for one place: settled apart
        for event in events:
            seen = by_position.get(event.position)
            if seen is None:
                by_position[event.position] = event
            elif seen.event_id != event.event_id:
                rivals.append([event])
        ordered = sorted(by_position.values(), key=lambda e: e.position)
        runs: list[list[IncomingEvent]] = []
        for event in ordered:
            run = runs[-1] if runs else None
            if (
                run is not None
                and event.position == run[-1].position + 1
                and event.prev_hash == run[-1].hash
            ):
                run.append(event)
            else:
                runs.append([event])
        uncovered = []
        for run in runs:
            cut = 0
            for index in range(len(run) - 1, -1, -1):
                if run[index].signature is None:
                    continue
                if self._signature_holds(run[index]):
                    cut = index + 1
                    break
                verdict.bad_signatures += 1
            verdict.believed.extend(run[:cut])
            if cut < len(run):
                uncovered.append(run[cut:])
        return [*rivals, *uncovered]

    async def judge(self, events: Sequence[IncomingEvent], peek: Peek | None) -> Verdict:
        verdict = Verdict()
        screened = []
        for event in events:
            why = self.screen(event)
            if why is None:
                screened.append(event)
            else:
                verdict.refused.append((event, why))
        uncovered = self.covered(screened, verdict)
        for index, run in enumerate(uncovered):
            last = index == len(uncovered) - 1
            if last and peek is not None and await self._covered_ahead(run, peek):
                verdict.believed.extend(run)
                continue
            await self._settle_from_record(run, verdict)
        return verdict

    async def _covered_ahead(self, run: list[IncomingEvent], peek: Peek) -> bool:
        """Whether the entries after the delivery chain on from the run's last event to a
        valid signature (looked at, not taken: they are delivered in their turn)."""
        position, last_hash = run[-1].position, run[-1].hash
        for page in range(PEEK_LIMIT // PEEK_PAGE):
            links = await peek(page)
            for link in links:
                if link.position <= position:
                    continue
                if (
                    link.source != self.producer
                    or link.position != position + 1
                    or link.prev_hash != last_hash
                    or link.computed_hash != link.hash
                ):
                    return False
                if self._signature_holds(link):
                    return True
                position, last_hash = link.position, link.hash
            if len(links) < PEEK_PAGE:
                return False
        return False

    async def _settle_from_record(self, run: list[IncomingEvent], verdict: Verdict) -> None:
        """Believe the record's events at these positions; refuse the entries that are not
        what the record holds."""
        if self.record is None:
            verdict.held.extend(run)
            return
        try:
            raw, recorded = await self._read_record(run[0].position - 1, run[-1].position)
        except RecordUnavailable:
            verdict.held.extend(run)
            return
        by_position = {e.position: e for e in recorded}
        held_unsigned = {e.position for e in raw} - set(by_position)
        for event in run:
            genuine = by_position.get(event.position)
            if genuine is None and event.position in held_unsigned:
                verdict.refused.append(
                    (
                        event,
                        f"{self.producer}'s record holds position {event.position} unsigned: "
                        "appended without its key, or signed by a key not known here",
                    )
                )
            elif genuine is None:
                verdict.refused.append(
                    (event, f"{self.producer}'s record has no position {event.position}")
                )
            elif genuine.hash != event.hash:
                verdict.refused.append(
                    (event, f"{self.producer}'s record holds another event at {event.position}")
                )
                verdict.believed.append(genuine)
                verdict.from_record += 1
            else:
                verdict.believed.append(genuine)

    async def read_covered(self, after: int, through: int | None = None) -> list[IncomingEvent]:
        """The record after `after`, through `through` (or what there is) and on to the next
        signed event, checked: chained from the first and covered by a signature. What is not
        covered (an unsigned tail: rows appended without the producer's key) is left out."""
        _, believed = await self._read_record(after, through)
        return believed

    async def _read_record(
        self, after: int, through: int | None
    ) -> tuple[list[IncomingEvent], list[IncomingEvent]]:
        """What the record holds there, and what of it is covered by a signature."""
        assert self.record is not None
        events: list[IncomingEvent] = []
        position = after
        while True:
            page = await self.record.read(position, 1000)
            if not page:
                break
            events.extend(page)
            position = page[-1].position
            if (through is None or position >= through) and page[-1].signature is not None:
                break
        screened = [e for e in events if self.screen(e) is None]
        probe = Verdict()
        self.covered(screened, probe)
        return events, probe.believed
