"""Long pure computations (a what-if, a replay) in a process of their own, with a time limit.

Scoring's event loop serves `/health`, every query and every command; a what-if under a large
draft folds thousands of inputs through hundreds of rules, seconds of pure Python that, run on
the loop, held every other request for as long (a 4,000-rule draft: 62 s). Here each job runs
in a fresh process forked from a forkserver that has the scoring modules loaded (a few
milliseconds to start, no lock shared with the service, its memory returned when it ends):

* the loop only waits: the job's arguments are pickled and sent, and its result received, in a
  thread;
* a job that runs past the time limit is killed (ComputeTimeout), so a runaway draft costs at
  most that much CPU;
* at most `workers` jobs run at once; one more is refused at once (ComputeBusy, a 503 with
  Retry-After) rather than queued behind them.

A job may also be given its data as it is read (`stream`): the pages go to the job's process
one after another while it folds the ones before (a replay reads a million inputs from the
archive), a thread there receiving them.

The function run must be importable by name (a module-level function) and take and return
picklable values. A list of inputs among the arguments (at any depth of lists, tuples and
dataclasses) travels by columns (`InputColumns`): pickling a million Input objects one by one
took longer than folding them.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
import gc
import multiprocessing
import multiprocessing.connection
import queue
import threading
from array import array
from collections.abc import AsyncIterable, Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from multiprocessing.reduction import ForkingPickler
from typing import Any, TypeVar

import asyncpg
import orjson
from asyncpg.pgproto import pgproto

from services.scoring.domain.engine import Input

T = TypeVar("T")

#: The defaults of PARTY_SCORING_COMPUTE_WORKERS and PARTY_SCORING_COMPUTE_SECONDS.
DEFAULT_WORKERS = 2
DEFAULT_SECONDS = 60.0

#: Loaded once into the forkserver, so that each job starts with them imported. Every job
#: process also runs the main script again (as `__mp_main__`; CPython 3.11's forkserver does not
#: preload `__main__`, it never receives its path), and `party`'s script imports services.cli:
#: preloaded, that import costs nothing, where otherwise each job imported the four services
#: afresh (seconds on a busy machine, for a job of milliseconds).
PRELOAD = ["__main__", "services.cli", "services.scoring.queries"]


class ComputeBusy(Exception):
    """Every slot for a long computation is taken."""

    def __init__(self, workers: int) -> None:
        super().__init__(
            f"{workers} what-if or replay run(s) are already computing "
            "(PARTY_SCORING_COMPUTE_WORKERS); try again shortly"
        )


class ComputeTimeout(Exception):
    """The computation ran past the time limit and was stopped."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        super().__init__(
            f"it did not finish within {seconds:g} s (PARTY_SCORING_COMPUTE_SECONDS) "
            "and was stopped"
        )


class ComputeFailed(Exception):
    """The process of the computation ended without an answer (killed, out of memory)."""


def _context() -> Any:
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    return context


#: The message that ends a job's feed (a page is never an empty pickle).
_END = b""


class Feed:
    """In a streamed job's process: the pages the service sends, in order, as it reads them. A
    thread receives them (a few ahead) while the job works on the one before."""

    def __init__(self, connection: multiprocessing.connection.Connection, ahead: int = 4) -> None:
        self._queue: queue.Queue[bytes | BaseException] = queue.Queue(maxsize=ahead)
        self._ended = False
        threading.Thread(target=self._receive, args=(connection,), daemon=True).start()

    def _receive(self, connection: multiprocessing.connection.Connection) -> None:
        try:
            while True:
                message = connection.recv_bytes()
                self._queue.put(message)
                if message == _END:
                    return
        except BaseException as error:  # the service went away: the job fails with it
            self._queue.put(error)

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        if self._ended:
            raise StopIteration
        message = self._queue.get()
        if isinstance(message, BaseException):
            raise message
        if message == _END:
            self._ended = True
            raise StopIteration
        return ForkingPickler.loads(message)


