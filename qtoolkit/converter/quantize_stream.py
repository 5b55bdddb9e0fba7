"""Quantizing a stream of float32 slabs on a thread pool, in order, with bounded memory.

Producing a slab (reading the memory map, widening to float32, checking for NaN/Inf) runs one
step ahead on a helper thread; each slab is then quantized as one single-threaded job on the
pool, with at most ``threads + 1`` jobs in flight, and results come back in input order. There is
no barrier between slabs, so on a busy machine a worker that the OS delays does not hold the
others up (per-call row splitting would wait for the slowest part of every call).
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from typing import Any, Callable, Iterator, Optional, Tuple

import numpy as np

from ..quants import quantize


def prefetched(items: Iterator, depth: int = 1) -> Iterator:
    """Run ``items`` one step ahead on a helper thread, so reading, widening and checking the next
    slab overlaps the quantization of this one. Errors are re-raised in order."""
    q: "queue.Queue" = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def put(entry) -> bool:
        while not stop.is_set():
            try:
                q.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work():
        try:
            for item in items:
                if not put((item, None)):
                    return
            put((done, None))
        except BaseException as exc:  # handed to the consumer
            put((None, exc))

    t = threading.Thread(target=work, name="qtk-prefetch", daemon=True)
    t.start()
    try:
        while True:
            item, exc = q.get()
            if exc is not None:
                raise exc
            if item is done:
                return
            yield item
    finally:
        stop.set()
        t.join(timeout=5)


def quantize_stream(jobs: Iterator[Tuple[np.ndarray, Optional[np.ndarray], Any]], qtype, pool, threads: int,
                    done: Optional[Callable[[Any], None]] = None) -> Iterator[np.ndarray]:
    """Quantized bytes of each ``(slab, importance weights or None, tag)`` job, in order;
    ``done(tag)`` is called as each result is handed out."""
    inflight: "deque" = deque()

    def finish(item):
        fut, tag = item
        q = fut.result()
        if done is not None:
            done(tag)
        return q

    try:
        for x, w, tag in prefetched(jobs, depth=threads + 1):
            inflight.append((pool.submit(quantize, x, qtype, w, 1), tag))
            del x
            while len(inflight) > threads:
                yield finish(inflight.popleft())
        while inflight:
            yield finish(inflight.popleft())
    finally:
        for fut, _ in inflight:
            fut.cancel()
