"""Model backends behind one small interface (llm.base.Backend): stream text for a list of messages.

- base.py: the interface, GenerationParams, StreamStats, BackendError.
- select.py: `load_backend(backend="hf"|"openai", model=...)`, and the stand-in fallback policy.
- options.py: the backend's command-line flags and defaults, and the flags-to-backend adapter, for every command.
- models.py: the default model id and the stand-in's facts (one place).
- hf.py / hf_loading.py: local transformers models (bf16/fp16/fp32, bitsandbytes 4/8-bit), KV-cache reuse.
- openai_backend.py: any OpenAI-compatible server (chat or raw completions).
- standin.py: Gemma 3 270M from the PyPI GGUF package, cached as a plain HF folder.
- decoding.py: incremental detokenization and stop-string matching.

Importing this package loads nothing heavy (torch, transformers and openai are imported on use).
"""
