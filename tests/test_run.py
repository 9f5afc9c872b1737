"""`miniplm run`: the smoke preset end to end (report, selection, students and plots
checked for content), stage skipping and re-running, and config validation."""

from __future__ import annotations

import json
import math
import shutil
import statistics
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import miniplm
from miniplm.cli import main as cli_main
from miniplm.errors import InputError
from miniplm.evaluation import evaluate
from miniplm.pipeline.config import RunConfig, load_config
from miniplm.pipeline.run import run_pipeline
from miniplm.pipeline.seeds import student_seed
from miniplm.pipeline.stages import build_stages

VARIANTS = ["miniplm", "random", "kd", "ppl"]
TOP = 5  # eval.top_sources of the smoke run


def _shown(smoke: Path, top: int = TOP) -> tuple[list[str], list[str]]:
    """The sources a report shows one by one (the ``top`` with most instances, ties to
    the smaller index, in index order) and those it pools, by a plain sort."""
    meta = json.loads((smoke / "data" / "corpus" / "tokenize.json").read_text())
    names = meta["sources"]
    sizes = [meta["counts"]["per_source"][n]["instances"] for n in names]
    ranked = sorted(range(len(names)), key=lambda k: (-sizes[k], k))
    shown = sorted(ranked[:top])
    return [names[k] for k in shown], [n for k, n in enumerate(names) if k not in shown]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The smoke preset with ``seeds = 2`` (as CI runs it), every student twice, and
    per-source figures for the 5 largest of the bundled corpus's 8 sources, the other 3
    pooled (``eval.top_sources``)."""
    # Written with a path relative to the working directory, as a user would type it,
    # so that the tests that copy it elsewhere see any path kept relative to that cwd.
    parent = tmp_path_factory.mktemp("smoke")
    (parent / "seeds.toml").write_text(f"[students]\nseeds = 2\n[eval]\ntop_sources = {TOP}\n")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(parent)
        argv = ["run", "seeds.toml", "--preset", "smoke", "--out", "run", "--quiet"]
        assert cli_main(argv) == 0
    return parent / "run"


def _cfg(smoke: Path) -> RunConfig:
    """The config the smoke run was made with."""
    return load_config(str(smoke.parent / "seeds.toml"), "smoke")


def _mean_std(xs: list[float], digits: int) -> str:
    return f"{statistics.mean(xs):.{digits}f} ± {statistics.stdev(xs):.{digits}f}"


def _table(md: str, header_start: str) -> list[list[str]]:
    lines = md.splitlines()
    i = next(k for k, ln in enumerate(lines) if ln.startswith(header_start))
    rows = []
    for ln in lines[i + 2 :]:
        if not ln.startswith("|"):
            break
        rows.append([c.strip() for c in ln.strip("|").split("|")])
    return rows


def test_smoke_selection_is_difference_sampling(smoke: Path) -> None:
    ids, info = miniplm.load_selection(smoke / "select" / "miniplm")
    exclude = np.load(smoke / "split" / "exclude.npy").astype(np.int64)
    ref = np.load(smoke / "data" / "corpus" / "ref_ids.npy").astype(np.int64)
    n = len(miniplm.TokenDataset(smoke / "data" / "corpus"))
    assert np.isin(ref, exclude).all() and not np.isin(ids.astype(np.int64), exclude).any()
    assert info["k"] == math.floor(0.5 * (n - len(exclude))) == len(ids) > 0
    # The kept ids are the K largest r = nll_ref - nll_teacher (ties to the smaller id).
    t = miniplm.load_scores(smoke / "score-teacher" / "teacher")
    r = miniplm.load_scores(smoke / "score" / "reference")
    # Both on the positions whose input is not the corpus's document separator.
    eos = json.loads((smoke / "data" / "corpus" / "tokenize.json").read_text())["tokenizer"]
    for m in (smoke / "score-teacher" / "teacher", smoke / "score" / "reference"):
        s = json.loads((m / "manifest.json").read_text())["settings"]
        assert (s["ignore_id"], s["ignore_id_from"]) == (eos["eos_id"], "--ignore-id")
    assert (t["n_scored"][exclude] == 0).all()  # D_ref and held-out were not scored
    ok = np.setdiff1d(np.arange(n), exclude)
    diff = r["nll_sum"][ok] / r["n_scored"][ok] - t["nll_sum"][ok] / t["n_scored"][ok]
    order = np.lexsort((ok, -diff))
    np.testing.assert_array_equal(np.sort(ok[order[: info["k"]]]), ids.astype(np.int64))
    # Baselines of equal size over the same eligible instances.
    for b in ("random", "ppl"):  # each its own stage
        bids, _ = miniplm.load_selection(smoke / f"select-{b}" / b)
        assert len(bids) == len(ids) and not np.isin(bids.astype(np.int64), exclude).any()
    rand = miniplm.load_selection(smoke / "select-random" / "random")[0]
    assert not np.array_equal(rand, ids)
    # Perplexity filtering: the k instances the teacher finds most likely.
    eligible = ok[np.isfinite(t["nll_sum"][ok] / t["n_scored"][ok])]
    tm = t["nll_sum"][eligible] / t["n_scored"][eligible]
    want = np.sort(eligible[np.lexsort((eligible, tm))[: info["k"]]])
    ppl = miniplm.load_selection(smoke / "select-ppl" / "ppl")[0]
    np.testing.assert_array_equal(ppl.astype(np.int64), want)


def test_smoke_target_set_and_zero_shot(smoke: Path) -> None:
    """Every model is evaluated on the bundled target works (never in the corpus) and on
    the zero-shot task made from them; the report gives both as mean ± std, not n/a."""
    from miniplm.default_corpus import target_works

    md = (smoke / "report.md").read_text()
    results = json.loads((smoke / "eval" / "results.json").read_text())
    works = target_works()
    assert works and all(f"{w} ({s})" in md for s, w in works)
    rows = _table(md, "| model | target bits/byte |")
    assert [r[0].split(" (")[0] for r in rows] == [
        "MiniPLM",
        "uniform random subset",
        "Vanilla KD",
        "perplexity filtering",
        "reference LM",
    ]
    for row, v in zip(rows, VARIANTS):
        runs = [results[v], results[f"{v}-seed1"]]
        bpb = [r["target"]["target"]["bits_per_byte"] for r in runs]
        assert all(0 < b < 20 for b in bpb)
        assert row[1] == _mean_std(bpb, 4)
        (task,) = runs[0]["zero_shot"].values()
        assert task["docs"] >= 500
        accs = [next(iter(r["zero_shot"].values()))["acc_norm"] for r in runs]
        assert all(0 <= a <= 1 for a in accs) and row[4] == _mean_std(accs, 4)
        # Per work: the target's groups are its works.
        assert set(runs[0]["target"]["target"]["by_group"]) == {w for _, w in works}
    assert "n/a" not in "".join("".join(r) for r in rows)


def test_smoke_students_and_report_content(smoke: Path) -> None:
    md = (smoke / "report.md").read_text()
    results = json.loads((smoke / "eval" / "results.json").read_text())
    split_counts = json.loads((smoke / "split" / "stage.json").read_text())["outputs"]["counts"]
    rows = _table(md, "| student |")
    assert [r[0].split(" (")[0] for r in rows] == [
        "MiniPLM",
        "uniform random subset",
        "Vanilla KD",
        "perplexity filtering",
    ]
    assert "each trained with 2 seeds" in md
    steps = set()
    for row, v in zip(rows, VARIANTS):
        # Every figure is mean ± std over the two seeds, each its own stage and model.
        runs = [results[v], results[f"{v}-seed1"]]
        want = [r["heldout"]["heldout"]["mean_nll"] for r in runs]
        assert all(math.isfinite(w) for w in want) and want[0] != want[1]
        assert row[1] == _mean_std(want, 4)
        assert row[3] == _mean_std([r["heldout_clean"]["heldout"]["mean_nll"] for r in runs], 4)
        tokens = []
        for stage, seed in ((f"student-{v}", 0), (f"student-{v}-seed1", student_seed(0, 1))):
            summary = json.loads((smoke / stage / "run" / "summary.json").read_text())
            assert row[6] == str(summary["steps"])
            steps.add(summary["steps"])
            tokens.append(summary["tokens"])
            # Each student is a real HF model whose held-out loss was measured.
            assert (smoke / stage / "run" / "final" / "config.json").is_file()
            info = json.loads((smoke / stage / "run" / "run.json").read_text())
            assert info["settings"]["seed"] == seed
        assert row[5] == _mean_std(tokens, 0)  # the data order changes the tokens per step
        assert " ± " in row[7]  # wall time too
        assert float(row[8]) > 0 and float(row[9]) >= float(row[8])
    assert len(steps) == 1  # equal training for every student and seed
    vs = _table(md, "| baseline | figure |")
    figures = ["target bits/byte", "zero-shot acc_norm", "zero-shot acc"]
    assert [(r[0], r[1]) for r in vs] == [
        (b, f)
        for b in ["uniform random subset", "Vanilla KD", "perplexity filtering"]
        for f in [*figures, "held-out NLL", "held-out NLL, no noise"]
    ]
    assert all(" ± " in r[2] and r[5] in ("win", "loss", "tie") for r in vs)
    assert "larger than the sum of the two standard deviations" in md
    assert float(rows[0][9]) > float(rows[0][8])  # MiniPLM carries the offline cost
    sel = json.loads((smoke / "select" / "miniplm" / "selection.json").read_text())
    assert f"K = {sel['k']} of {sel['num_eligible']} eligible" in md
    src = _table(md, "| source | instances |")
    meta = json.loads((smoke / "data" / "corpus" / "tokenize.json").read_text())
    names = meta["sources"]
    shown, pooled = _shown(smoke)
    other = f"other ({len(pooled)} sources)"
    assert len(names) == 8 and len(pooled) == 3 and any(n.startswith("noise-") for n in names)
    assert [r[0] for r in src] == [*shown, other]
    assert sum(int(r[1]) for r in src) == meta["counts"]["instances"]
    assert sum(int(r[3]) for r in src) == sel["k"]
    assert sum(int(r[2]) for r in src) == sel["num_eligible"]
    per_source = _table(md, "| source | keep rate |")
    assert [r[0] for r in per_source] == [*shown, other]
    for row in per_source:

        def got(res: dict[str, Any], name: str = row[0]) -> dict[str, Any]:
            return res["per_source_other"] if name == other else res["per_source"][name]

        for col, v in enumerate(VARIANTS):
            two = [got(results[k])["mean_nll"] for k in (v, f"{v}-seed1")]
            assert row[3 + col] == _mean_std(two, 3)
        assert row[7] == f"{got(results['reference'])['mean_nll']:.3f}"
    for res in results.values():  # one held-out pass, grouped: the parts make the whole
        whole, clean = res["heldout"]["heldout"], res["heldout_clean"]["heldout"]
        parts = [*res["per_source"].values(), res["per_source_other"]]
        assert res["per_source_other"]["sources"] == len(pooled)
        assert set(res["per_source"]) == set(shown)  # each has held-out instances here
        for key in ("instances", "tokens", "scored_tokens"):
            assert sum(p[key] for p in parts) == whole[key]
        assert sum(p["nll_sum"] for p in parts) == pytest.approx(whole["nll_sum"], rel=1e-9)
        assert clean["instances"] == split_counts["heldout_clean"] < whole["instances"]
    # The no-noise figure added up from the sources equals a pass over its own slice.
    ref = smoke / json.loads((smoke / "reference" / "stage.json").read_text())["outputs"]["model"]
    direct = evaluate(
        str(ref), data=smoke / "data" / "corpus", selection=smoke / "split" / "heldout-clean"
    )["heldout"]
    added = results["reference"]["heldout_clean"]["heldout"]
    assert direct["instances"] == added["instances"] and direct["tokens"] == added["tokens"]
    assert direct["mean_nll"] == pytest.approx(added["mean_nll"], rel=1e-5)
    assert (
        sum(int(r[2]) for r in per_source) == results["miniplm"]["heldout"]["heldout"]["instances"]
    )
    examples = _table(md, "| source | which |")
    assert {r[0] for r in examples} == {*shown, other} and all(r[4] for r in examples)


def test_smoke_plots_are_real_images(smoke: Path) -> None:
    import matplotlib.image as mpimg

    for name in ("r_histogram.png", "keep_rate_by_source.png", "loss_curves.png"):
        img = mpimg.imread(smoke / "report" / name)
        assert img.shape[0] > 200 and img.shape[1] > 400
        assert float(np.std(img)) > 0.01  # not a blank canvas
        assert f"report/{name}" in (smoke / "report.md").read_text()


def test_the_report_keeps_the_config_it_was_made_with(smoke: Path) -> None:
    """``DIR/config.json`` is rewritten when a run starts; the report's own copy stays
    with the figures it describes."""
    mine = json.loads((smoke / "report" / "config.json").read_text())
    assert mine == json.loads((smoke / "config.json").read_text())
    assert mine["eval"]["top_sources"] == TOP and mine["students"]["seeds"] == 2
    assert "(report/config.json)" in (smoke / "report.md").read_text()


def test_second_run_skips_and_a_deleted_stage_reruns_with_its_followers(
    smoke: Path, tmp_path: Path
) -> None:
    run = tmp_path / "copy"
    shutil.copytree(smoke, run)
    cfg = _cfg(smoke)
    ctx = run_pipeline(cfg, run, quiet=True)
    assert ctx.ran == [] and "student-kd-seed1" in ctx.skipped
    before = (run / "select" / "miniplm" / "ids.npy").read_bytes()
    k_before = len(miniplm.load_selection(run / "select" / "miniplm")[0])
    shutil.rmtree(run / "student-random")
    ctx = run_pipeline(cfg, run, quiet=True)
    assert ctx.ran == ["student-random", "eval", "report"]
    assert (run / "select" / "miniplm" / "ids.npy").read_bytes() == before
    # A changed setting re-runs its stage and everything that reads it (one seed here:
    # half the students to retrain).
    cfg.selection.alpha = 0.25
    cfg.students.seeds = 1
    ctx = run_pipeline(cfg, run, quiet=True)
    assert ctx.ran[0] == "select" and "score" in ctx.skipped and "student-miniplm" in ctx.ran
    k_after = len(miniplm.load_selection(run / "select" / "miniplm")[0])
    assert abs(k_after - k_before / 2) <= 1


def test_eval_max_instances_samples_the_heldout_alike_for_every_model(
    smoke: Path, tmp_path: Path
) -> None:
    """``[eval] max_instances``: only the evaluation and the report run again; every
    model is scored on the same seeded sample of that many held-out instances drawn from
    the whole slice (its first ids would be the first sources only), and the per-source
    parts add up to the sample."""
    run = tmp_path / "run"
    shutil.copytree(smoke, run)
    f = tmp_path / "c.toml"
    f.write_text(f"[students]\nseeds = 2\n[eval]\ntop_sources = {TOP}\nmax_instances = 20\n")
    ctx = run_pipeline(load_config(str(f), "smoke"), run, quiet=True)
    assert ctx.ran == ["eval", "report"]
    results = json.loads((run / "eval" / "results.json").read_text())
    sample = run / "eval" / "samples" / "heldout"
    ids = miniplm.load_selection(sample)[0].astype(np.int64)
    held = miniplm.load_selection(run / "split" / "heldout")[0].astype(np.int64)
    assert len(ids) == 20 < len(held) and np.isin(ids, held).all()
    assert not np.array_equal(ids, held[:20])
    sources = np.load(run / "data" / "corpus" / "sources.npy")
    assert len(set(sources[ids].tolist())) >= 3
    for res in results.values():
        h = res["heldout"]["heldout"]
        assert h["instances"] == 20 and h["selection"] == str(sample)
        parts = [*res["per_source"].values(), res["per_source_other"] or {"instances": 0}]
        assert sum(p["instances"] for p in parts) == 20


def test_a_moved_run_dir_reruns_from_another_cwd(
    smoke: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stage records hold paths relative to the run directory: a run moved elsewhere and
    continued from another working directory reads its own stages, not the original's."""
    moved = tmp_path / "elsewhere" / "moved"
    shutil.copytree(smoke, moved)
    shutil.rmtree(moved / "student-random")
    monkeypatch.chdir(tmp_path)  # neither the run's old cwd nor its parent
    ctx = run_pipeline(_cfg(smoke), moved.resolve(), quiet=True)
    assert ctx.ran == ["student-random", "eval", "report"]
    assert {"data", "split", "score", "select", "student-miniplm"} <= set(ctx.skipped)
    for stage in ("split", "select", "student-random"):
        outputs = json.loads((moved / stage / "stage.json").read_text())["outputs"]
        outputs.pop("report", None)  # select's provenance (as in selection.json), not read
        flat = json.dumps(outputs)
        assert str(smoke) not in flat and '"run/' not in flat
    heldout = json.loads((moved / "split" / "stage.json").read_text())["outputs"]["heldout"]
    assert heldout == "split/heldout"


