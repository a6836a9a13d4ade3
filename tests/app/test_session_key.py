"""The browser chooses its session_hash; the key the app derives from it names host folders, and a call
without one is refused (it must never fall back to a shared chat)."""

from types import SimpleNamespace

import pytest

from app.auth import AccessDenied, caller_of


def request(session_hash, username=None, host="10.0.0.7"):
    return SimpleNamespace(session_hash=session_hash, username=username, client=SimpleNamespace(host=host))


def test_a_hostile_session_hash_never_becomes_a_path():
    for hostile in ("../../../root/.ssh", "/etc", "..", "a/../../b", "x\x00y", "\udcff"):
        key = caller_of(request(hostile), auth_required=False).key
        assert len(key) == 32 and all(c in "0123456789abcdef" for c in key), key


def test_the_key_is_stable_per_session_and_distinct_between_sessions():
    a1 = caller_of(request("abc"), False).key
    a2 = caller_of(request("abc"), False).key
    b = caller_of(request("abd"), False).key
    assert a1 == a2 != b


def test_a_call_without_a_session_or_without_a_login_is_refused():
    for bad in (None, request(None), request("")):
        with pytest.raises(AccessDenied, match="session|request"):
            caller_of(bad, auth_required=False)
    with pytest.raises(AccessDenied, match="sign in"):
        caller_of(request("abc"), auth_required=True)
    assert caller_of(request("abc", username="ann"), auth_required=True).user == "ann"


def test_the_client_the_cap_counts_is_the_user_when_signed_in_else_the_address():
    assert caller_of(request("a", host="10.0.0.7"), False).client == "10.0.0.7"
    assert caller_of(request("b", host="10.0.0.7"), False).client == "10.0.0.7"
    assert caller_of(request("a", username="ann"), True).client == "user ann"
