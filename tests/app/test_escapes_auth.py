"""Authorisation hardening, on a running `python -m app`: hidden handlers are not access control, a session
belongs to the user who opened it, passwords stay out of argv, and every response carries the CSP."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest

from app.cli import parse_args
from app.security_headers import FILE_POLICY
from tests.app.gradio_calls import call_by_index, handler_index, logged_in
from tests.app.scripted_model import start_scripted_app

pytestmark = [pytest.mark.slow, pytest.mark.local_sandbox]


def cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


def test_a_session_id_is_refused_to_another_user_in_every_handler(
    start_app, openai_server, monkeypatch, tmp_path
):
    from gradio_client import Client

    logins = tmp_path / "logins"
    logins.write_text("# user:password\nann:ann-pw-1\nbob:bob-pw-2\n")
    app = start_scripted_app(start_app, openai_server, monkeypatch, "--auth-file", str(logins))
    assert "ann-pw-1" not in cmdline(app.proc.pid)
    assert httpx.get(app.url + "gradio_api/info").status_code == 401

    ann = Client(app.url, auth=("ann", "ann-pw-1"), verbose=False)
    assert ann.predict("run: print(6*7)", api_name="/chat")["executions"][0]["result"]["stdout"] == "42\n"

    bob = Client(app.url, auth=("bob", "bob-pw-2"), verbose=False)
    bob.session_hash = ann.session_hash  # bob reuses ann's session id
    with pytest.raises(Exception, match="belongs to another user"):
        bob.predict("run: print(1)", api_name="/chat")

    # A private handler, called by index: refused for bob on ann's session, served for ann herself.
    bob_http, ann_http = logged_in(app.url, "bob", "bob-pw-2"), logged_in(app.url, "ann", "ann-pw-1")
    export, trigger = handler_index(ann_http, "export-ipynb")
    refused = call_by_index(bob_http, export, trigger, [], session_hash=ann.session_hash)
    assert refused["success"] is False and "belongs to another user" in str(refused["output"])
    served = call_by_index(ann_http, export, trigger, [], session_hash=ann.session_hash)
    assert served["success"] is True, served
    exported = served["output"]["data"][0]
    assert exported["path"].endswith(".ipynb")

    # Files the server hands out carry the strict, sandboxing policy; the page carries the page policy.
    file_response = ann_http.get(exported["url"])
    assert file_response.status_code == 200 and b"print(6*7)" in file_response.content
    assert file_response.headers["content-security-policy"] == FILE_POLICY
    # And ann's own chat still works after bob's attempts.
    assert ann.predict("run: print(7*6)", api_name="/chat")["executions"][0]["result"]["stdout"] == "42\n"


def test_private_upload_handler_called_by_index_with_a_host_path_copies_nothing(
    start_app, openai_server, monkeypatch
):
    app = start_scripted_app(start_app, openai_server, monkeypatch, "--warm-kernels", "0")
    http = logged_in(app.url)
    upload, trigger = handler_index(http, "upload", event="upload")
    secret = "/etc/hostname"
    outcome = call_by_index(
        http, upload, trigger, [[{"path": secret, "meta": {"_type": "gradio.FileData"}, "orig_name": "x"}]]
    )
    assert outcome["success"] is False, outcome
    copied = [p for d in app.session_dirs() for p in (d / "work").glob("*")]
    assert copied == [], copied


def test_csp_header_on_the_page_forbids_remote_origins(start_app, openai_server, monkeypatch):
    app = start_scripted_app(start_app, openai_server, monkeypatch)
    response = httpx.get(app.url)
    assert response.status_code == 200
    policy = response.headers["content-security-policy"]
    directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
    assert directives["img-src"] == "'self' data: blob:"
    assert directives["connect-src"] == "'self'" and directives["default-src"] == "'self'"
    assert "http" not in policy and "*" not in policy
    assert response.headers["x-content-type-options"] == "nosniff"


def test_logins_come_from_a_file_or_the_environment_and_argv_warns(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("AUTOCODER_AUTH", raising=False)
    logins = tmp_path / "logins"
    logins.write_text("ann:pw\n\nbob:other:colon\n")
    args = parse_args(["--auth-file", str(logins)])
    assert [(a.user, a.password) for a in args.auth_users] == [("ann", "pw"), ("bob", "other:colon")]
    assert capsys.readouterr().err == ""

    monkeypatch.setenv("AUTOCODER_AUTH", "eve:from-env")
    assert [(a.user, a.password) for a in parse_args([]).auth_users] == [("eve", "from-env")]

    args = parse_args(["--auth", "ann:visible"])
    assert [a.user for a in args.auth_users] == ["ann"]
    assert "process list" in capsys.readouterr().err

    for bad, why in (
        (["--auth-file", str(tmp_path / "missing")], "--auth-file"),
        (["--auth-file", str(logins), "--auth", "a:b"], "not both"),
    ):
        with pytest.raises(SystemExit) as exited:
            parse_args(bad)
        err = capsys.readouterr().err
        assert exited.value.code == 2 and why in err and err.count("\n") == 1, err
    (tmp_path / "broken").write_text("no-colon-here\n")
    with pytest.raises(SystemExit):
        parse_args(["--auth-file", str(tmp_path / "broken")])
    assert "broken:1" in capsys.readouterr().err


def test_a_login_from_the_environment_is_enforced_and_absent_from_the_process_list(
    start_app, openai_server, monkeypatch
):
    from gradio_client import Client

    monkeypatch.setenv("AUTOCODER_AUTH", "ann:env-secret-9")
    app = start_scripted_app(start_app, openai_server, monkeypatch)
    assert "env-secret-9" not in cmdline(app.proc.pid)
    assert httpx.get(app.url + "gradio_api/info").status_code == 401
    reply = Client(app.url, auth=("ann", "env-secret-9"), verbose=False).predict("say: hi", api_name="/chat")
    assert reply["reply"][-1]["content"] == "hi"
    assert os.environ["AUTOCODER_AUTH"] == "ann:env-secret-9"
