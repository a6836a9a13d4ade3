"""`python -m app` and `python -m evaluation run` started with the flags that change behaviour, each checked
for what it promises (not only that it starts), through the public /chat API (gradio_client).

Flags are grouped per start to keep the file to a few app starts:
- the OpenAI backend (chat endpoint) on the scripted server, docker sandbox: --exec-timeout,
  --render-style tokens, --max-rounds, --execution-mode always, --system-prompt, --max-sessions, and a
  double submit to one chat; no container or folder left after a clean stop;
- the OpenAI backend with --completions --tokenizer (the tiny model's tokenizer renders the prompt),
  --max-retries and --request-timeout (a 503 and a stalled answer retried), --sandbox none (no isolation,
  with its warning), the default --render-style demo;
- the hf backend on the tiny model with --quantize 4bit --dtype fp32 and --sandbox auto, which must pick
  docker here (the engine answers and the image exists: the README's rule);
- the evaluation CLI on the OpenAI backend: a right and a wrong answer scored as such.
The scripted server's replies follow the user's words (tests/app/scripted_model.py, extended below).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from interpreter.protocol import OUTPUT_START, RUN_START, RUN_STOP
from tests.app.conftest import REPO, AppProcess
from tests.app.scripted_model import FINAL, scripted_reply
from tests.conftest import require
from tests.fixtures.openai_server import Failure
from tests.fixtures.tiny_models import EOT, SCENARIOS

pytestmark = [pytest.mark.slow]

SYSTEM = "You are AutoCoder, a helpful code assistant."
_RESULT_PREFIXES = ("result.", "pip_result.", OUTPUT_START)


def _text(content) -> str:
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content)
    return content or ""


def flag_script(body: dict) -> list[str]:
    """scripted_reply plus: `bare: CODE` (a plain ```python fence, no execution tokens) and `loop` (a new
    block after every result, so only --max-rounds ends it)."""
    messages = body.get("messages") or []
    humans = [
        _text(m["content"])
        for m in messages
        if m["role"] == "user" and not _text(m["content"]).startswith(_RESULT_PREFIXES)
    ]
    last = _text(messages[-1]["content"]) if messages else ""
    if humans and humans[-1] == "loop":
        return ["Again.\n", f"{RUN_START}```python\nprint('round')\n```{RUN_STOP}"]
    if last.startswith("bare: "):
        return ["Plain fence:\n", f"```python\n{last[len('bare: ') :]}\n```\n"]
    return scripted_reply(body)


def completion_script(body: dict) -> list[str]:
    """The tiny tokenizer's chat template, read back: `<|user|>TEXT<|EOT|>` turns, ending `<|assistant|>`."""
    prompt = body.get("prompt") or ""
    users = re.findall(r"<\|user\|>(.*?)" + re.escape(EOT), prompt, flags=re.S)
    last = users[-1] if users else ""
    if prompt.endswith("<|assistant|>") and last.startswith("run: "):
        return ["Running it.\n", f"{RUN_START}```python\n{last[len('run: ') :]}\n```{RUN_STOP}"]
    return [FINAL]  # a server stops at the end-of-turn token without sending it (vLLM's default)


def docker_or_fail() -> None:
    from interpreter.sandboxes.base import SandboxUnavailable
    from interpreter.sandboxes.select import make_sandbox

    try:
        make_sandbox("docker")
    except SandboxUnavailable as exc:
        require(False, f"docker sandbox unavailable: {exc}")


def containers_of(pid: int) -> list[str]:
    out = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label=autocoder.owner_pid={pid}"],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.split()


def client_of(app):
    from gradio_client import Client

    return Client(app.url, verbose=False)


def start(tmp_path: Path, name: str, *flags: str) -> AppProcess:
    return AppProcess(["--warm-kernels", "0", *flags], tmp_path / name, startup_s=600)


def scripted_flags(server) -> list[str]:
    return ["--backend", "openai", "--base-url", server.base_url, "--model", server.models[0]]


@pytest.mark.docker
def test_openai_backend_in_docker_honours_timeout_render_rounds_mode_prompt_and_caps(
    openai_server, tmp_path, monkeypatch
):
    docker_or_fail()
    openai_server.reply_for = flag_script
    monkeypatch.setenv("OPENAI_API_KEY", openai_server.api_key)
    app = start(
        tmp_path,
        "openai-docker",
        *scripted_flags(openai_server),
        "--sandbox",
        "docker",
        "--exec-timeout",
        "4",
        "--render-style",
        "tokens",
        "--max-rounds",
        "2",
        "--execution-mode",
        "always",
        "--system-prompt",
        SYSTEM,
        "--max-sessions",
        "1",
    )
    try:
        client = client_of(app)
        # --execution-mode always: a plain fence runs; --system-prompt opens the request.
        reply = client.predict("bare: print(6*7)", api_name="/chat")
        (run,) = reply["executions"]
        assert run["result"]["status"] == "ok" and run["result"]["stdout"] == "42\n"
        assert reply["dialogue"]["meta"]["sandbox"] == "docker"
        assert containers_of(app.proc.pid), "no sandbox container of the app while its chat holds a kernel"
        first, second = openai_server.requests[-2:]
        assert first["messages"][0] == {"role": "system", "content": SYSTEM}
        # --render-style tokens: the result goes back between the output tokens, not as the demo's text.
        fed_back = _text(second["messages"][-1]["content"])
        assert fed_back.startswith(OUTPUT_START) and "42" in fed_back and "result.stdout" not in fed_back

        # --max-rounds 2: a model that asks again after every result gets two executions, then is stopped.
        looped = client.predict("loop", api_name="/chat")
        assert looped["reason"] == "max_rounds"
        assert [e["result"]["stdout"] for e in looped["executions"]] == ["round\n", "round\n"]

        # --exec-timeout 4: a 60 s sleep is interrupted and reported as timed out; the kernel keeps state.
        slept = client.predict("run: import time; x = 5; time.sleep(60)", api_name="/chat")
        (timed,) = slept["executions"]
        assert timed["result"]["status"] == "timeout", timed["result"]
        assert "timed out after 4 s" in timed["result"]["message"]
        assert client.predict("run: print(x)", api_name="/chat")["executions"][0]["result"]["stdout"] == "5\n"

        # --max-sessions 1: a second chat is told the server is full.
        with pytest.raises(Exception, match="server is full"):
            client_of(app).predict("run: print(1)", api_name="/chat")

        # A double submit to one chat: the second is refused while the first answers, or waits its turn;
        # never two answers interleaved in one dialogue.
        jobs = [
            client.submit("run: import time; time.sleep(2); print('a')", api_name="/chat"),
            client.submit("run: print('b')", api_name="/chat"),
        ]
        outcomes = []
        for job in jobs:
            try:
                outcomes.append(job.result(timeout=300))
            except Exception as exc:  # noqa: BLE001 - the refusal is what is checked
                outcomes.append(exc)
        answered = [o for o in outcomes if isinstance(o, dict)]
        refused = [o for o in outcomes if not isinstance(o, dict)]
        assert answered, outcomes
        assert all("still answering" in str(exc) for exc in refused), refused
        final = client.predict("run: print('c')", api_name="/chat")["dialogue"]["messages"]
        users = [m["content"] for m in final if m["role"] == "user"]
        assert (
            users[-1] == "run: print('c')"
            and len(users) == len(set(users))
            and len(users) == 5 + len(answered)
        )
    finally:
        code = app.stop()
    assert code == 0, app.log()[-3000:]
    assert containers_of(app.proc.pid) == [], "containers left after a clean stop"
    assert app.session_dirs() == [], "session folders left after a clean stop"


def test_completions_with_tokenizer_and_sandbox_none(
    openai_server, tiny_autocoder_path, tmp_path, monkeypatch
):
    openai_server.reply_for = completion_script
    monkeypatch.setenv("OPENAI_API_KEY", openai_server.api_key)
    # A host file outside every session folder, where the kernel (uid 65534 under root) may walk: not under
    # pytest's tmp_path, whose root pytest keeps at 0700.
    outside = Path(tempfile.mkdtemp(prefix="acnone-"))
    outside.chmod(0o711)
    host_only = outside / "host-only.txt"
    host_only.write_text("visible without isolation")
    host_only.chmod(0o644)
    app = start(
        tmp_path,
        "completions-none",
        *scripted_flags(openai_server),
        "--completions",
        "--tokenizer",
        str(tiny_autocoder_path),
        "--sandbox",
        "none",
        "--execution-mode",
        "auto",
        "--max-retries",
        "2",
        "--request-timeout",
        "2",
    )
    # The unsandboxed kernel (uid 65534 under root) walks host paths: let it into the app's private TMPDIR
    # (an ordinary TMPDIR, /tmp, is open to all).
    app.tmp.chmod(0o711)
    try:
        assert "UNSANDBOXED" in app.log(), "no warning for --sandbox none"
        # --max-retries 2 --request-timeout 2: a 503, then an answer 5 s late (timed out), then the reply.
        openai_server.failures = [Failure(status=503), Failure(stall_s=5)]
        reply = client_of(app).predict(
            f"run: import os; print(os.getuid(), open({str(host_only)!r}).read())", api_name="/chat"
        )
        (run,) = reply["executions"]
        expected_uid = 65534 if os.geteuid() == 0 else os.geteuid()
        assert run["result"]["stdout"] == f"{expected_uid} visible without isolation\n", run["result"]
        assert reply["reply"][-1]["content"] == FINAL
        assert len(openai_server.requests) == 4, "expected 2 retries of the first request, then the follow-up"
        assert openai_server.requests[0] == openai_server.requests[2]  # the same request, retried
        first, second = openai_server.requests[-2:]
        assert first["path"] == second["path"] == "/v1/completions"
        # The prompt is the tokenizer's chat template, execution tokens intact.
        assert first["prompt"].startswith("<|user|>run: import os")  # the server adds the BOS itself
        assert first["prompt"].endswith("<|assistant|>")
        # The default --render-style demo: the result goes back as the released demo's user turn.
        assert f"{RUN_STOP}{EOT}<|user|>result.stdout:\n{expected_uid} visible" in second["prompt"]
    finally:
        code = app.stop()
        shutil.rmtree(outside, ignore_errors=True)
    assert code == 0, app.log()[-3000:]
    assert app.session_dirs() == []


@pytest.mark.model
@pytest.mark.docker
def test_hf_tiny_model_quantized_with_sandbox_auto_picks_docker(tiny_autocoder_path, tmp_path):
    docker_or_fail()  # auto must then be docker (README: docker if the engine answers and the image exists)
    app = start(
        tmp_path,
        "hf-auto",
        "--model",
        str(tiny_autocoder_path),
        "--quantize",
        "4bit",
        "--dtype",
        "fp32",
        "--sandbox",
        "auto",
    )
    try:
        assert re.search(r"loading \S+ \(float32, quantize=4bit\)", app.log()), app.log()[-2000:]
        reply = client_of(app).predict("print", api_name="/chat")
        (run,) = reply["executions"]
        assert run["result"]["stdout"] == "42\n"
        assert reply["reply"][-1]["content"] == SCENARIOS["print"].final
        assert reply["dialogue"]["meta"]["sandbox"] == "docker"
        assert containers_of(app.proc.pid), "auto did not run the kernel in a container"
    finally:
        code = app.stop()
    assert code == 0, app.log()[-3000:]
    assert containers_of(app.proc.pid) == []


@pytest.mark.local_sandbox
def test_evaluation_run_on_the_openai_backend_scores_right_and_wrong_answers(openai_server, tmp_path):
    from evaluation.datasets import load_benchmark

    problems = load_benchmark("humaneval").problems[:2]
    right, wrong = problems

    def answer(body: dict) -> list[str]:
        asked = _text(body["messages"][-1]["content"])
        if right.prompt.strip() in asked:
            return [f"```python\n{right.canonical_solution}\n```"]
        return [f"```python\n{wrong.prompt}    return None\n```"]

    openai_server.reply_for = answer
    out = tmp_path / "run"
    env = {**os.environ, "OPENAI_API_KEY": openai_server.api_key, "HF_HUB_OFFLINE": "1"}
    argv = [sys.executable, "-m", "evaluation", "run", "--benchmark", "humaneval", "--limit", "2"]
    argv += [*scripted_flags(openai_server), "--sandbox", "local", "--concurrency", "2", "--no-progress"]
    argv += ["--cache-dir", str(tmp_path / "cache"), "--out", str(out)]
    done = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    verdicts = {task: entry["samples"][0]["passed"] for task, entry in results["tasks"].items()}
    assert verdicts == {right.task_id: True, wrong.task_id: False}
    assert results["scores"][0]["pass@1"] == pytest.approx(0.5)
    assert results["execution"]["sandbox"] == "local"
    assert len(openai_server.requests) == 2 and openai_server.max_in_flight <= 2
