"""`python -m training sft|render|merge` (see training.cli)."""

import logging
import os
import sys

from training.cli import main


def _exit(code: int) -> None:
    """Exit; a rank of a distributed run skips the interpreter's teardown.

    Why: even after the process group is destroyed (training.sft._leave_process_group), a rank's native
    threads (gloo, DeepSpeed) can still be joinable when C++ static destructors run at exit, and the rank
    then aborts ("terminate called without an active exception"), failing a job whose work is done and
    saved. Everything is written by the time `main` returns, so the outputs are flushed and the process
    ends without that teardown."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    _exit(main())