def _work(connection: multiprocessing.connection.Connection) -> None:
    """In the job's process: receive the function and its arguments (and, streamed, its feed),
    send back the outcome."""
    # No cyclic garbage collection in a job's process: it lives for one job and its memory goes
    # with it, while each pass of the collector walks every object alive (a million inputs and
    # their lines), which took longer than the fold itself.
    gc.disable()
    function, args, streamed = connection.recv()
    try:
        outcome = (True, function(Feed(connection), *args) if streamed else function(*args))
    except BaseException as error:  # every failure goes back to the service
        outcome = (False, error)
    try:
        connection.send(outcome)
    except Exception as error:  # the result or the error did not pickle
        connection.send((False, RuntimeError(f"{type(error).__name__}: {error}")))
    connection.close()


#: Moments travel as microseconds since this instant when they are in UTC (as the driver gives
#: every timestamptz): pickling a datetime took longer than the rest of its input.
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def _ids_out(ids: Sequence[Any]) -> tuple[str, Any]:
    if all(type(e) is pgproto.UUID for e in ids):
        return ("driver", b"".join([e.bytes for e in ids]))
    return ("objects", list(ids))


def _ids_in(packed: tuple[str, Any]) -> list[Any]:
    kind, value = packed
    if kind == "driver":
        return [pgproto.UUID(value[k : k + 16]) for k in range(0, len(value), 16)]
    return list(value)


