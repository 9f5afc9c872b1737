"""``ScoreOptions``: every setting of ``miniplm score``, its default and its help, in one
place; the parser is derived from it (``miniplm._argv``). Light to import: the CLI
builds its parser without torch."""

from __future__ import annotations

from dataclasses import dataclass, field

from miniplm._argv import cli
from miniplm.errors import InputError


@dataclass
class ScoreOptions:
    batch_size: int = field(default=16, metadata=cli("instances per batch (%(default)s)"))
    part_size: int = field(default=1 << 16, metadata=cli("instances per part file (%(default)s)"))
    device: str = field(default="auto", metadata=cli("cuda, cuda:N or cpu (auto: cuda if any)"))
    dtype: str = field(
        default="auto",
        metadata=cli(
            "model dtype (auto: bfloat16 on GPU, float32 on CPU)",
            choices=["auto", "float32", "bfloat16", "float16"],
        ),
    )
    ignore_id: int | None = field(
        default=None,
        metadata=cli(
            "input token id whose positions are not scored (default: the pad id "
            "of the tokenizer, else the config's pad_token_id, else eos_token_id; "
            "-1 scores every position)"
        ),
    )
    chunk_tokens: int | None = field(
        default=None,
        metadata=cli("positions per output-head chunk (default: ~256 MiB of fp32 logits)"),
    )
    checkpoint_interval: float = field(
        default=300.0,
        metadata=cli("seconds between in-part checkpoints (%(default)g; 0: after every batch)"),
    )
    trust_remote_code: bool = field(
        default=False, metadata=cli("allow model code from the model directory (off by default)")
    )
    allow_tokenizer_mismatch: bool = field(
        default=False,
        metadata=cli(
            "score even if the model's tokenizer differs from the dataset's, or it has none"
        ),
    )
    attn_implementation: str | None = field(
        default=None,
        metadata=cli("transformers attention backend (sdpa, flash_attention_2, eager)"),
    )
    skip_ids: str | None = field(  # .npy of instance ids left unscored (n_scored 0)
        default=None,
        metadata=cli(
            "instance ids not to score (n_scored 0, so never selected): e.g. the reference "
            "model's training slice D_ref, which selection excludes anyway",
            metavar="IDS.npy",
        ),
    )
    overwrite: bool = field(default=False, metadata=cli("replace existing runs"))
    # None: a progress bar when stderr is a terminal.
    progress: bool | None = field(default=None, metadata=cli("no progress bar", flag="--quiet"))

    def check(self) -> None:
        for name in ("batch_size", "part_size"):
            if getattr(self, name) < 1:
                raise InputError(f"--{name.replace('_', '-')} must be at least 1")
        if self.chunk_tokens is not None and self.chunk_tokens < 1:
            raise InputError("--chunk-tokens must be at least 1")
        if self.checkpoint_interval < 0:
            raise InputError("--checkpoint-interval must be >= 0 seconds")
