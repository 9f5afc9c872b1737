"""`miniplm eval`: held-out NLL equal to a plain float64 computation, the built-in
multiple-choice evaluator equal to a by-hand float64 computation (acc and acc_norm, which
disagree on some documents), batch-size invariance, agreement with lm-evaluation-harness
on a local task, clear errors for bad jsonl files, and the CLI end to end."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerFast

import miniplm
from miniplm._deps import MissingDependency
from miniplm.cli import main
from miniplm.errors import FormatError, InputError
from miniplm.evaluation import evaluate
from miniplm.evaluation.model import load_eval_model
from miniplm.evaluation.multiple_choice import limited, load_mc_file, mc_metrics, score_docs

from tiny_lm import EOS, make_dataset, make_model, reference_scores

BOS = 1
WORDS = [f"w{i}" for i in range(90)]  # ids 4 .. 93, all inside the model's 97


def _word_vocab() -> dict[str, int]:
    vocab = {"<pad>": 0, "<s>": BOS, "<unk>": 2, "</s>": EOS}
    for w in WORDS:
        vocab[w] = len(vocab)
    return vocab


def _save_tokenizer(model_dir: Path) -> None:
    """A word-level tokenizer (whitespace split, no special tokens added on encode)."""
    tok = Tokenizer(models.WordLevel(_word_vocab(), unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.decoder = decoders.WordPiece()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )
    fast.save_pretrained(model_dir)


def _mc_docs(seed: int = 3, n: int = 16) -> list[dict[str, Any]]:
    """Contexts of 0-5 words, 2-4 choices of 1-5 words each (so character lengths vary
    a lot and acc_norm can disagree with acc). One context has a trailing space, which
    lm-eval moves to the continuation; one is empty (scored after BOS)."""
    rng = np.random.default_rng(seed)

    def words(k: int) -> str:
        return " ".join(WORDS[int(i)] for i in rng.integers(0, len(WORDS), k))

    docs = []
    for j in range(n):
        ctx = words(int(rng.integers(1, 6)))
        k = int(rng.integers(2, 5))
        choices: list[str] = []
        while len(choices) < k:  # distinct choices: no exact ties
            c = " " + words(int(rng.integers(1, 6)))
            if c not in choices:
                choices.append(c)
        if j == 0:
            ctx, choices = "", [c.lstrip() for c in choices]
        if j == 1:
            ctx, choices = ctx + " ", [c.lstrip() for c in choices]
        docs.append({"context": ctx, "choices": choices, "label": int(rng.integers(len(choices)))})
    return docs


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("eval")
    model = make_model(root / "model", "llama", seed=1)
    _save_tokenizer(model)
    seqs = make_dataset(root / "data", n=24, max_len=30, seed=2)
    docs = _mc_docs()
    mc = root / "eval_tiny.jsonl"
    mc.write_text("".join(json.dumps(d) + "\n" for d in docs))
    return {
        "root": root,
        "model": model,
        "data": root / "data",
        "seqs": seqs,
        "docs": docs,
        "mc": mc,
    }


def _hand_loglikelihoods(model_dir: Path, docs: list[dict[str, Any]]) -> list[np.ndarray]:
    """Whole model in float64, full log-softmax, each (context, choice) alone; tokens by
    splitting words (an empty context is the BOS token)."""
    vocab = _word_vocab()
    model = AutoModelForCausalLM.from_pretrained(model_dir).double().eval()
    out = []
    with torch.no_grad():
        for d in docs:
            ctx = [vocab[w] for w in d["context"].split()] or [BOS]
            lls = []
            for c in d["choices"]:
                cont = [vocab[w] for w in c.split()]
                x = torch.tensor([ctx + cont])
                logp = torch.log_softmax(model(x).logits[0], -1)
                pos = torch.arange(len(ctx) - 1, len(ctx) + len(cont) - 1)
                lls.append(float(logp[pos, torch.tensor(cont)].sum()))
            out.append(np.array(lls))
    return out


def test_heldout_equals_plain_float64_computation(tiny: dict[str, Any]) -> None:
    want_nll, want_cnt = reference_scores(tiny["model"], tiny["seqs"], ignore_id=EOS)
    r = evaluate(tiny["model"], data=tiny["data"], device="cpu", batch_size=5)["heldout"]
    assert r["instances"] == len(tiny["seqs"])
    assert r["tokens"] == sum(len(s) for s in tiny["seqs"])
    assert r["scored_tokens"] == int(want_cnt.sum()) > 100
    assert r["ignore_id"] == EOS
    mean = want_nll.sum() / want_cnt.sum()
    assert r["mean_nll"] == pytest.approx(mean, rel=1e-5)
    assert r["perplexity"] == pytest.approx(math.exp(r["mean_nll"]), rel=1e-12)
    assert r["nll_sum"] == pytest.approx(want_nll.sum(), rel=1e-5)


def test_heldout_selection_max_instances_and_seq_len(tiny: dict[str, Any]) -> None:
    sel = tiny["root"] / "sel"
    sel.mkdir(exist_ok=True)
    ids = np.array([1, 4, 5, 9, 13, 20], dtype=np.uint64)
    np.save(sel / "ids.npy", ids)
    (sel / "selection.json").write_text('{"format": "miniplm.selection"}')
    r = evaluate(
        tiny["model"],
        data=tiny["data"],
        selection=sel,
        max_instances=4,
        seq_len=9,
        device="cpu",
        batch_size=3,
    )["heldout"]
    kept = [tiny["seqs"][int(i)][:10] for i in ids[:4]]
    want_nll, want_cnt = reference_scores(tiny["model"], kept, ignore_id=EOS)
    assert r["instances"] == 4 and r["tokens"] == sum(len(s) for s in kept)
    assert r["scored_tokens"] == int(want_cnt.sum())
    assert r["mean_nll"] == pytest.approx(want_nll.sum() / want_cnt.sum(), rel=1e-5)


def _with_sources(data: Path, src: np.ndarray, names: list[str]) -> None:
    """Give a dataset the sources `miniplm tokenize` writes beside it."""
    np.save(data / "sources.npy", src)
    (data / "tokenize.json").write_text(json.dumps({"sources": names}))


def test_heldout_by_source_equals_the_plain_computation_per_source(
    tiny: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One pass with ``by_source``: each source's figures equal the plain float64
    computation over its instances (of a selection, cut by max_instances), a source with
    one instance and one with none included; the parts add up to the whole; the CLI's
    ``--by-source`` prints and writes the same."""
    data = tmp_path / "data"
    seqs = make_dataset(data, n=30, max_len=20, seed=5)
    names = ["alpha", "beta", "single", "absent"]
    rng = np.random.default_rng(6)
    src = rng.integers(0, 2, len(seqs)).astype(np.uint16)
    src[7] = 2
    _with_sources(data, src, names)
    ids = np.array([0, 2, 3, 5, 7, 8, 11, 12, 14, 17, 19, 21, 22, 25, 26, 29], dtype=np.uint64)
    sel = tmp_path / "sel"
    miniplm.TokenDataset(data).write_selection(sel, ids, "test", overwrite=True)
    r = evaluate(
        tiny["model"],
        data=data,
        selection=sel,
        max_instances=12,
        by_source=True,
        device="cpu",
        batch_size=4,
    )["heldout"]
    used = ids[:12].astype(np.int64)
    want_nll, want_cnt = reference_scores(tiny["model"], [seqs[i] for i in used], ignore_id=EOS)
    assert list(r["by_source"]) == ["alpha", "beta", "single"]  # index order, absent left out
    for k, name in enumerate(names[:3]):
        mask = src[used] == k
        g = r["by_source"][name]
        assert g["instances"] == int(mask.sum()) >= 1
        assert g["tokens"] == sum(len(seqs[i]) for i in used[mask])
        assert g["scored_tokens"] == int(want_cnt[mask].sum())
        if g["scored_tokens"]:
            want = want_nll[mask].sum() / want_cnt[mask].sum()
            assert g["mean_nll"] == pytest.approx(want, rel=1e-5)
            assert g["perplexity"] == pytest.approx(math.exp(want), rel=1e-5)
    assert r["by_source"]["single"]["instances"] == 1
    parts = r["by_source"].values()
    for key in ("instances", "tokens", "scored_tokens"):
        assert sum(g[key] for g in parts) == r[key]
    assert sum(g["nll_sum"] for g in parts) == pytest.approx(r["nll_sum"], rel=1e-12)

    out = tmp_path / "res.json"
    argv = ["eval", "--model", str(tiny["model"]), "--data", str(data), "--selection", str(sel)]
    argv += ["--max-instances", "12", "--by-source", "--device", "cpu", "--quiet"]
    assert main([*argv, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    res = json.loads(out.read_text())
    assert res["inputs"]["by_source"] is True
    for name, g in res["heldout"]["by_source"].items():
        assert g["instances"] == r["by_source"][name]["instances"]
        assert g["mean_nll"] == pytest.approx(r["by_source"][name]["mean_nll"], rel=1e-5)
        assert f"|   {name} | {g['instances']} | {g['scored_tokens']} |" in printed


def test_heldout_by_source_refuses_a_corpus_without_sound_sources(
    tiny: dict[str, Any], tmp_path: Path
) -> None:
    """No sources beside the shards, one entry too few, an index past the names: an
    error naming the file, before any instance is scored."""
    data = tmp_path / "data"
    make_dataset(data, n=6, max_len=10, seed=8)
    with pytest.raises(FormatError, match=r"no tokenize\.json beside the shards"):
        evaluate(tiny["model"], data=data, by_source=True, device="cpu")
    _with_sources(data, np.zeros(5, dtype=np.uint16), ["a"])
    with pytest.raises(InputError, match=r"sources\.npy: 5 source ids, but the shards"):
        evaluate(tiny["model"], data=data, by_source=True, device="cpu")  # the dataset's check
    _with_sources(data, np.array([0, 0, 1, 0, 2, 0], dtype=np.uint16), ["a", "b"])
    with pytest.raises(FormatError, match="a source index beyond"):
        evaluate(tiny["model"], data=data, by_source=True, device="cpu")
    with pytest.raises(InputError, match="--by-source needs --data"):
        evaluate(tiny["model"], by_source=True, mc_files=[tiny["mc"]], device="cpu")


def test_multiple_choice_equals_hand_computation(tiny: dict[str, Any]) -> None:
    docs = tiny["docs"]
    want = _hand_loglikelihoods(tiny["model"], docs)
    em = load_eval_model(tiny["model"], device="cpu", need_tokenizer=True)
    got = score_docs(em, load_mc_file(tiny["mc"]), batch_size=4)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)
    # No near-ties, so argmax is decided by the model, not by rounding.
    for d, w in zip(docs, want):
        for v in (w, w / np.array([len(c) for c in d["choices"]])):
            s = np.sort(v)
            assert s[-1] - s[-2] > 1e-3
    pred = [int(np.argmax(w)) for w in want]
    pred_norm = [
        int(np.argmax(w / [float(len(c)) for c in d["choices"]])) for d, w in zip(docs, want)
    ]
    labels = [d["label"] for d in docs]
    acc = float(np.mean([p == y for p, y in zip(pred, labels)]))
    acc_norm = float(np.mean([p == y for p, y in zip(pred_norm, labels)]))
    # A test with teeth: length normalisation changes the answer on some documents
    # and the two accuracies differ.
    assert any(p != q for p, q in zip(pred, pred_norm))
    assert acc != acc_norm
    r = evaluate(tiny["model"], mc_files=[tiny["mc"]], device="cpu", batch_size=4)
    t = r["tasks"]["eval_tiny"]
    assert t["source"] == "mc-file" and t["docs"] == len(docs)
    assert t["acc"] == pytest.approx(acc) and t["acc_norm"] == pytest.approx(acc_norm)
    assert r["average"]["value"] == pytest.approx(acc_norm)
    assert r["average"]["tasks"] == {"eval_tiny": "acc_norm"}


@pytest.mark.parametrize(
    ("n", "limit", "want"),
    [
        (10, None, 10),
        (10, 3, 3),
        (10, 30, 10),
        (10, 0, 0),
        (10, 0.25, 3),
        (10, 0.999, 10),
        (0, 0.5, 0),
        (1, 0.01, 1),
        (10, 1.0, 1),
        (10, 2.0, 2),
    ],
)
def test_limit_counts_documents_as_lm_eval(n: int, limit: float | None, want: int) -> None:
    # lm-eval: an int (the CLI turns >= 1 into one) is a count, a float < 1 a fraction
    # rounded up.
    assert limited(n, limit) == want


def test_mc_limit_scores_the_first_documents_with_a_bar(
    tiny: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    full = score_docs(
        load_eval_model(tiny["model"], device="cpu", need_tokenizer=True),
        load_mc_file(tiny["mc"]),
        batch_size=4,
    )
    docs = load_mc_file(tiny["mc"])
    k = limited(len(docs), 0.5)
    assert 0 < k < len(docs)
    r = evaluate(tiny["model"], mc_files=[tiny["mc"]], device="cpu", limit=0.5, progress=True)
    want = mc_metrics(docs[:k], full[:k])
    assert r["tasks"]["eval_tiny"]["docs"] == k
    assert r["tasks"]["eval_tiny"]["acc"] == pytest.approx(want["acc"])
    assert r["tasks"]["eval_tiny"]["acc_norm"] == pytest.approx(want["acc_norm"])
    choices = sum(len(d.choices) for d in docs[:k])
    assert f"{choices}/{choices}" in capsys.readouterr().err  # the bar, in choices
    evaluate(tiny["model"], mc_files=[tiny["mc"]], device="cpu", progress=False)
    assert "choice" not in capsys.readouterr().err
    with pytest.raises(InputError, match="--limit"):
        evaluate(tiny["model"], mc_files=[tiny["mc"]], device="cpu", limit=-1)


def test_batch_size_invariance(tiny: dict[str, Any]) -> None:
    kw: dict[str, Any] = {"data": tiny["data"], "mc_files": [tiny["mc"]], "device": "cpu"}
    r1 = evaluate(tiny["model"], batch_size=1, **kw)
    r3 = evaluate(tiny["model"], batch_size=3, **kw)
    assert r1["tasks"] == r3["tasks"]
    h1, h3 = r1["heldout"], r3["heldout"]
    assert h1["scored_tokens"] == h3["scored_tokens"] and h1["tokens"] == h3["tokens"]
    assert h1["mean_nll"] == pytest.approx(h3["mean_nll"], rel=1e-6)
    em = load_eval_model(tiny["model"], device="cpu", need_tokenizer=True)
    docs = load_mc_file(tiny["mc"])
    for a, b in zip(score_docs(em, docs, batch_size=1), score_docs(em, docs, batch_size=3)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_tokenizer_sources_and_mismatch(tiny: dict[str, Any], tmp_path: Path) -> None:
    """A model without a tokenizer reads the text tasks with --tokenizer or with the
    tokenizer.json beside --data; a dataset written with another tokenizer is refused."""
    bare = make_model(tmp_path / "bare", "llama", seed=1)  # same weights, no tokenizer
    with pytest.raises(InputError, match="needs a tokenizer"):
        evaluate(bare, mc_files=[tiny["mc"]], device="cpu")
    want = evaluate(tiny["model"], mc_files=[tiny["mc"]], device="cpu")["tasks"]
    tok_json = tmp_path / "tok" / "tokenizer.json"
    tok_json.parent.mkdir()
    AutoTokenizer.from_pretrained(tiny["model"]).backend_tokenizer.save(str(tok_json))
    by_flag = evaluate(bare, mc_files=[tiny["mc"]], tokenizer=tok_json, device="cpu")
    assert by_flag["tasks"] == want and by_flag["model"]["tokenizer"] == str(tok_json)
    data = tmp_path / "data"
    make_dataset(data, n=6, max_len=12, seed=5)
    tok_json.replace(data / "tokenizer.json")
    # A model without a tokenizer of its own cannot be checked against the dataset's.
    with pytest.raises(InputError, match="no tokenizer comes with the model"):
        evaluate(bare, data=data, mc_files=[tiny["mc"]], device="cpu")
    beside = evaluate(
        bare, data=data, mc_files=[tiny["mc"]], device="cpu", allow_tokenizer_mismatch=True
    )
    assert beside["tasks"] == want
    other = Tokenizer(models.WordLevel({"<unk>": 0, "a": 1}, unk_token="<unk>"))
    other.save(str(data / "tokenizer.json"))
    with pytest.raises(InputError, match="tokenizer differs"):
        evaluate(tiny["model"], data=data, device="cpu")
    r = evaluate(tiny["model"], data=data, device="cpu", allow_tokenizer_mismatch=True)
    assert r["heldout"]["instances"] == 6


def test_model_object_and_tokenizer_pair(tiny: dict[str, Any]) -> None:
    model = AutoModelForCausalLM.from_pretrained(tiny["model"])
    tok = AutoTokenizer.from_pretrained(tiny["model"])
    kw: dict[str, Any] = {"data": tiny["data"], "mc_files": [tiny["mc"]], "batch_size": 4}
    by_pair = evaluate((model, tok), **kw)
    by_path = evaluate(tiny["model"], device="cpu", **kw)
    assert by_pair["tasks"] == by_path["tasks"]
    assert by_pair["heldout"]["mean_nll"] == pytest.approx(by_path["heldout"]["mean_nll"])
    assert by_pair["model"]["path"].startswith("<in-memory")


_TASK_YAML = """task: eval_tiny_mc
tag: eval_tiny_tag
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
  cache_dir: {cache}
test_split: test
output_type: multiple_choice
doc_to_text: context
doc_to_choice: choices
doc_to_target: label
target_delimiter: ""
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
  - metric: acc_norm
    aggregation: mean
    higher_is_better: true
"""


def test_lm_eval_agrees_with_builtin(
    tiny: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lm_eval = pytest.importorskip(
        "lm_eval", reason="lm_eval is not installed (pip install 'miniplm[eval]')"
    )
    import datasets

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True, raising=False)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True, raising=False)
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "eval_tiny_mc.yaml").write_text(
        _TASK_YAML.format(data=tiny["mc"], cache=tmp_path / "hf_cache")
    )
    import random

    import torch

    def draws() -> tuple[float, float, float]:
        return random.random(), float(np.random.rand()), float(torch.rand(()))

    random.seed(5), np.random.seed(5), torch.manual_seed(5)
    untouched = draws()
    random.seed(5), np.random.seed(5), torch.manual_seed(5)
    r = evaluate(
        tiny["model"],
        mc_files=[tiny["mc"]],
        tasks=["eval_tiny_tag"],  # a tag: lm-eval runs the task(s) carrying it
        include_path=tasks,
        device="cpu",
        batch_size=3,
    )
    # lm-eval reseeds the global generators; the caller's streams go on as before.
    assert draws() == untouched
    ours, theirs = r["tasks"]["eval_tiny"], r["tasks"]["eval_tiny_mc"]
    assert theirs["source"] == "lm-eval" and theirs["docs"] == ours["docs"] == len(tiny["docs"])
    assert theirs["acc"] == pytest.approx(ours["acc"])
    assert theirs["acc_norm"] == pytest.approx(ours["acc_norm"])
    assert theirs["acc_stderr"] == pytest.approx(ours["acc_stderr"])
    assert r["average"]["tasks"] == {"eval_tiny": "acc_norm", "eval_tiny_mc": "acc_norm"}

    # Per-choice log-likelihoods agree too (lm-eval's logged responses).
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    em = load_eval_model(tiny["model"], device="cpu", need_tokenizer=True)
    out = lm_eval.simple_evaluate(
        model=HFLM(pretrained=em.model, tokenizer=em.tokenizer, batch_size=3),
        tasks=["eval_tiny_mc"],
        num_fewshot=0,
        task_manager=TaskManager(include_path=str(tasks), include_defaults=False),
        log_samples=True,
    )
    assert out is not None
    samples = sorted(out["samples"]["eval_tiny_mc"], key=lambda s: s["doc_id"])
    mine = score_docs(em, load_mc_file(tiny["mc"]), batch_size=3)
    for s, ll in zip(samples, mine):
        np.testing.assert_allclose([x[0] for x in s["filtered_resps"]], ll, rtol=1e-5, atol=1e-5)


def test_missing_lm_eval_is_a_clear_error(
    tiny: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "lm_eval", None)
    with pytest.raises(MissingDependency, match=r"miniplm\[eval\]"):
        evaluate(tiny["model"], tasks=["hellaswag"], device="cpu")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"context": "a", "choices": ["b"], "label": 0', "not valid JSON"),
        ('["a", "b"]', "expected a JSON object"),
        ('{"context": "a", "label": 0}', "missing key(s) 'choices'"),
        ('{"choices": [" b"]}', "missing key(s) 'context', 'label'"),
        ('{"context": "a", "choices": [" b", " c"], "label": 2}', "label 2 is out of range"),
        ('{"context": "a", "choices": [" b"], "label": -1}', "label -1 is out of range"),
        ('{"context": "a", "choices": [], "label": 0}', "'choices' is empty"),
        ('{"context": "a", "choices": [" b", ""], "label": 0}', "choice 1 is the empty string"),
        ('{"context": "a", "choices": " b", "label": 0}', "must be a list of strings"),
        ('{"context": 3, "choices": [" b"], "label": 0}', "'context' must be a string"),
        ('{"context": "a", "choices": [" b"], "label": true}', "'label' must be an integer"),
    ],
)
def test_bad_mc_file_errors(tmp_path: Path, line: str, message: str) -> None:
    f = tmp_path / "eval_bad.jsonl"
    f.write_text('{"context": "w1", "choices": [" w2", " w3"], "label": 1}\n\n' + line + "\n")
    with pytest.raises(FormatError) as e:
        load_mc_file(f)
    assert f"{f}:3:" in str(e.value) and message in str(e.value)


