"""Run a function in a new Python process: latency measured where nothing was trained.

A process that has just fine-tuned a model times it slower than a new process does: on an
Intel Xeon (AMX), an int8 export measured 0.313x of dense in the process that had trained
it and 0.280-0.294x in a fresh process minutes later, and both int8 exports of that
end-to-end run read 8-18% above every later measurement of the same model: whatever
training leaves behind (allocator state, thread pools, caches; not pinned down) slowed the
small int8 models more than dense, so the ratio to dense did not cancel it. So
:mod:`autoprune.export` and :mod:`autoprune.verify` time their models in a process of their
own, started with ``spawn`` (a fork would inherit the very state this avoids).
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import ParamSpec, TypeVar

from autoprune.errors import AutopruneError

P = ParamSpec("P")
R = TypeVar("R")


def run_in_fresh_process(function: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
    """``function(*args, **kwargs)`` in a new interpreter; its result, or its exception.

    ``function`` must be importable (a module-level function) and its arguments and result
    picklable. The child starts from scratch: it imports what ``function`` needs (a few
    seconds for torch and transformers) and exits when it returns. Like any ``spawn``ed
    child, it imports the parent's main script first, so a script that calls this (through
    ``autoprune.export`` or ``autoprune.verify``) needs an ``if __name__ == "__main__":``
    guard, or the child runs the script again.
    """
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        try:
            return pool.submit(function, *args, **kwargs).result()
        except BrokenProcessPool as exc:  # killed (out of memory, a signal), not an exception
            raise AutopruneError(
                f"the process measuring latency ({getattr(function, '__name__', function)}) "
                "died before it returned") from exc
