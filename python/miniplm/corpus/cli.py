"""``miniplm tokenize``: text corpus -> packed token shards (see miniplm.corpus.tokenize)."""

from __future__ import annotations

import argparse
import os
from typing import Any

from miniplm.corpus import MAX_SOURCES, add_resume_arguments


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "tokenize",
        help="text corpus -> packed token shards",
        description="Tokenize documents (jsonl[.gz|.zst], parquet, Arrow, txt, Hugging Face "
        "`datasets` directories saved with save_to_disk; files, directories or globs), append "
        "an EOS to each, and pack each source's token stream into instances of at most "
        "--seq-len + 1 tokens, written as Megatron shards with sources.npy, tokenizer.json "
        "and tokenize.json in OUT. --reference-fraction also draws the reference model's "
        "training slice (ref_ids.npy). OUT is built in .OUT.partial, checkpointed every "
        "--checkpoint-every seconds: after a kill the same command continues it.",
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="files, directories or globs")
    p.add_argument("--out", required=True, help="output dataset directory")
    p.add_argument(
        "--tokenizer",
        required=True,
        help="Hugging Face tokenizer directory, tokenizer.json, or .gguf file",
    )
    p.add_argument("--seq-len", type=int, default=1024, help="L: instances hold <= L+1 tokens")
    p.add_argument(
        "--packing",
        choices=["boundary", "fixed"],
        default="boundary",
        help="boundary (default): cut each L+1 window back to its last EOS, else newline, "
        "else sentence end; fixed: plain L+1 pieces. Sources are never mixed.",
    )
    p.add_argument("--text-field", default="text", help="document text field (text)")
    p.add_argument(
        "--source-field",
        default=None,
        help="per-document source field (dotted for nested, e.g. meta.pile_set_name)",
    )
    p.add_argument(
        "--source",
        action="append",
        default=None,
        metavar="NAME",
        help="source name of each input, in order (default: file stem / directory name)",
    )
    p.add_argument(
        "--max-sources",
        type=int,
        default=MAX_SOURCES,
        metavar="N",
        help=f"the most distinct sources ({MAX_SOURCES}): each is packed apart and holds up "
        "to L+1 tokens in memory until the end, so a per-document field fails early",
    )
    p.add_argument(
        "--text-split",
        choices=["document", "lines", "blank-lines"],
        default="document",
        help=".txt files: one document per file (default), per line, or per blank-line "
        "separated block",
    )
    eos = p.add_mutually_exclusive_group()
    eos.add_argument("--eos-id", type=int, default=None, help="EOS id (default: the tokenizer's)")
    eos.add_argument(
        "--eos-token",
        default=None,
        metavar="TEXT",
        help="EOS by its text, e.g. '<|endoftext|>' (default: the tokenizer's eos_token)",
    )
    p.add_argument("--shard-size", default=None, help="largest .bin per shard, e.g. 500M, 1G")
    p.add_argument(
        "--reference-fraction",
        type=float,
        default=None,
        metavar="F",
        help="also draw floor(F x instances) uniform random ids as ref_ids.npy (D_ref)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the reference draw (0)")
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help=f"encoding processes (default min(cpus, 8) = {min(os.cpu_count() or 1, 8)})",
    )
    p.add_argument("--batch-docs", type=int, default=1000, help="documents per batch (1000)")
    p.add_argument("--min-tokens", type=int, default=2, help="drop instances shorter than this (2)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUT")
    add_resume_arguments(p, "batch")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from miniplm.corpus.tokenize import tokenize_corpus

    meta = tokenize_corpus(
        args.inputs,
        args.out,
        args.tokenizer,
        seq_len=args.seq_len,
        packing=args.packing,
        text_field=args.text_field,
        source_field=args.source_field,
        sources=args.source,
        shard_size=args.shard_size,
        reference_fraction=args.reference_fraction,
        seed=args.seed,
        workers=args.workers,
        batch_docs=args.batch_docs,
        min_tokens=args.min_tokens,
        overwrite=args.overwrite,
        progress=False if args.quiet else None,
        eos_id=args.eos_id,
        eos_token=args.eos_token,
        text_split=args.text_split,
        resume=args.resume,
        checkpoint_every=args.checkpoint_every,
        max_sources=args.max_sources,
    )
    c = meta["counts"]
    ref = "" if meta["reference_instances"] is None else f", {meta['reference_instances']} in D_ref"
    print(
        f"tokenized {c['documents']:,} documents from {len(meta['sources'])} source(s) into "
        f"{c['instances']:,} instances ({c['tokens']:,} tokens, {c['dropped_short']} "
        f"dropped short{ref}) in {meta['elapsed_s']:.1f} s "
        f"({meta['tokens_per_s'] or 0:,.0f} tok/s) -> {args.out}"
    )
    return 0
