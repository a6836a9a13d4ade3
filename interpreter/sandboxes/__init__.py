"""Where a kernel runs: docker (container per session), local (bubblewrap), none (unsandboxed, dev only)."""
