"""How the chat page looks beyond Gradio's defaults: the page's CSS, and the one script it runs on load.

- Code in chat messages wraps instead of running off the bubble's edge (a streamed block is re-rendered on
  every update, which would also reset any horizontal scroll).
- No busy outlines: the answer's progress shows in the chat itself (a "Thinking…" placeholder, the
  running execution's spinner, the Send/Stop button), so Gradio's pending styling stays off the message
  box and the Files panel (the handlers also pass show_progress; this catches what they cannot reach).
- Narrow screens (phones): the side column already wraps below the chat; the chat gets shorter and the
  message row with Send/Stop sticks to the bottom of the screen, so Stop is always in reach.
- The approval box (execution mode "ask") sits right under the chat; `SCROLL_TO_APPROVAL_JS` scrolls it
  into view when it appears, so the code to approve and its Run button are on screen together.

What this module deliberately does not do: style the execution messages themselves (`app.view` owns
their marks and CSS) or build any component (`app.ui`).
"""

from __future__ import annotations

# Element ids used here are set in app.ui: chatbot, prompt-row, send-stop, approval, notice.
PAGE_CSS = """
#notice { border-left: 4px solid #e0a000; padding-left: 0.75em; }
#approval { border: 2px solid #e0a000; }

/* Long code lines wrap (in the streamed "writing" message, execution messages and plain replies). */
#chatbot pre, #chatbot pre code {
  white-space: pre-wrap !important;
  overflow-wrap: anywhere;
  word-break: break-word;
}

/* Gradio marks a component that an event is updating with an orange outline; the chat shows busy itself. */
#prompt.generating, #prompt .generating, #files .generating, #workdir-files.generating,
#workdir-files .generating, #upload.generating, #upload .generating {
  border-color: transparent !important;
  box-shadow: none !important;
}

#send-stop { min-width: 5.5em; }

@media (max-width: 640px) {
  #chatbot { height: 55vh !important; max-height: 55vh !important; }
  #prompt-row {
    position: sticky;
    bottom: 0;
    z-index: 20;
    background: var(--body-background-fill);
    padding: 4px 0;
    flex-wrap: nowrap !important;
  }
  #prompt-row > * { min-width: 0 !important; }
  #send-stop { flex: 0 0 auto !important; }
  #actions-row { flex-wrap: nowrap !important; }
  #actions-row > * { min-width: 0 !important; }
}
"""

# Runs once per page load (`demo.load(None, js=...)`): when the approval box becomes visible, bring it on
# screen; a MutationObserver because the box is shown by a streamed update, not by an event of its own.
# Whether it is visible is read at the next frame, once per frame: reading it (offsetParent) lays the page
# out, and done in the observer it forced a layout on every streamed update before the text could show.
SCROLL_TO_APPROVAL_JS = """
() => {
  let shown = false;
  let queued = false;
  const check = () => {
    queued = false;
    const box = document.querySelector('#approval');
    const visible = !!box && box.offsetParent !== null;
    if (visible && !shown) {
      box.scrollIntoView({block: 'nearest', behavior: 'smooth'});
    }
    shown = visible;
  };
  new MutationObserver(() => {
    if (!queued) {
      queued = true;
      requestAnimationFrame(check);
    }
  }).observe(document.body, {subtree: true, childList: true, attributes: true, attributeFilter: ['class', 'style']});
}
"""
