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

The function run must be importable by name (a module-level function) and take and return
picklable values.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import multiprocessing.connection
from collections.abc import Callable
from typing import Any, TypeVar

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


def _work(connection: multiprocessing.connection.Connection) -> None:
    """In the job's process: receive the function and its arguments, send back the outcome."""
    function, args = connection.recv()
    try:
        outcome = (True, function(*args))
    except BaseException as error:  # every failure goes back to the service
        outcome = (False, error)
    try:
        connection.send(outcome)
    except Exception as error:  # the result or the error did not pickle
        connection.send((False, RuntimeError(f"{type(error).__name__}: {error}")))
    connection.close()


def _exchange(
    connection: multiprocessing.connection.Connection, job: tuple[Any, ...]
) -> tuple[bool, Any]:
    """In a thread: send the job, wait for its outcome (EOFError when the process died)."""
    connection.send(job)
    outcome: tuple[bool, Any] = connection.recv()
    return outcome


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

    async def _run(self, function: Callable[..., T], args: tuple[Any, ...]) -> T:
        context = _context()
        ours, theirs = context.Pipe(duplex=True)
        process = context.Process(target=_work, args=(theirs,), daemon=True)
        exchange: asyncio.Future[tuple[bool, Any]] | None = None
        try:
            await asyncio.to_thread(process.start)  # asks the forkserver: off the loop too
            theirs.close()
            exchange = asyncio.ensure_future(asyncio.to_thread(_exchange, ours, (function, args)))
            done, _ = await asyncio.wait({exchange}, timeout=self.seconds)
            if not done:
                process.kill()
                raise ComputeTimeout(self.seconds)
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
