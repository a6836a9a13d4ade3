"""How the chat page looks beyond Gradio's defaults: the page's CSS, and the one script it runs on load.

- Code in chat messages wraps instead of running off the bubble's edge (a streamed block is re-rendered on
  every update, which would also reset any horizontal scroll).
- No busy outlines: the answer's progress shows in the chat itself (a "Thinking…" placeholder, the
  running execution's spinner, the Send/Stop button), so Gradio's pending styling stays off the message
  box and the Files panel (the handlers also pass show_progress; this catches what they cannot reach).
- Narrow screens (phones): the side column already wraps below the chat; the chat gets shorter and the
  message row with Send/Stop sticks to the bottom of the screen, so Stop is always in reach.
- The approval box (execution mode "ask") sits right under the chat; `PAGE_JS` scrolls it into view when
  it appears, so the code to approve and its Run button are on screen together.
- The chat follows a growing answer while the reader is at its bottom (`PAGE_JS`, in place of Gradio's
  autoscroll, which laid the page out inside every streamed update).

What this module deliberately does not do: style the execution messages themselves (`app.view` owns
their marks and CSS) or build any component (`app.ui`).
"""

from __future__ import annotations

from typing import Any

# Handlers whose outputs should not get Gradio's spinner, orange outline or red "Error" pill: every event
# but the answers (those show their progress, and their queue place, in the chat's corner only). No
# progress targets at all (`show_progress_on=[]`), not only hidden ones: the page keeps a loading status
# for every component that was ever a target, and on every streamed message of any event it refreshes
# them all, copying each one's value (the chat's whole history included) before the message can show.
QUIET: dict[str, Any] = {"show_progress": "hidden", "show_progress_on": []}

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

# Runs once per page load (`demo.load(None, js=...)`). Both jobs read the layout, so both run once per frame
# (requestAnimationFrame, queued by one MutationObserver), when the browser lays the page out anyway:
# - the approval box: when it becomes visible (a streamed update shows it, not an event of its own), bring
#   it on screen. Done in the observer, reading `offsetParent` forced a layout on every streamed update
#   before its text could show;
# - following the answer: while the reader is at the bottom of the chat (within 100 px, as Gradio's own
#   autoscroll), the chat stays scrolled to the bottom as the answer grows; scrolling up stops it, scrolling
#   back down or sending a message resumes it. Gradio's autoscroll (off in app.ui) read offsetHeight inside
#   every update, a forced layout of the whole page (3-10 ms here) before each streamed output could show.
PAGE_JS = """
() => {
  const FOLLOW_MARGIN_PX = 100;
  let follow = true;
  let lastTop = 0;
  let approvalShown = false;
  let queued = false;
  const atBottom = (el) => el.scrollTop + el.clientHeight >= el.scrollHeight - FOLLOW_MARGIN_PX;
  // Scroll events do not bubble: listen in the capture phase for the chat's scroller, whenever it exists.
  // Only a move up stops following: a scroll event can arrive after the answer grew again, and by then the
  // position this script scrolled to may be far from the new bottom.
  document.addEventListener('scroll', (event) => {
    const el = event.target;
    if (!(el instanceof Element) || !el.matches('#chatbot .bubble-wrap')) return;
    if (atBottom(el)) follow = true;
    else if (el.scrollTop < lastTop - 1) follow = false;
    lastTop = el.scrollTop;
  }, true);
  // Sending a message (Enter in the message box, or the Send button) means reading its answer: follow again.
  document.addEventListener('keydown', (event) => {
    const el = event.target;
    if (event.key === 'Enter' && !event.shiftKey && el instanceof Element && el.closest('#prompt')) follow = true;
  }, true);
  document.addEventListener('click', (event) => {
    if (event.target instanceof Element && event.target.closest('#send-stop')) follow = true;
  }, true);
  const frame = () => {
    queued = false;
    const box = document.querySelector('#approval');
    const visible = !!box && box.offsetParent !== null;
    if (visible && !approvalShown) box.scrollIntoView({block: 'nearest', behavior: 'smooth'});
    approvalShown = visible;
    const scroller = follow && document.querySelector('#chatbot .bubble-wrap');
    if (scroller && scroller.scrollTop + scroller.clientHeight < scroller.scrollHeight - 1) {
      scroller.scrollTop = scroller.scrollHeight;
    }
  };
  new MutationObserver(() => {
    if (!queued) {
      queued = true;
      requestAnimationFrame(frame);
    }
  }).observe(document.body, {
    subtree: true, childList: true, characterData: true, attributes: true, attributeFilter: ['class', 'style'],
  });
}
"""
