"""Wire the chat together and serve it: model backend, sandbox, per-session kernels, loop, Gradio page.

`build_context(args)` loads the backend and picks the sandbox; `build_app(ctx, args)` makes the page and
its queue; `serve(args)` does both, launches the server (127.0.0.1 unless --host says otherwise, no public
link unless --share, optional login from --auth-file / $AUTOCODER_AUTH / --auth) and blocks until Ctrl-C or
SIGTERM, then shuts down every kernel. Every response carries the Content-Security-Policy of
`app.security_headers`; sessions are capped by --max-sessions and --max-sessions-per-client.

Privacy: Gradio's analytics are off (GRADIO_ANALYTICS_ENABLED=False, set before Gradio is imported) and the
theme uses the browser's own fonts, so the page loads nothing from outside this server.

What this module deliberately does not do: parse flags (`app.cli`), render the chat (`app.view`), or
implement the loop (`interpreter.loop`, the one loop everything uses).
"""

from __future__ import annotations

import argparse
import atexit
import logging
import os
import shutil
import signal
import socket
import tempfile
import threading
from pathlib import Path
from typing import Any

from app.chat import ChatSessions, LoopRunner, Settings

log = logging.getLogger("app")

LOCAL_FONTS = ["ui-sans-serif", "system-ui", "sans-serif"]
LOCAL_MONO_FONTS = ["ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "monospace"]


def quiet_gradio_environment() -> None:
    """Nothing leaves the machine: no analytics, no update checks. Must run before `import gradio`."""
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("DO_NOT_TRACK", "1")


def load_backend(args: argparse.Namespace) -> Any:
    from llm.options import backend_from_args

    return backend_from_args(args)


def make_kernel_starter(args: argparse.Namespace) -> tuple[Any, Any, Any]:
    """(start_kernel, sandbox, pool): start_kernel hands out one started session of the chosen sandbox.

    A warm pool keeps `--warm-kernels` sessions booted in the background, so a new chat's first
    execution does not wait for a kernel; each session still belongs to one chat only.
    """
    from interpreter.pool import SessionPool
    from interpreter.sandboxes.base import Limits
    from interpreter.sandboxes.select import make_sandbox
    from interpreter.session import Session, set_max_sessions

    # The hard bound on kernels of this process, warm ones included (the pool warms only free slots);
    # app.chat's KernelSlots gives the same total, and the per-client cap, their messages.
    set_max_sessions(getattr(args, "max_sessions", None))
    sandbox = make_sandbox(args.sandbox, Limits())
    pool = SessionPool(lambda: Session(sandbox), size=args.warm_kernels)

    def start_kernel() -> Any:
        return pool.acquire(wait_s=60.0)

    return start_kernel, sandbox, pool


def make_loop_runner(backend: Any, args: argparse.Namespace) -> LoopRunner:
    """Adapt the app's per-message settings to `interpreter.loop.run_loop`."""
    from app.activity_log import logged
    from interpreter.loop import LoopConfig, run_loop
    from llm.base import GenerationParams
    from llm.models import STANDIN_NAME

    loop = run_loop
    if getattr(backend, "model_id", "") == STANDIN_NAME:
        from app.standin_prompt import with_examples

        loop = with_examples(run_loop)  # few-shot dialogues in AutoCoder's format (not shown in the chat)
    loop = logged(loop)  # one log line per execution and per answered message

    def run(dialogue, session, settings: Settings, cancel: threading.Event, approve):
        config = LoopConfig(
            generation=GenerationParams(
                temperature=settings.temperature, top_p=settings.top_p, max_new_tokens=settings.max_new_tokens
            ),
            max_rounds=settings.max_rounds,
            execution_mode=settings.execution_mode,
            render_style=args.render_style,
            execution_timeout_s=args.exec_timeout,
        )
        ask = approve if settings.execution_mode == "ask" else None
        return loop(backend, dialogue, session, config, cancel=cancel, approve=ask)

    return run


def build_context(args: argparse.Namespace, backend: Any = None):
    """Load the model (unless `backend` is given) and prepare the per-session kernels."""
    from app.ui import AppContext

    store = open_history_store(args)  # a bad --history-dir fails in one line before the (slow) model load
    if backend is None:
        log.info("loading model %s (backend %s)", args.model or "(default)", args.backend)
        backend = load_backend(args)
    notice = getattr(backend, "notice", "") or ""
    if notice:
        log.warning("%s", notice)
    if args.execution_mode is None:
        args.execution_mode = "auto" if getattr(backend, "speaks_execution_tokens", True) else "always"
    start_kernel, sandbox, pool = make_kernel_starter(args)
    log.info("sandbox: %s (--sandbox %s)", getattr(sandbox, "name", "?"), args.sandbox)
    chats = ChatSessions(
        start_kernel,
        system_prompt=args.system_prompt,
        idle_timeout_s=args.idle_timeout,
        max_sessions=getattr(args, "max_sessions", None),
        max_per_client=getattr(args, "max_sessions_per_client", None),
    )
    scratch = Path(tempfile.mkdtemp(prefix="autocoder-app-"))
    ctx = AppContext(
        chats=chats,
        run_loop=make_loop_runner(backend, args),
        scratch=scratch,
        defaults=Settings(max_rounds=args.max_rounds, execution_mode=args.execution_mode),
        model_name=getattr(backend, "model_id", "") or args.model or "",
        backend_name=getattr(backend, "name", args.backend),
        notice=notice,
        sandbox_name=getattr(sandbox, "name", args.sandbox),
        pool=pool,
        auth_required=bool(_logins(args)),
        retry_temperature=getattr(args, "retry_temperature", 0.7),
    )
    ctx.history = make_history(args, chats, store, ctx.export_meta())
    return ctx, backend


def open_history_store(args: argparse.Namespace):
    """The store of past chats (its folder made or checked now), or None with --no-history."""
    from app.chat_history import ChatStore, default_history_dir

    if getattr(args, "no_history", False):
        log.info("chat history: off (--no-history)")
        return None
    folder = Path(getattr(args, "history_dir", None) or default_history_dir()).expanduser()
    store = ChatStore(folder, getattr(args, "history_max", 50))
    log.info("chat history: %s (last %d chats per browser)", folder, store.max_chats)
    return store


def make_history(args: argparse.Namespace, chats: ChatSessions, store, meta: dict):
    """Browser-held chat ids (signed with the store's key, so they outlive a restart), and the store."""
    from app.chat_history import BrowserIds, ChatHistory

    ids = BrowserIds.in_folder(store.root) if store is not None else BrowserIds.ephemeral()
    history = ChatHistory(chats, ids, store, meta)
    history.exec_timeout_s = args.exec_timeout
    return history


def _logins(args: argparse.Namespace) -> list:
    """The USER:PASSWORD pairs parsed by `app.cli` (auth_users), or --auth alone when built by hand."""
    users = getattr(args, "auth_users", None)
    if users is None:
        users = [args.auth] if getattr(args, "auth", None) else []
    return list(users)


def build_app(ctx, args: argparse.Namespace):
    from app.ui import build_ui

    demo = build_ui(ctx)
    demo.queue(default_concurrency_limit=args.concurrency, max_size=max(16, 8 * args.concurrency))
    return demo


def launch(demo, args: argparse.Namespace, block: bool = True):
    import gradio as gr

    from app.security_headers import middleware
    from app.ui import CSS

    logins = _logins(args)
    if args.host not in ("127.0.0.1", "localhost", "::1") and not logins:
        log.warning(
            "listening on %s without a login (--auth-file): anyone who can reach this port can run code here",
            args.host,
        )
    theme = gr.themes.Default(font=LOCAL_FONTS, font_mono=LOCAL_MONO_FONTS)

    return demo.launch(
        server_name=args.host,
        server_port=args.port,
        share=args.share,
        auth=[(login.user, login.password) for login in logins] or None,
        auth_message="AutoCoder chat: sign in with your user name and password." if logins else None,
        app_kwargs={"middleware": middleware()},
        prevent_thread_lock=not block,
        show_error=True,
        ssr_mode=False,
        mcp_server=False,
        max_file_size="200mb",
        theme=theme,
        css=CSS,
        quiet=True,
    )


def _raise_keyboard_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def check_port_free(host: str, port: int) -> None:
    """Fail in one line before the (slow) model load when the port is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise OSError(
                f"cannot listen on {host}:{port} ({exc.strerror}); pick another with --port"
            ) from None


def serve(args: argparse.Namespace) -> None:
    quiet_gradio_environment()
    check_port_free(args.host, args.port)
    ctx, backend = build_context(args)

    def shutdown() -> None:
        from app.ui import image_folder

        ctx.chats.close_all()
        ctx.pool.close()
        shutil.rmtree(ctx.scratch, ignore_errors=True)
        shutil.rmtree(image_folder(), ignore_errors=True)
        close = getattr(backend, "close", None)
        if close is not None:
            close()

    atexit.register(shutdown)
    # `docker stop` and service managers send SIGTERM: make it the same clean exit as Ctrl-C.
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    ctx.chats.start_reaper()
    demo = build_app(ctx, args)
    try:
        launch(demo, args, block=False)
        print(f"AutoCoder chat on http://{args.host}:{args.port}/ (Ctrl-C to stop)", flush=True)
        demo.block_thread()
    except KeyboardInterrupt:
        pass
    finally:
        log.info("shutting down: closing %d chat(s)", len(ctx.chats))
        shutdown()
