"""Delivery-report runs: translation of sequence numbers and expansion.

A run is ``[seq, count, partition, offset, error]`` (SPEC 4.5): messages
``seq .. seq+count-1`` went to ``partition`` at offsets ``offset ..
offset+count-1`` (offset -1 when unknown) with one outcome.

The client numbers report-mode messages itself, at ``produce()`` time, so
that it can return the number before the batch is even sent.  The daemon
assigns its own numbers when it accepts a request and says which in the
result (``seq``).  They agree unless the daemon skips numbers (a rejected
request, or messages of other ack modes sharing its counter), so the client
keeps a small table of segments ``daemon seq -> client seq``, one per
accepted request, and rewrites every incoming run through it.  A run that
arrives before the result that defines its segment is parked until then.
"""

from __future__ import annotations

from bisect import bisect_right
from itertools import repeat

from .types import DeliveryReport

# typing.TYPE_CHECKING without importing typing (mypy treats the name as true)
TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover
    from typing import Any, Callable, Iterable, Iterator, List, Optional, Tuple

    Run = List[Any]  # [seq, count, partition, offset, error]

_new: Callable[..., DeliveryReport] = tuple.__new__

__all__ = ["SeqMap", "iter_run", "expand_run", "expand_runs", "compress_reports"]


class SeqMap:
    __slots__ = ("_starts", "_segs", "_parked")

    def __init__(self) -> None:
        self._starts: List[int] = []  # daemon start of each live segment, sorted
        # [dstart, count, cstart, unreported, reported daemon-seq intervals]
        self._segs: List[List[Any]] = []
        self._parked: List[Run] = []

    def __len__(self) -> int:
        """Number of live segments (requests with unreported messages)."""
        return len(self._segs)

    @property
    def parked(self) -> int:
        """Messages whose runs arrived before their request's result."""
        return sum(r[1] for r in self._parked)

    def add(self, dstart: int, count: int, cstart: int, out: List[Run]) -> None:
        """Record that daemon seqs ``dstart..`` are client seqs ``cstart..``.

        Parked runs that the new segment covers are translated into ``out``.
        """
        if count <= 0:
            return
        i = bisect_right(self._starts, dstart)
        self._starts.insert(i, dstart)
        self._segs.insert(i, [dstart, count, cstart, count, []])
        if self._parked:
            parked, self._parked = self._parked, []
            for run in parked:
                self.translate(run, out)

    def unreported(self) -> List[Tuple[int, int]]:
        """``(client seq, count)`` ranges of accepted messages without a report."""
        gaps: List[Tuple[int, int]] = []
        for dstart, count, cstart, _left, done in self._segs:
            pos = dstart
            for a, b in done + [(dstart + count, dstart + count)]:
                if a > pos:
                    gaps.append((cstart + pos - dstart, a - pos))
                pos = max(pos, b)
        return gaps

    def clear(self) -> None:
        self._starts.clear()
        self._segs.clear()
        self._parked.clear()

    def translate(self, run: Run, out: List[Run]) -> None:
        """Append the client-numbered pieces of daemon run ``run`` to ``out``."""
        seq, count, part, off, err = run
        starts = self._starts
        segs = self._segs
        while count > 0:
            i = bisect_right(starts, seq) - 1
            if i >= 0:
                seg = segs[i]
                end = seg[0] + seg[1]
                if seq < end:
                    take = count if seq + count <= end else end - seq
                    out.append([seg[2] + seq - seg[0], take, part, off, err])
                    seg[3] -= take
                    if seg[3] <= 0:
                        del starts[i]
                        del segs[i]
                    else:
                        _mark(seg[4], seq, seq + take)
                    seq += take
                    count -= take
                    if off >= 0:
                        off += take
                    continue
            # no segment yet: park up to where the next known segment starts
            nxt = starts[i + 1] if i + 1 < len(starts) else seq + count
            take = min(count, nxt - seq)
            self._parked.append([seq, take, part, off, err])
            seq += take
            count -= take
            if off >= 0:
                off += take


def _mark(intervals: List[Tuple[int, int]], a: int, b: int) -> None:
    """Add [a, b) to a sorted list of disjoint intervals, merging neighbours."""
    i = bisect_right(intervals, (a, b))
    if i > 0 and intervals[i - 1][1] >= a:
        i -= 1
        a = intervals[i][0]
        b = max(b, intervals[i][1])
        del intervals[i]
    while i < len(intervals) and intervals[i][0] <= b:
        b = max(b, intervals[i][1])
        del intervals[i]
    intervals.insert(i, (a, b))


def iter_run(run: Run, limit: Optional[int] = None) -> Iterator[DeliveryReport]:
    """The per-message reports of one client-numbered run (first ``limit``),
    made one at a time as the iterator is consumed.

    Calling a callback with each as it is made frees each before the next
    exists, so a run of 10000 reports never has the cyclic GC start (and
    rescan the reports still alive): about 60 ns a message less than
    expanding the run into a list first.
    """
    seq, count, part, off, err = run
    if limit is not None and limit < count:
        count = limit
    if off >= 0:
        offs: Iterable[int] = range(off, off + count)
    else:
        offs = repeat(-1, count)
    # tuple.__new__ skips NamedTuple's Python-level constructor (4x faster)
    return map(_new, repeat(DeliveryReport, count), zip(range(seq, seq + count), repeat(part), offs, repeat(err)))


def expand_run(run: Run, limit: Optional[int] = None) -> List[DeliveryReport]:
    """The per-message reports of one client-numbered run (first ``limit``)."""
    return list(iter_run(run, limit))


def expand_runs(runs: Iterable[Run]) -> List[DeliveryReport]:
    out: List[DeliveryReport] = []
    for r in runs:
        out.extend(expand_run(r))
    return out


def compress_reports(reports: Iterable[DeliveryReport]) -> List[Run]:
    """Inverse of :func:`expand_runs` (adjacent reports merge into runs)."""
    runs: List[Run] = []
    for r in reports:
        if runs:
            last = runs[-1]
            if (
                last[0] + last[1] == r.seq
                and last[2] == r.partition
                and last[4] is r.error
                and (
                    (last[3] < 0 and r.offset < 0)
                    or (last[3] >= 0 and last[3] + last[1] == r.offset)
                )
            ):
                last[1] += 1
                continue
        runs.append([r.seq, 1, r.partition, r.offset, r.error])
    return runs


