"""``miniplm eval``: held-out loss, local multiple choice and lm-eval tasks for one model."""

from __future__ import annotations

import argparse
from typing import Any

from miniplm._argv import DATA_HELP
from miniplm.scoring.cli import add_device_options


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "eval",
        help="evaluate a model: held-out NLL / perplexity, zero-shot multiple choice, lm-eval",
        description="Evaluate one causal LM. --data: token-weighted mean NLL and perplexity "
        "of held-out token shards, scored as `miniplm score` does (positions whose input "
        "token is the pad/EOS id are not scored). --texts: nats per token and bits per "
        "byte of whole documents, with standard errors over documents. --mc-file: "
        "zero-shot multiple choice from jsonl lines "
        '{"context": str, "choices": [str, ...], "label": int}, acc and acc_norm '
        "computed like lm-evaluation-harness. --tasks: lm-evaluation-harness "
        "tasks run in-process (pip install 'miniplm[eval]'). The average is over tasks, "
        "acc_norm where a task reports it, else acc (as in the MiniPLM paper).",
    )
    p.add_argument("--model", required=True, help="Hugging Face model directory or .gguf file")
    p.add_argument(
        "--tokenizer",
        help="tokenizer for text tasks (directory, tokenizer.json or .gguf; default: the "
        "model's own, else the tokenizer.json beside --data)",
    )
    d = p.add_argument_group("held-out loss")
    d.add_argument("--data", help=f"held-out token dataset: {DATA_HELP}")
    d.add_argument("--selection", help="only the instances of a selection (SELDIR)")
    d.add_argument("--max-instances", type=int, help="only the first N instances")
    d.add_argument(
        "--by-source",
        action="store_true",
        help="also the figures per source, from the same pass (a corpus written by "
        "`miniplm tokenize`: its sources.npy)",
    )
    d.add_argument(
        "--allow-tokenizer-mismatch",
        action="store_true",
        help="evaluate even if the model's tokenizer differs from the dataset's, or it has none",
    )
    d.add_argument(
        "--ignore-id",
        type=int,
        default=None,
        help="input token id whose positions are not scored (default as in `miniplm "
        "score`: the tokenizer's pad id, else the config's pad_token_id, else "
        "eos_token_id; -1 scores every position)",
    )
    x = p.add_argument_group("loss on a text set")
    x.add_argument(
        "--texts",
        metavar="FILE",
        help="documents (jsonl with a 'text' field, parquet, .txt, ...: as `miniplm "
        "tokenize` reads them) scored whole, in windows of the model's length (or "
        "--seq-len), with the model's tokenizer: nats per token and bits per byte",
    )
    x.add_argument(
        "--texts-group",
        metavar="FIELD",
        help="also break the text loss down by this field of each document (e.g. work)",
    )
    t = p.add_argument_group("tasks")
    t.add_argument(
        "--mc-file",
        action="append",
        default=[],
        metavar="F.jsonl",
        help="local multiple-choice jsonl file; repeatable",
    )
    t.add_argument(
        "--tasks",
        action="append",
        default=[],
        metavar="T1,T2",
        help="lm-evaluation-harness tasks, comma separated (e.g. hellaswag,arc_easy)",
    )
    t.add_argument("--include-path", help="directory of extra lm-eval task YAMLs")
    t.add_argument("--num-fewshot", type=int, default=0, help="lm-eval few-shot examples (0)")
    t.add_argument(
        "--limit",
        type=float,
        help="documents per task, lm-eval's tasks and --mc-file alike (< 1: a fraction; testing)",
    )
    r = p.add_argument_group("runtime")
    r.add_argument("--batch-size", type=int, default=16, help="sequences per forward (16)")
    add_device_options(r)
    r.add_argument(
        "--seq-len",
        type=int,
        help="L: cut held-out instances to L+1 tokens; context window of the text tasks "
        "(default: the model's)",
    )
    r.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="allow model code from the model directory (off by default)",
    )
    r.add_argument("--out", help="write the results to this JSON file (atomically)")
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from miniplm.evaluation import evaluate
    from miniplm.evaluation.report import format_table

    limit: float | int | None = args.limit
    if limit is not None and limit >= 1:
        limit = int(limit)
    results = evaluate(
        args.model,
        data=args.data,
        texts=args.texts,
        texts_group=args.texts_group,
        mc_files=args.mc_file,
        tasks=args.tasks,
        include_path=args.include_path,
        batch_size=args.batch_size,
        device=args.device,
        dtype=args.dtype,
        max_instances=args.max_instances,
        by_source=args.by_source,
        seq_len=args.seq_len,
        selection=args.selection,
        tokenizer=args.tokenizer,
        num_fewshot=args.num_fewshot,
        limit=limit,
        ignore_id=args.ignore_id,
        trust_remote_code=args.trust_remote_code,
        allow_tokenizer_mismatch=args.allow_tokenizer_mismatch,
        out=args.out,
        progress=False if args.quiet else None,  # None: a bar when stderr is a terminal
    )
    print(format_table(results))
    if args.out:
        print(f"results -> {args.out}")
    return 0
