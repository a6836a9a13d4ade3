"""AutoCoder's token protocol: special tokens, block detection, result and dialogue rendering.

(Skeleton: the token constants are final; detection and rendering are being implemented.)

The released AutoCoder checkpoints ask for execution with RUN_START ```lang ... ``` RUN_STOP. The paper
adds four special tokens; only those two are public. The other two are this project's own, used to wrap
interpreter output in our training data (the released checkpoints get output as a plain user turn in the
original demo's `result.stdout:` format instead). This module is the only place that spells them.
"""

RUN_START = "<API_RUN_START>"
RUN_STOP = "<API_RUN_STOP>"
OUTPUT_START = "<API_OUTPUT_START>"
OUTPUT_STOP = "<API_OUTPUT_STOP>"

SPECIAL_TOKENS = (RUN_START, RUN_STOP, OUTPUT_START, OUTPUT_STOP)
