"""``miniplm export``: a tokenized corpus or selection -> its source text (see
miniplm.corpus.export)."""

from __future__ import annotations

import argparse
from typing import Any

from miniplm.corpus import add_resume_arguments


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "export",
        help="corpus / selection -> its source text (parquet, jsonl) for any tokenizer",
        description="Write the original text of every instance of a corpus written by "
        "`miniplm tokenize` (or of the instances a selection keeps), byte for byte, one row "
        "per document piece in corpus order: columns id, source, text (+ r, nll_teacher, "
        "nll_reference when the selection came from score runs). The format follows OUT's "
        "suffix: .parquet, .jsonl, .jsonl.gz, .jsonl.zst. OUT is built in .OUT.partial, "
        "checkpointed every --checkpoint-every seconds: after a kill the same command "
        "continues it. Re-tokenize it for another "
        "student with `miniplm tokenize OUT --source-field source --tokenizer OTHER`.",
    )
    p.add_argument("--data", required=True, help="dataset directory written by miniplm tokenize")
    p.add_argument("--selection", default=None, help="selection directory (default: everything)")
    p.add_argument("--out", required=True, help="output file (.parquet, .jsonl[.gz|.zst])")
    p.add_argument(
        "--no-scores",
        dest="scores",
        action="store_false",
        help="leave out the r / nll_teacher / nll_reference columns of a selection made from "
        "score runs (they are read from those runs, which must be unchanged since)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUT")
    add_resume_arguments(p, "chunk")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from miniplm.corpus.export import export

    info = export(
        args.data,
        args.out,
        args.selection,
        overwrite=args.overwrite,
        progress=False if args.quiet else None,
        scores=args.scores,
        resume=args.resume,
        checkpoint_every=args.checkpoint_every,
    )
    print(
        f"exported {info['instances']:,} instances as {info['rows']:,} rows "
        f"({info['bytes']:,} bytes of text) in {info['elapsed_s']:.1f} s -> {args.out}"
    )
    return 0
