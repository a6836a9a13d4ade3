"""The browser chat: `python -m app` (see app/README.md).

Modules: `cli` (flags), `server` (wiring and serving), `ui` (the Gradio page and the `/chat` API),
`page_style` (the page's CSS and load script),
`chat` (one chat per browser session: kernel, dialogue, the loop run for a message), `view` (loop events
to chat messages), `export` (notebook and dialogue record), `files` (workdir upload/download).
Importing the package does nothing; Gradio is imported only when the page is built.
"""