def test_empty_mc_file_and_nothing_to_do(tmp_path: Path, tiny: dict[str, Any]) -> None:
    f = tmp_path / "eval_empty.jsonl"
    f.write_text("\n")
    with pytest.raises(FormatError, match="no documents"):
        load_mc_file(f)
    with pytest.raises(InputError, match="nothing to evaluate"):
        evaluate(tiny["model"], device="cpu")


def test_cli_end_to_end(
    tiny: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "res" / "results.json"
    argv = ["eval", "--model", str(tiny["model"]), "--data", str(tiny["data"])]
    argv += ["--mc-file", str(tiny["mc"]), "--device", "cpu", "--batch-size", "3"]
    assert main([*argv, "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    res = json.loads(out.read_text())
    assert sorted(p.name for p in out.parent.iterdir()) == ["results.json"]  # no temp left
    assert res["model"]["path"] == str(tiny["model"])
    assert res["inputs"]["mc_files"] == [str(tiny["mc"].resolve())]
    h = res["heldout"]
    assert h["perplexity"] == pytest.approx(math.exp(h["mean_nll"]))
    t = res["tasks"]["eval_tiny"]
    assert res["average"]["value"] == pytest.approx(t["acc_norm"])
    assert "| eval_tiny | mc-file | 16 |" in printed and f"{h['mean_nll']:.4f}" in printed
    api = evaluate(tiny["model"], data=tiny["data"], mc_files=[tiny["mc"]], device="cpu")
    assert api["tasks"] == res["tasks"]

    bad = tmp_path / "eval_bad.jsonl"
    bad.write_text('{"context": "w1", "choices": [], "label": 0}\n')
    argv = ["eval", "--model", str(tiny["model"]), "--mc-file", str(bad), "--device", "cpu"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"{bad}:1: 'choices' is empty" in err and "miniplm eval: error" in err


def test_heldout_token_outside_the_vocabulary(tiny: dict[str, Any], tmp_path: Path) -> None:
    import miniplm

    vocab = int(
        AutoModelForCausalLM.from_pretrained(tiny["model"]).get_input_embeddings().weight.shape[0]
    )
    seqs = [np.array([4, 5, 6]), np.array([5, vocab + 3, 4]), np.array([-1, 4], dtype=np.int64)]
    miniplm.write_dataset(tmp_path / "d", seqs, dtype="int32")
    with pytest.raises(InputError, match=f"instance 1 holds token id {vocab + 3}"):
        evaluate(tiny["model"], data=tmp_path / "d", device="cpu", allow_tokenizer_mismatch=True)
    miniplm.write_dataset(tmp_path / "n", seqs[2:], dtype="int32")
    with pytest.raises(InputError, match="instance 0 holds token id -1"):
        evaluate(tiny["model"], data=tmp_path / "n", device="cpu", allow_tokenizer_mismatch=True)