def test_a_stage_record_from_an_older_version_reruns_not_crashes(
    smoke: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Records written before paths were run-relative (cwd-relative, no ``paths`` mark)
    are not trusted: that stage reruns (resuming) instead of a later stage crashing."""
    run = tmp_path / "old"
    shutil.copytree(smoke, run)
    meta_path = run / "eval" / "stage.json"
    meta = json.loads(meta_path.read_text())
    del meta["paths"]
    meta["outputs"]["results"] = "demo-run/eval/results.json"
    meta_path.write_text(json.dumps(meta))
    monkeypatch.chdir(tmp_path)
    ctx = run_pipeline(_cfg(smoke), run, quiet=True)
    assert ctx.ran == ["eval", "report"]
    assert json.loads(meta_path.read_text())["outputs"]["results"] == "eval/results.json"


def test_config_is_validated_up_front(tmp_path: Path) -> None:
    def bad(text: str, match: str) -> None:
        f = tmp_path / "c.toml"
        f.write_text(text)
        with pytest.raises(InputError, match=match):
            load_config(str(f), "smoke")

    bad("[selection]\nalpha = 1.5\n", "selection.alpha")
    bad("[students]\npreset = 'huge'\n", "students.preset")
    bad("[corpus]\nseq_len = 'long'\n", "corpus.seq_len")
    bad("[corpus]\nbogus = 1\n", "unknown key")
    bad("[corpus]\neos_token = 0\n", "corpus.eos_token")
    bad("[selection]\nbaselines = ['random', 'magic']\n", "magic")
    bad("[students]\nseeds = 0\n", "students.seeds")
    bad("[eval]\ntexts = ['no-such.jsonl']\n", "eval.texts")
    bad("[eval]\ntop_sources = -1\n", "eval.top_sources: must be >= 0")
    bad("[eval]\nmax_instances = -2\n", "eval.max_instances: must be >= 0")
    bad("[corpus]\ninputs = ['/nonexistent/x.jsonl']\n", "/nonexistent")
    bad("alpha = [\n", "not valid TOML")
    f = tmp_path / "ok.toml"
    f.write_text("seed = 3\n[selection]\nalpha = 0.25\n[students]\nepochs = 2\n")
    cfg = load_config(str(f), "smoke")
    assert cfg.seed == 3 and cfg.selection.alpha == 0.25 and cfg.students.epochs == 2.0
    assert cfg.students.preset == "tiny"  # the rest comes from the preset
    assert cfg.students.seeds == 1 and load_config(None, "default").students.seeds == 3
    with pytest.raises(InputError, match="--preset"):
        load_config(None, "nope")
    assert cli_main(["run", str(tmp_path / "c.toml"), "--preset", "smoke", "--out", "x"]) == 2


def test_nproc_per_node_runs_scoring_and_training_under_torchrun(
    smoke: Path, tmp_path: Path
) -> None:
    cfg = load_config(None, "smoke")
    cfg.nproc_per_node = 2
    run = tmp_path / "dist"
    run_pipeline(cfg, run, quiet=True)
    man = json.loads((run / "score-teacher" / "teacher" / "manifest.json").read_text())
    assert man["summary"]["world_size"] == 2
    assert man["settings"]["ignore_id_from"] == "--ignore-id"  # reached the torchrun argv
    for stage in ("reference", "student-miniplm", "student-kd"):
        info = json.loads((run / stage / "run" / "run.json").read_text())
        assert info["settings"]["world_size"] == 2
        one = json.loads((smoke / stage / "run" / "summary.json").read_text())
        two = json.loads((run / stage / "run" / "summary.json").read_text())
        assert one["steps"] == two["steps"] and one["tokens"] == two["tokens"]
    # DDP over 2 ranks computes the same steps as 1 process up to float rounding, so the
    # models and hence r agree closely: the two selections are nearly the same set.
    a = miniplm.load_selection(smoke / "select" / "miniplm")[0]
    b = miniplm.load_selection(run / "select" / "miniplm")[0]
    assert len(a) == len(b) and len(np.intersect1d(a, b)) >= 0.9 * len(a)
    assert (run / "report.md").is_file()


def test_own_tokenizer_students_train_under_torchrun(smoke: Path, tmp_path: Path) -> None:
    """Students with their own tokenizer, trained by 2 ranks under torchrun on their
    re-tokenized subsets (made once, by the pipeline's process): each run records world
    size 2 and the student vocabulary, and all train the equal own-token budget (the
    smallest subset's) that one rank trains."""
    from transformers import AutoTokenizer

    run = tmp_path / "run"
    shutil.copytree(smoke, run)
    f = tmp_path / "c.toml"
    f.write_text("[students]\nseeds = 1\n[students.tokenizer]\ntrain_bpe_vocab = 300\n")
    cfg = load_config(str(f), "smoke")
    cfg.nproc_per_node = 2
    ctx = run_pipeline(cfg, run, quiet=True)
    assert "student_corpus-miniplm" in ctx.ran and "score" in ctx.skipped
    out = {name: meta["outputs"] for name, meta in ctx.done.items()}
    variants = ("miniplm", "random", "ppl")
    budget = min(
        out[f"student_corpus-{v}"]["tokens"] - out[f"student_corpus-{v}"]["instances"]
        for v in variants
    )  # trained tokens: targets, as with one rank
    per_batch = cfg.students.global_batch_size * cfg.corpus.seq_len
    for v in variants:
        info = json.loads((run / f"student-{v}" / "run" / "run.json").read_text())
        assert info["settings"]["world_size"] == 2
        assert len(AutoTokenizer.from_pretrained(run / f"student-{v}" / "run" / "final")) == 300
        summary = json.loads((run / f"student-{v}" / "run" / "summary.json").read_text())
        assert abs(summary["tokens"] - cfg.students.epochs * budget) < per_batch
    assert (run / "report.md").is_file()


def test_students_with_their_own_tokenizer_and_family(smoke: Path, tmp_path: Path) -> None:
    """``[students.tokenizer] train_bpe_vocab = 300`` with Llama students on a copy of the
    smoke run: only the student side runs (scoring kept), every student trains on its own
    re-tokenized subset and carries the 300-entry tokenizer and a Llama architecture, all
    see equal numbers of their own tokens, the held-out slices are re-tokenized and
    reported in bits per byte, and Vanilla KD is left out with the reason."""
    from transformers import AutoTokenizer

    run = tmp_path / "run"
    shutil.copytree(smoke, run)
    f = tmp_path / "c.toml"
    f.write_text(
        "[students]\narch = 'llama'\n[students.tokenizer]\ntrain_bpe_vocab = 300\n"
        f"[eval]\ntop_sources = {TOP}\n"
    )
    cfg = load_config(str(f), "smoke")
    ctx = run_pipeline(cfg, run, quiet=True)
    variants = ["miniplm", "random", "ppl"]  # kd left out
    student_side = [
        "student_tokenizer",
        *(f"student_corpus-{v}" for v in variants),
        "student_heldout",
        *(f"student-{v}" for v in variants),
        "eval",
        "report",
    ]
    assert sorted(ctx.ran) == sorted(student_side)
    assert {"data", "split", "reference", "score", "select"} <= set(ctx.skipped)
    out = {name: meta["outputs"] for name, meta in ctx.done.items()}
    corpora = [out[f"student_corpus-{v}"] for v in variants]
    budget = min(c["tokens"] - c["instances"] for c in corpora)  # trained tokens: targets
    results = json.loads((run / "eval" / "results.json").read_text())
    for v in variants:
        final = run / f"student-{v}" / "run" / "final"
        assert len(AutoTokenizer.from_pretrained(final)) == 300
        assert json.loads((final / "config.json").read_text())["model_type"] == "llama"
        summary = json.loads((run / f"student-{v}" / "run" / "summary.json").read_text())
        # Equal own-token budgets: within one batch of the smallest subset's tokens.
        per_batch = cfg.students.global_batch_size * cfg.corpus.seq_len
        assert abs(summary["tokens"] - cfg.students.epochs * budget) < per_batch
        held = results[v]["heldout"]["heldout"]
        assert held["path"] == str(run / out["student_heldout"]["heldout"]["dataset"])
        assert 0 < held["bits_per_byte"] < 20
    ref = results["reference"]["heldout"]["heldout"]
    assert 0 < ref["bits_per_byte"] < 20 and ref["selection"] is not None
    # Per source: a re-tokenized slice for each shown source and one for the pooled rest,
    # in bits per byte for every model over the same text.
    shown, pooled = _shown(smoke)
    held = out["student_heldout"]
    assert set(held["per_source"]) == set(shown) and all(held["per_source"].values())
    assert held["per_source_other"]["instances"] > 0
    for label, res in results.items():
        assert set(res["per_source"]) == set(shown)
        other = res["per_source_other"]
        assert other["sources"] == len(pooled) and 0 < other["bits_per_byte"] < 20, label
        assert all(0 < h["bits_per_byte"] < 20 for h in res["per_source"].values()), label
    md = (run / "report.md").read_text()
    rows = _table(md, "| student |")
    names = ["MiniPLM", "uniform random subset", "perplexity filtering"]
    assert [r[0].split(" (")[0] for r in rows] == names
    for row, v in zip(rows, variants):
        assert row[-1] == f"{results[v]['heldout']['heldout']['bits_per_byte']:.4f}"
    assert "Vanilla KD is left out" in md and "300 entries" in md

    # Another student tokenizer changes the settings of the students' tokenizer stage
    # alone; the scoring side reads none of the student stages, so it stays (the stamps
    # of a re-run stage re-run its readers: test_second_run_skips_...).
    f.write_text(
        "[students]\narch = 'llama'\n[students.tokenizer]\ntrain_bpe_vocab = 320\n"
        f"[eval]\ntop_sources = {TOP}\n"
    )
    before = {s.name: s for s in build_stages(cfg)}
    after = {s.name: s for s in build_stages(load_config(str(f), "smoke"))}
    assert before.keys() == after.keys()
    changed = {n for n in after if after[n].params != before[n].params}
    assert changed == {"student_tokenizer", *(f"student-{v}" for v in variants)}
    student_stages = set(student_side) - {"eval", "report"}
    for name in ("data", "split", "reference", "score", "select"):
        assert not student_stages & set(after[name].reads)


def test_mamba_students_through_the_pipeline(smoke: Path, tmp_path: Path) -> None:
    """``[students] arch = 'mamba'`` on a copy of the smoke run: only the students, the
    evaluation and the report run again; each of the four students (Vanilla KD included:
    a Qwen2 teacher's logits into a Mamba student) is a Mamba model trained for the steps
    and tokens the Qwen2 students had, reloaded by AutoModelForCausalLM, evaluated and
    reported."""
    from transformers import AutoModelForCausalLM, MambaForCausalLM

    run = tmp_path / "run"
    shutil.copytree(smoke, run)
    f = tmp_path / "c.toml"
    f.write_text("[students]\narch = 'mamba'\nseeds = 1\n")
    ctx = run_pipeline(load_config(str(f), "smoke"), run, quiet=True)
    assert sorted(ctx.ran) == sorted([*(f"student-{v}" for v in VARIANTS), "eval", "report"])
    assert {"data", "reference", "score", "select"} <= set(ctx.skipped)
    results = json.loads((run / "eval" / "results.json").read_text())
    losses = []
    for v in VARIANTS:
        d = run / f"student-{v}" / "run"
        assert json.loads((d / "final" / "config.json").read_text())["model_type"] == "mamba"
        assert isinstance(AutoModelForCausalLM.from_pretrained(d / "final"), MambaForCausalLM)
        qwen = json.loads((smoke / f"student-{v}" / "run" / "summary.json").read_text())
        mamba = json.loads((d / "summary.json").read_text())
        assert (mamba["steps"], mamba["tokens"]) == (qwen["steps"], qwen["tokens"])
        logged = [json.loads(line) for line in (d / "metrics.jsonl").read_text().splitlines()]
        assert logged and all(("kd_loss" in r) == (v == "kd") for r in logged), v
        losses.append(results[v]["heldout"]["heldout"]["mean_nll"])
    assert all(math.isfinite(x) and 0 < x < 20 for x in losses) and len(set(losses)) == 4
    rows = _table((run / "report.md").read_text(), "| student |")
    assert [r[0].split(" (")[0] for r in rows] == [
        "MiniPLM",
        "uniform random subset",
        "Vanilla KD",
        "perplexity filtering",
    ]
    assert [r[1] for r in rows] == [f"{x:.4f}" for x in losses]