def _moments_out(moments: Sequence[datetime]) -> tuple[str, Any]:
    if all(m.tzinfo is UTC for m in moments):
        return ("utc", array("q", [(m - _EPOCH) // _MICROSECOND for m in moments]).tobytes())
    return ("objects", list(moments))


def _moments_in(packed: tuple[str, Any], seen: dict[int, datetime]) -> list[datetime]:
    """The moments again; one datetime for each distinct one (inputs share them, and reading
    one from `seen` is cheaper than making it)."""
    kind, value = packed
    if kind != "utc":
        return list(value)
    found = []
    for micros in array("q", value):
        moment = seen.get(micros)
        if moment is None:
            moment = seen[micros] = _EPOCH + timedelta(microseconds=micros)
        found.append(moment)
    return found


def _inputs_in(
    ids: tuple[str, Any],
    types: Sequence[str],
    occurred: tuple[str, Any],
    recorded: tuple[str, Any],
    branches: Sequence[str | None],
    actors: Sequence[str],
    data: Sequence[Any],
) -> list[Input]:
    seen: dict[int, datetime] = {}
    return list(
        map(
            Input,
            _ids_in(ids),
            types,
            _moments_in(occurred, seen),
            _moments_in(recorded, seen),
            branches,
            actors,
            data,
        )
    )


class InputColumns:
    """A list of inputs as it is pickled for a job's process: column by column (the driver's
    event ids as one string of bytes, UTC moments as microseconds). It arrives as the list of
    inputs it was."""

    __slots__ = ("inputs",)

    def __init__(self, inputs: Sequence[Input]) -> None:
        self.inputs = inputs

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        inputs = self.inputs
        return (
            _inputs_in,
            (
                _ids_out([i.event_id for i in inputs]),
                [i.type for i in inputs],
                _moments_out([i.occurred_at for i in inputs]),
                _moments_out([i.recorded_at for i in inputs]),
                [i.branch_id for i in inputs],
                [i.actor_id for i in inputs],
                [i.data for i in inputs],
            ),
        )


def packed(value: Any, seen: dict[int, Any] | None = None) -> Any:
    """The value to pickle for a job: `value` with every list of inputs in it (in lists,
    tuples and dataclasses) as InputColumns, a list met twice packed once (it arrives as one
    list, as pickle keeps it); anything else as it is."""
    seen = {} if seen is None else seen
    kind = type(value)
    if kind is list or kind is tuple:
        if kind is list and value and all(type(v) is Input for v in value):
            found = seen.get(id(value))
            if found is None:
                found = seen[id(value)] = InputColumns(value)
            return found
        items = [packed(v, seen) for v in value]
        if all(a is b for a, b in zip(items, value, strict=True)):
            return value
        return kind(items)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        changes = {}
        for f in dataclasses.fields(value):
            current = getattr(value, f.name)
            new = packed(current, seen)
            if new is not current:
                changes[f.name] = new
        if not changes:
            return value
        duplicate = copy.copy(value)
        for name, new in changes.items():
            object.__setattr__(duplicate, name, new)  # frozen dataclasses too
        return duplicate
    return value


#: The columns of the archive's rows RowColumns reads, in the order Input takes them.
_ROW_COLUMNS = ("event_id", "type", "occurred_at", "recorded_at", "branch_id", "actor_id", "data")


class RowColumns:
    """A page of the archive's rows (event_id, type, occurred_at, recorded_at, branch_id,
    actor_id and data as JSON text, as Archive reads them) as it is pickled for a job's process:
    by columns as InputColumns, the JSON decoded there. It arrives as the list of inputs the
    rows are."""

    __slots__ = ("rows",)

    def __init__(self, rows: Sequence[Any]) -> None:
        self.rows = rows

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        rows = self.rows
        columns: list[Sequence[Any]]
        if rows and isinstance(rows[0], asyncpg.Record):
            names = list(rows[0].keys())
            transposed = list(zip(*rows, strict=True))
            columns = [transposed[names.index(name)] for name in _ROW_COLUMNS]
        else:
            columns = [[r[name] for r in rows] for name in _ROW_COLUMNS]
        ids, types, occurred, recorded, branches, actors, texts = columns
        return (
            _row_inputs,
            (
                _ids_out(ids),
                _texts_out(types),
                _moments_out(occurred),
                _moments_out(recorded),
                _texts_out(branches),
                _texts_out(actors),
                _texts_out(texts),
            ),
        )


#: Between the texts of a column joined into one (JSON and PostgreSQL's output of jsonb never
#: hold the control character; a column whose texts do travels as a list).
_SEPARATOR = "\x1e"


def _texts_out(texts: Sequence[Any]) -> tuple[str, Any]:
    """A column of texts as one text: pickling it is a copy, pickling 20,000 texts is not."""
    if all(type(t) is str for t in texts):
        joined = _SEPARATOR.join(texts)
        if joined.count(_SEPARATOR) == max(0, len(texts) - 1):
            return ("joined", (joined, len(texts)))
    return ("objects", list(texts))


def _texts_in(packed: tuple[str, Any]) -> list[Any]:
    kind, value = packed
    if kind == "joined":
        joined, count = value
        return joined.split(_SEPARATOR) if count else []
    return list(value)


def _row_inputs(
    ids: tuple[str, Any],
    types: tuple[str, Any],
    occurred: tuple[str, Any],
    recorded: tuple[str, Any],
    branches: tuple[str, Any],
    actors: tuple[str, Any],
    texts: tuple[str, Any],
) -> list[Input]:
    return _inputs_in(
        ids,
        _texts_in(types),
        occurred,
        recorded,
        _texts_in(branches),
        _texts_in(actors),
        list(map(orjson.loads, _texts_in(texts))),
    )


def _exchange(
    connection: multiprocessing.connection.Connection, job: tuple[Any, ...] | None
) -> tuple[bool, Any]:
    """In a thread: send the job (its inputs by columns) unless it was sent, wait for its
    outcome (EOFError when the process died)."""
    if job is not None:
        function, args = job
        connection.send((function, packed(args), False))
    outcome: tuple[bool, Any] = connection.recv()
    return outcome


def _send_page(connection: multiprocessing.connection.Connection, page: Any) -> None:
    connection.send_bytes(ForkingPickler.dumps(packed(page)))


async def _feed(
    connection: multiprocessing.connection.Connection, pages: AsyncIterable[Any]
) -> None:
    """Send the pages as they are read, the next one read while one is pickled and sent."""
    ready: asyncio.Queue[tuple[bool, Any]] = asyncio.Queue(maxsize=2)

    async def read() -> None:
        async for page in pages:
            await ready.put((True, page))
        await ready.put((False, None))

    reader = asyncio.ensure_future(read())
    try:
        while True:
            get = asyncio.ensure_future(ready.get())
            await asyncio.wait({get, reader}, return_when=asyncio.FIRST_COMPLETED)
            if not get.done():
                get.cancel()
                reader.result()  # the read failed: its error
                continue
            more, page = get.result()
            if not more:
                break
            await asyncio.to_thread(_send_page, connection, page)
        await asyncio.to_thread(connection.send_bytes, _END)
    finally:
        reader.cancel()
        with contextlib.suppress(BaseException):
            await reader


class Offloader:
    def __init__(self, workers: int, seconds: float) -> None:
        self.workers = workers
        self.seconds = seconds
        self._running = 0

    @property
    def running(self) -> int:
        """How many jobs compute now."""
        return self._running

    def warm(self) -> None:
        """Start the forkserver now (blocking), so that the first job does not wait for it."""
        from multiprocessing import forkserver

        _context()
        forkserver.ensure_running()

    async def run(self, function: Callable[..., T], *args: Any) -> T:
        if self._running >= self.workers:
            raise ComputeBusy(self.workers)
        self._running += 1
        try:
            return await self._run(function, args)
        finally:
            self._running -= 1

    async def stream(self, function: Callable[..., T], pages: AsyncIterable[Any], *args: Any) -> T:
        """Run `function(feed, *args)` in a process of its own, `feed` giving there the pages
        `pages` gives here, sent as they come. The time limit counts from the start, the
        reading included."""
        if self._running >= self.workers:
            raise ComputeBusy(self.workers)
        self._running += 1
        try:
            return await self._run(function, args, pages)
        finally:
            self._running -= 1

    async def _run(
        self,
        function: Callable[..., T],
        args: tuple[Any, ...],
        pages: AsyncIterable[Any] | None = None,
    ) -> T:
        context = _context()
        ours, theirs = context.Pipe(duplex=True)
        process = context.Process(target=_work, args=(theirs,), daemon=True)
        exchange: asyncio.Future[tuple[bool, Any]] | None = None
        feeding: asyncio.Future[None] | None = None
        loop = asyncio.get_running_loop()
        try:
            await asyncio.to_thread(process.start)  # asks the forkserver: off the loop too
            theirs.close()
            deadline = loop.time() + self.seconds
            if pages is None:
                exchange = asyncio.ensure_future(
                    asyncio.to_thread(_exchange, ours, (function, args))
                )
            else:
                await asyncio.to_thread(ours.send, (function, packed(args), True))
                exchange = asyncio.ensure_future(asyncio.to_thread(_exchange, ours, None))
                feeding = asyncio.ensure_future(_feed(ours, pages))
            waiting: set[asyncio.Future[Any]] = (
                {exchange} if feeding is None else {exchange, feeding}
            )
            while True:
                done, _ = await asyncio.wait(
                    waiting,
                    timeout=max(0.0, deadline - loop.time()),
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if not done:
                    process.kill()
                    raise ComputeTimeout(self.seconds)
                if exchange in done:
                    break
                # The feed ended: every page sent, or the reading failed.
                assert feeding is not None
                waiting = {exchange}
                failed = feeding.exception()
                if failed is not None and not isinstance(failed, OSError):
                    process.kill()  # no answer is coming
                    raise failed
            try:
                ok, value = exchange.result()
            except (EOFError, OSError) as error:
                await asyncio.to_thread(process.join, 5)
                raise ComputeFailed(
                    f"the computation ended without an answer (exit code {process.exitcode})"
                ) from error
            if not ok:
                if isinstance(value, Exception):
                    raise value
                raise ComputeFailed(f"the computation ended with {value!r}")
            result: T = value
            return result
        finally:
            if feeding is not None:
                feeding.cancel()  # nothing if it ended; its error, if any, is then taken here
                with contextlib.suppress(BaseException):
                    await feeding
            await asyncio.shield(self._end(process, exchange))
            ours.close()
            theirs.close()

    @staticmethod
    async def _end(process: Any, exchange: asyncio.Future[Any] | None) -> None:
        """The job's process gone (killed if it still runs) and the thread that talked to it
        returned, whatever ended the job: its answer, the time limit, a cancelled request."""
        with contextlib.suppress(Exception):
            if process.is_alive():
                await asyncio.to_thread(process.join, 1)
            if process.is_alive():
                process.kill()
                await asyncio.to_thread(process.join, 5)
        if exchange is not None:
            with contextlib.suppress(BaseException):
                await exchange  # the pipe's far end closed: the thread returns
