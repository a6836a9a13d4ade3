"""The browser chooses its session_hash; the key the app derives from it names host folders."""

from types import SimpleNamespace

from app.ui import _session_key


def test_a_hostile_session_hash_never_becomes_a_path():
    for hostile in ("../../../root/.ssh", "/etc", "..", "a/../../b", "x\x00y"):
        key = _session_key(SimpleNamespace(session_hash=hostile))
        assert len(key) == 32 and all(c in "0123456789abcdef" for c in key), key


def test_the_key_is_stable_per_session_and_distinct_between_sessions():
    a1 = _session_key(SimpleNamespace(session_hash="abc"))
    a2 = _session_key(SimpleNamespace(session_hash="abc"))
    b = _session_key(SimpleNamespace(session_hash="abd"))
    assert a1 == a2 != b
    assert _session_key(None) == _session_key(SimpleNamespace(session_hash=None))
