"""Delivery-report runs: expansion and sequence translation (no daemon)."""

import os
import sys

_STUB = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "client-stubs", "python"))
if _STUB not in sys.path:
    sys.path.insert(0, _STUB)

from kafkad._reports import SeqMap, compress_reports, expand_run, expand_runs  # noqa: E402
from kafkad.errors import KafkaError  # noqa: E402
from kafkad.types import DeliveryReport  # noqa: E402


def test_expand_run_with_offsets():
    reps = expand_run([10, 3, 2, 500, None])
    assert reps == [DeliveryReport(10, 2, 500, None), DeliveryReport(11, 2, 501, None), DeliveryReport(12, 2, 502, None)]
    assert reps[0].seq == 10 and reps[2].offset == 502 and reps[0].ok
    assert isinstance(reps[0], DeliveryReport)


def test_expand_run_unknown_offset_and_error():
    err = KafkaError("x", code=9808, name="_MSG_TIMED_OUT")
    reps = expand_run([1, 2, -1, -1, err])
    assert [(r.offset, r.partition) for r in reps] == [(-1, -1), (-1, -1)]
    assert all(r.error is err and not r.ok for r in reps)


def test_expand_run_limit_and_runs():
    assert len(expand_run([1, 100, 0, 0, None], 7)) == 7
    assert [r.seq for r in expand_runs([[1, 2, 0, 0, None], [3, 1, 1, 9, None]])] == [1, 2, 3]


def test_compress_is_inverse_of_expand():
    err = KafkaError("x")
    runs = [[1, 3, 0, 10, None], [4, 2, 1, 5, None], [6, 2, -1, -1, err], [8, 1, 0, 13, None]]
    assert compress_reports(expand_runs(runs)) == runs


def translate(m, run):
    out = []
    m.translate(list(run), out)
    return out


def test_seqmap_identity():
    m = SeqMap()
    out = []
    m.add(1, 100, 1, out)
    assert out == []
    assert translate(m, [1, 60, 0, 0, None]) == [[1, 60, 0, 0, None]]
    assert len(m) == 1
    assert translate(m, [61, 40, 1, 0, None]) == [[61, 40, 1, 0, None]]
    assert len(m) == 0  # fully reported segments are dropped


def test_seqmap_shift_and_straddle():
    # client numbered 1..10 and 11..20; the daemon numbered them 1..10 and 12..21
    # (it gave 11 to some other message), and reports one run across both
    m = SeqMap()
    out = []
    m.add(1, 10, 1, out)
    m.add(12, 10, 11, out)
    assert translate(m, [9, 2, 0, 100, None]) == [[9, 2, 0, 100, None]]
    got = translate(m, [12, 3, 1, 7, None])
    assert got == [[11, 3, 1, 7, None]]
    # a run crossing the daemon's gap: 1..8 then (11 belongs to nobody) ...
    assert translate(m, [1, 8, 2, 0, None]) == [[1, 8, 2, 0, None]]
    assert translate(m, [15, 7, 3, 50, None]) == [[14, 7, 3, 50, None]]
    assert len(m) == 0


def test_seqmap_run_across_adjacent_segments_is_split():
    m = SeqMap()
    out = []
    m.add(1, 5, 1, out)
    m.add(6, 5, 7, out)  # client skipped 6 (e.g. a locally failed message)
    got = translate(m, [4, 4, 0, 40, None])
    assert got == [[4, 2, 0, 40, None], [7, 2, 0, 42, None]]


def test_seqmap_parks_runs_until_their_segment_arrives():
    m = SeqMap()
    out = []
    m.add(1, 5, 1, out)
    got = translate(m, [4, 4, 0, 10, None])  # 6, 7 unknown yet
    assert got == [[4, 2, 0, 10, None]]
    assert m.parked == 2
    m.add(6, 5, 6, out)
    assert out == [[6, 2, 0, 12, None]]
    assert m.parked == 0


def test_seqmap_unreported_gaps():
    m = SeqMap()
    out = []
    m.add(1, 10, 1, out)
    m.add(11, 5, 20, out)
    assert m.unreported() == [(1, 10), (20, 5)]
    translate(m, [3, 2, 0, 0, None])
    translate(m, [7, 2, 1, 0, None])
    translate(m, [5, 2, 2, 0, None])
    translate(m, [12, 4, 0, 2, None])
    assert m.unreported() == [(1, 2), (9, 2), (20, 1)]
    translate(m, [1, 2, 0, 5, None])
    translate(m, [9, 2, 0, 7, None])
    assert m.unreported() == [(20, 1)]
