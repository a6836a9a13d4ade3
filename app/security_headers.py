"""Security headers on every HTTP response of the chat server: a Content-Security-Policy above all.

The page's policy lets it load and contact only this server: images from 'self', data: and blob: (the
inline plots are files this server serves), no remote origin anywhere, so even markup that slipped past
`app.safe_markdown` cannot make the browser fetch another site's URL. Scripts and styles need
'unsafe-inline' (and scripts 'unsafe-eval'): Gradio's page puts its configuration in an inline script.

Files the server hands out (`/file=` routes: workdir downloads, plots, exports) get a stricter policy
with `sandbox`: a sandbox-written .html or .svg opened in a tab runs no script and has no access to the
chat's origin.

It is plain ASGI middleware (not Starlette's BaseHTTPMiddleware, which buffers streamed responses), given
to Gradio's FastAPI app through `launch(app_kwargs={"middleware": ...})`.

What this module deliberately does not do: decide who may call what (see `app.auth`).
"""

from __future__ import annotations

PAGE_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self' 'unsafe-inline' 'unsafe-eval'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data: blob:",
        "media-src 'self' data: blob:",
        "font-src 'self' data:",
        "connect-src 'self'",
        "worker-src 'self' blob:",
        "frame-src 'self'",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'self'",
    ]
)
FILE_POLICY = "default-src 'none'; img-src 'self' data:; media-src 'self'; style-src 'unsafe-inline'; sandbox"


def policy_for(path: str) -> str:
    return FILE_POLICY if "/file=" in path else PAGE_POLICY


class SecurityHeaders:
    """ASGI middleware: sets the policy (replacing any other) and nosniff on every HTTP response."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        policy = policy_for(scope.get("path", "")).encode()

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                headers = [
                    (name, value)
                    for name, value in message.get("headers", [])
                    if name.lower() not in (b"content-security-policy", b"x-content-type-options")
                ]
                headers += [(b"content-security-policy", policy), (b"x-content-type-options", b"nosniff")]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def middleware() -> list:
    """What `gr.Blocks.launch(app_kwargs={"middleware": ...})` takes."""
    from starlette.middleware import Middleware

    return [Middleware(SecurityHeaders)]
