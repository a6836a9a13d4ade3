"""Supervised fine-tuning of AutoCoder on dialogue records, with the execution tokens (`python -m training`).

Modules: `config` (settings, YAML + flags), `data` (dialogue sources), `templates` (shipped chat
templates), `tokens` (the execution tokens and their embedding rows), `encode` (a dialogue -> ids and
labels, rendered as at inference), `batching` (padding, packing), `progress` (log lines), `sft` (the run),
`merge` (adapter -> full model), `show` (the `render` command), `cli`.

Libraries, and why each instead of our own code:
- transformers `Trainer`: the training loop, gradient accumulation, mixed precision, checkpoints with
  optimizer/scheduler/RNG state (exact resume), distributed launch integration. No hand-written loop.
  (TRL's SFTTrainer was not needed: its value is chat rendering and masking, which must here be the
  chat's own renderer, checked token by token against the inference path.)
- `datasets`: reading saved and hub datasets, the Trainer's dataset, and the multi-process map that
  encodes records with --num-proc.
- DeepSpeed (through the Trainer's accelerate integration): ZeRO stage 3 sharding of parameters,
  gradients and optimizer state across GPUs and nodes, as the paper trained; `deepspeed.zero` to edit
  partitioned embedding rows.
- accelerate: the process group and device placement under deepspeed/torchrun/accelerate launch/srun.
- peft: LoRA adapters and merging them back; bitsandbytes: the 4-bit nf4 base of QLoRA.

What the package deliberately does not do: produce the dialogues (data_pipeline), serve or evaluate the
model (app, evaluation), or spell the execution tokens (interpreter.protocol).
"""
