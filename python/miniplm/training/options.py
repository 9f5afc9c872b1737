"""``TrainOptions``: every setting of ``miniplm train``, its default and its help, in one
place; ``miniplm train``'s parser is derived from it (``miniplm._argv``). Light to import:
the CLI builds its parser without torch."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from miniplm._argv import DATA_HELP, cli
from miniplm.errors import InputError
from miniplm.training.presets import ARCHS, PRESET_NAMES, refuse_custom_code

DEFAULT_CHUNK = 1024
"""Positions per output-head chunk of the loss (``--loss-chunk``)."""

GROUPS = ("model", "data", "optimisation", "runtime", "Vanilla KD baseline")
_M, _D, _O, _R, _K = GROUPS


@dataclass
class TrainOptions:
    data: str = field(metadata=cli(f"token dataset: {DATA_HELP}", group=_D))
    out: str = field(metadata=cli("run directory", group=_R))
    selection: str | None = field(
        default=None,
        metadata=cli("train on a selection (SELDIR with ids.npy), no copy", group=_D),
    )
    preset: str | None = field(
        default=None,
        metadata=cli(
            "paper sizes or tiny CPU sizes (mamba: tiny, mini, small, 130M)",
            group=_M,
            choices=PRESET_NAMES,
        ),
    )
    model_config: str | None = field(
        default=None, metadata=cli("HF config (json file or model directory)", group=_M)
    )
    init_from: str | None = field(
        default=None, metadata=cli("continue from an HF model directory", group=_M)
    )
    arch: str = field(
        default="qwen2",
        metadata=cli("family of --preset (%(default)s)", group=_M, choices=ARCHS),
    )
    vocab_size: int | None = field(
        default=None, metadata=cli("default: the corpus tokenizer's", group=_M)
    )
    seq_len: int = field(default=1024, metadata=cli("L: instances of L+1 tokens", group=_D))
    epochs: float | None = field(
        default=None, metadata=cli("passes over the (selected) data", group=_D)
    )
    max_steps: int | None = field(
        default=None, metadata=cli("optimizer steps (instead of --epochs)", group=_D)
    )
    shuffle: bool = field(
        default=True,
        metadata=cli("corpus order (the paper's no-shuffle mode)", flag="--no-shuffle", group=_D),
    )
    seed: int = field(
        default=0, metadata=cli("seed of the initialisation and the data order", group=_D)
    )
    lr: float = field(default=6e-4, metadata=cli("peak learning rate (%(default)s)", group=_O))
    min_lr_ratio: float = field(default=0.1, metadata=cli("final lr / lr (%(default)s)", group=_O))
    warmup_steps: int = field(
        default=2000, metadata=cli("linear warmup steps (%(default)s)", group=_O)
    )
    weight_decay: float = field(
        default=0.01, metadata=cli("AdamW weight decay of matrices (%(default)s)", group=_O)
    )
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-6
    clip: float = field(default=1.0, metadata=cli("gradient norm clip", group=_O))
    micro_batch_size: int = field(default=8, metadata=cli("instances per rank step", group=_O))
    global_batch_size: int = field(
        default=512,
        metadata=cli("instances per optimizer step (gradient accumulation is derived)", group=_O),
    )
    device: str = field(default="auto", metadata=cli("cuda or cpu (auto)", group=_R))
    compile: bool = field(default=False, metadata=cli("torch.compile the model", group=_R))
    grad_checkpointing: bool = field(
        default=False,
        metadata=cli("activation checkpointing (less memory, ~30%% more compute)", group=_R),
    )
    fsdp: bool = field(default=False, metadata=cli("FSDP2 sharding under torchrun", group=_R))
    loss_chunk: int = field(
        default=DEFAULT_CHUNK,
        metadata=cli("positions per output-head chunk of the loss", group=_O),
    )
    save_every: int = field(default=1000, metadata=cli("checkpoint every N steps", group=_R))
    keep_checkpoints: int = field(
        default=2, metadata=cli("newest checkpoints kept (%(default)s)", group=_R)
    )
    log_every: int = field(
        default=10, metadata=cli("metrics.jsonl line every N steps (%(default)s)", group=_R)
    )
    resume: bool = field(default=False, metadata=cli("continue from the last checkpoint", group=_R))
    overwrite: bool = field(default=False, metadata=cli("replace an existing --out", group=_R))
    kd_teacher: str | None = field(
        default=None, metadata=cli("teacher model (same tokenizer) for online KD", group=_K)
    )
    kd_ratio: float = field(
        default=0.5,
        metadata=cli("loss = (1 - r) CE + r CE(p_teacher, q_student) (%(default)s)", group=_K),
    )
    allow_tokenizer_mismatch: bool = field(
        default=False,
        metadata=cli(
            "train even if --init-from / --kd-teacher has no tokenizer or another one "
            "than the dataset's",
            group=_M,
        ),
    )
    tensorboard: bool = field(default=False, metadata=cli("also log to OUT/tensorboard", group=_R))
    # None: a progress bar when stderr is a terminal.
    progress: bool | None = field(
        default=None, metadata=cli("no progress bar", flag="--quiet", group=_R)
    )
    extra: dict[str, Any] = field(default_factory=dict)

    def check(self) -> None:
        if (self.preset is None) + (self.model_config is None) + (self.init_from is None) != 2:
            raise InputError("give exactly one of --preset, --model-config, --init-from")
        for flag, path in (("--init-from", self.init_from), ("--model-config", self.model_config)):
            if path is not None:
                refuse_custom_code(path, flag)
        if (self.epochs is None) == (self.max_steps is None):
            raise InputError("give exactly one of --epochs and --max-steps")
        if self.max_steps is not None and self.max_steps < 1:
            raise InputError("--max-steps must be at least 1")
        if self.epochs is not None and self.epochs <= 0:
            raise InputError("--epochs must be positive")
        for name in (
            "seq_len",
            "micro_batch_size",
            "global_batch_size",
            "save_every",
            "log_every",
            "loss_chunk",
        ):
            if getattr(self, name) < 1:
                raise InputError(f"--{name.replace('_', '-')} must be at least 1")
        if not 0.0 <= self.kd_ratio <= 1.0:
            raise InputError("--kd-ratio must lie in [0, 1]")
        if self.lr <= 0 or self.warmup_steps < 0:
            raise InputError("--lr must be positive and --warmup-steps >= 0")
