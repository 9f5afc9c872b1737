"""What ``miniplm run``'s stage keys hold (so an edited input reruns its stage and a
setting that changes nothing reruns nothing) and how the config merges a file over its
preset and refuses bad values up front, each refusal naming the file and the key."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from transformers import PreTrainedTokenizerFast

from miniplm.errors import InputError
from miniplm.pipeline.config import PRESETS, RunConfig, load_config, validate
from miniplm.pipeline.corpus_stages import DataStage, TeacherModelStage, TokenizerStage
from miniplm.pipeline.eval_stage import EvalStage
from miniplm.pipeline.report_figures import target_section
from miniplm.pipeline.student_stages import StudentStage
from miniplm.pipeline.target_stage import TargetOut

from tiny_lm import tiny_bpe

TEXTS = [f"document {i}: the cat sat on the mat. where is the dog {i}?" for i in range(40)]


def _load(tmp_path: Path, text: str, preset: str = "smoke", name: str = "c.toml") -> RunConfig:
    f = tmp_path / name
    f.write_text(text)
    return load_config(str(f), preset)


def _tokenizer(path: Path) -> Path:
    tok = tiny_bpe(TEXTS)
    # A folder with its EOS named, as Hugging Face saves one.
    PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>").save_pretrained(path)
    return path


def _corpus(tmp_path: Path, source: bool = True) -> Path:
    f = tmp_path / ("web.jsonl" if source else "plain.jsonl")
    rows = [{"text": t, **({"source": f"s{i % 2}"} if source else {})} for i, t in enumerate(TEXTS)]
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return f


# ---- stage keys ---------------------------------------------------------------------------


def test_eval_key_follows_the_contents_of_task_files(tmp_path: Path) -> None:
    mc = tmp_path / "mc.jsonl"
    mc.write_text('{"query": "a", "choices": ["b", "c"], "gold": 0}\n')
    tasks = tmp_path / "tasks"
    (tasks / "sub").mkdir(parents=True)
    (tasks / "sub" / "mine.yaml").write_text("task: mine\n")
    cfg = _load(tmp_path, f'[eval]\nmc_files = ["{mc}"]\ninclude_path = "{tasks}"\n')
    before = json.dumps(EvalStage(cfg).params, sort_keys=True)
    mc.write_text('{"query": "x", "choices": ["y", "z"], "gold": 1}\n')  # same path
    after_mc = json.dumps(EvalStage(cfg).params, sort_keys=True)
    assert after_mc != before
    (tasks / "sub" / "mine.yaml").write_text("task: mine\nnum_fewshot: 5\n")
    after_yaml = EvalStage(cfg).params
    assert json.dumps(after_yaml, sort_keys=True) != after_mc
    assert [p for p, _ in after_yaml["include_fingerprints"]] == ["sub/mine.yaml"]
    # Without task files the key holds nothing new (runs made before keep their key).
    plain = EvalStage(load_config(None, "smoke")).params
    assert "mc_fingerprints" not in plain and "include_fingerprints" not in plain


def _hf_teacher(d: Path) -> Path:
    _tokenizer(d)
    (d / "config.json").write_text("{}")
    (d / "model.safetensors").write_bytes(b"x" * 100)
    (d / "README.md").write_text("a teacher\n")  # no part of its tokenizer
    return d


def test_the_teachers_tokenizer_files_are_in_the_tokenizer_key(tmp_path: Path) -> None:
    teacher = _hf_teacher(tmp_path / "hf")
    cfg = _load(tmp_path, f'[teacher]\nmodel = "{teacher}"\n', preset="default")
    tok, model = TokenizerStage(cfg), TeacherModelStage(cfg)
    assert tok.reads == ("teacher_model",)
    conf = json.loads((teacher / "tokenizer_config.json").read_text())
    (teacher / "tokenizer_config.json").write_text(json.dumps({**conf, "eos_token": "<pad>"}))
    assert TokenizerStage(cfg).params != tok.params
    assert TeacherModelStage(cfg).params == model.params  # its fingerprint is as it was
    names = [n for n, _ in TokenizerStage(cfg).params["teacher_tokenizer"]]
    assert "tokenizer.json" in names and "tokenizer_config.json" in names
    assert sorted(p.name for p in teacher.iterdir() if p.suffix not in (".md", ".safetensors")) == [
        "config.json",
        *names,
    ]


def test_kd_ratio_is_in_the_vanilla_kd_students_key_only(tmp_path: Path) -> None:
    base = load_config(None, "smoke")
    other = _load(tmp_path, "[students]\nkd_ratio = 0.9\n")
    for v in ("miniplm", "random", "ppl"):
        assert StudentStage(base, v).params == StudentStage(other, v).params, v
    assert StudentStage(base, "kd").params != StudentStage(other, "kd").params


def test_another_reference_does_not_score_the_teacher_again(tmp_path: Path) -> None:
    """The teacher's pass is its own stage: a new reference (another stamp, another
    preset) changes the reference's scoring key, never the teacher's."""
    from miniplm.pipeline.select_stages import ScoreStage, TeacherScoreStage
    from miniplm.pipeline.stage import Context, stage_key

    cfg = load_config(None, "smoke")
    ctx = Context(cfg=cfg, root=tmp_path)
    ctx.done = {s: {"stamp": s} for s in ("data", "split", "teacher", "reference")}
    ctx.done["score-teacher"] = {"stamp": "t"}
    teacher, ref = TeacherScoreStage(cfg), ScoreStage(cfg)
    assert "reference" not in teacher.reads and "score-teacher" in ref.reads
    before = stage_key(teacher, ctx), stage_key(ref, ctx)
    ctx.done["reference"] = {"stamp": "another reference"}
    assert stage_key(teacher, ctx) == before[0] and stage_key(ref, ctx) != before[1]
    ctx.done["data"] = {"stamp": "another corpus"}
    assert stage_key(teacher, ctx) != before[0]


def test_a_new_baseline_leaves_the_other_students_as_they_were(tmp_path: Path) -> None:
    """Each baseline's selection is a stage of its own: adding perplexity filtering adds
    its stages and leaves every other student's key (and so its training) unchanged."""
    from miniplm.pipeline.stage import Context, stage_key
    from miniplm.pipeline.stages import build_stages

    def keys(cfg: RunConfig) -> dict[str, str]:
        ctx = Context(cfg=cfg, root=tmp_path)
        out = {}
        for st in build_stages(cfg):  # every stage's stamp: its key (same inputs, same stamp)
            out[st.name] = stage_key(st, ctx)
            ctx.done[st.name] = {"stamp": out[st.name]}
        return out

    one = _load(tmp_path, '[selection]\nbaselines = ["random"]\n')
    two = _load(tmp_path, '[selection]\nbaselines = ["random", "ppl"]\n', name="d.toml")
    a, b = keys(one), keys(two)
    assert set(b) - set(a) == {"select-ppl", "student-ppl"}
    # Only the evaluation, which reads every student, runs again.
    assert [n for n in a if a[n] != b[n]] == ["eval"]
    assert "student-random" in a and "student-miniplm" in a


def test_batch_docs_is_not_in_the_data_key_and_changes_no_output(tmp_path: Path) -> None:
    from miniplm import TokenDataset
    from miniplm.corpus.tokenize import tokenize_corpus

    base = load_config(None, "smoke")
    assert DataStage(_load(tmp_path, "[corpus]\nbatch_docs = 7\n")).params == DataStage(base).params
    # shard_size stays in the key: the shard layout is part of the dataset fingerprint.
    sharded = _load(tmp_path, '[corpus]\nshard_size = "20K"\n')
    assert DataStage(sharded).params != DataStage(base).params

    corpus, tok = _corpus(tmp_path), _tokenizer(tmp_path / "tok")

    def tokenize(out: str, **kw: Any) -> Path:
        opts = {"seq_len": 16, "reference_fraction": 0.2, "seed": 0, "workers": 1, **kw}
        tokenize_corpus([str(corpus)], tmp_path / out, str(tok), progress=False, **opts)
        return tmp_path / out

    one, many, shards = tokenize("a", batch_docs=1), tokenize("b"), tokenize("c", shard_size="256")
    files = sorted(p.name for p in one.iterdir())
    assert files == sorted(p.name for p in many.iterdir())
    for n in files:
        if n != "tokenize.json":  # elapsed time and rate differ
            assert (one / n).read_bytes() == (many / n).read_bytes(), n
    assert TokenDataset(one).fingerprint() == TokenDataset(many).fingerprint()
    assert TokenDataset(shards).fingerprint() != TokenDataset(many).fingerprint()


def test_max_bytes_with_corpus_inputs_is_out_of_the_key_and_warned(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    corpus = _corpus(tmp_path)
    inputs = f'[corpus]\ninputs = ["{corpus}"]\n'
    a = _load(tmp_path, inputs)
    assert capsys.readouterr().err == ""
    b = _load(tmp_path, inputs + "max_bytes = 1\n", name="d.toml")
    assert "corpus.max_bytes is ignored with corpus.inputs" in capsys.readouterr().err
    assert DataStage(a).params == DataStage(b).params
    # With the bundled corpus it caps the text: still in the key.
    bundled = _load(tmp_path, "[corpus]\nmax_bytes = 1000\n")
    assert DataStage(bundled).params != DataStage(load_config(None, "smoke")).params


# ---- merging a file over its preset -----------------------------------------------------


def test_a_partial_teacher_train_table_keeps_the_presets_other_keys(tmp_path: Path) -> None:
    cfg = _load(tmp_path, "[teacher.train]\nepochs = 2.0\n")
    preset = PRESETS["smoke"]["teacher"]["train"]
    assert cfg.teacher.train is not None and cfg.teacher.train.epochs == 2.0
    assert cfg.teacher.train.lr == preset["lr"]
    assert cfg.teacher.train.global_batch_size == preset["global_batch_size"]
    # A file's pretrained teacher still replaces the preset's trained one.
    assert _load(tmp_path, '[teacher]\nmodel = "smollm2"\n').teacher.train is None


def test_a_files_tokenizer_replaces_the_presets_other_way(tmp_path: Path) -> None:
    tok = _tokenizer(tmp_path / "tok")
    cfg = _load(tmp_path, f'[students.tokenizer]\npath = "{tok}"\n', preset="default")
    assert (cfg.students.tokenizer.path, cfg.students.tokenizer.train_bpe_vocab) == (str(tok), 0)
    cfg = _load(tmp_path, f'[tokenizer]\npath = "{tok}"\n')
    assert (cfg.tokenizer.path, cfg.tokenizer.train_bpe_vocab) == (str(tok), 0)
    cfg = _load(tmp_path, '[teacher]\nmodel = "smollm2"\n')
    assert (cfg.teacher.model, cfg.tokenizer.train_bpe_vocab) == ("smollm2", 0)
    # What the file gives itself is still checked.
    with pytest.raises(InputError, match=r"c\.toml: tokenizer: give path or train_bpe_vocab"):
        _load(tmp_path, f'[tokenizer]\npath = "{tok}"\ntrain_bpe_vocab = 300\n')
    with pytest.raises(InputError, match=r"tokenizer\.train_bpe_vocab: a pretrained teacher"):
        _load(tmp_path, '[teacher]\nmodel = "smollm2"\n[tokenizer]\ntrain_bpe_vocab = 300\n')


# ---- refused up front ---------------------------------------------------------------------


def test_bad_values_are_refused_naming_the_file_and_key(tmp_path: Path) -> None:
    def bad(text: str, match: str) -> None:
        with pytest.raises(InputError, match=match):
            _load(tmp_path, text)

    bad("teacher = 5\n", r"c\.toml: teacher: expected a table, got int")
    bad("seed = -1\n", r"c\.toml: seed: must lie in \[0, 2\*\*63\), got -1")
    bad('device = "gpu"\n', r"c\.toml: device: 'gpu' is not a device")
    bad('device = "cuda:x"\n', r"c\.toml: device: 'cuda:x'")
    bad("[eval]\nbatch_size = 0\n", r"c\.toml: eval\.batch_size: must be at least 1, got 0")
    bad(
        f'[eval]\ninclude_path = "{tmp_path / "nowhere"}"\n',
        r"c\.toml: eval\.include_path: .*nowhere is not a directory",
    )
    for device in ("auto", "cpu", "cuda", "cuda:1", "mps"):
        assert _load(tmp_path, f'device = "{device}"\n').device == device
    cfg = load_config(None, "smoke")
    cfg.seed = 2**63
    with pytest.raises(InputError, match=r"^seed: must lie in"):
        validate(cfg)
    cfg = load_config(None, "smoke")
    cfg.device = "tpu"  # as `--device tpu` sets it before validate
    with pytest.raises(InputError, match=r"^device: 'tpu' is not a device"):
        validate(cfg)


def test_eval_texts_need_distinct_base_names(tmp_path: Path) -> None:
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
        (tmp_path / d / "val.txt").write_text("some text\n")
    (tmp_path / "target").write_text("some text\n")
    with pytest.raises(InputError, match=r"c\.toml: eval\.texts: .*a/val\.txt and .*b/val\.txt"):
        _load(tmp_path, f'[eval]\ntexts = ["{tmp_path}/a/val.txt", "{tmp_path}/b/val.txt"]\n')
    with pytest.raises(InputError, match=r"eval\.texts: .*target: the base name 'target'"):
        _load(tmp_path, f'[eval]\ntexts = ["{tmp_path}/target"]\n')


def test_the_report_shows_the_eval_texts_files(tmp_path: Path) -> None:
    cfg = RunConfig()
    cfg.corpus.inputs, cfg.eval.texts = ["x.jsonl"], ["/data/dclm/val.jsonl"]
    t = TargetOut(texts=["/data/dclm/val.jsonl"], mc_files=[], works=[], group=None)
    inp: Any = SimpleNamespace(cfg=cfg, get=lambda name, kind: t)
    res = {"target": {"val.jsonl": {"bits_per_byte": 1.23, "mean_nll": 3.4, "bytes": 999}}}
    results = {"miniplm": res, "reference": res}
    md = "\n".join(target_section(inp, results, ["miniplm"], lambda v, f: [f(results[v])]))
    assert "| model | `val.jsonl` bits/byte | `val.jsonl` NLL/token |" in md
    assert "| reference LM | 1.2300 | 3.4000 |" in md


def test_a_missing_source_field_is_refused_up_front(tmp_path: Path) -> None:
    plain = _corpus(tmp_path, source=False)
    want = r"c\.toml: corpus\.source_field: .*plain\.jsonl:1: no source field 'source'"
    with pytest.raises(InputError, match=want):
        _load(tmp_path, f'[corpus]\ninputs = ["{plain}"]\n')
    cfg = _load(tmp_path, f'[corpus]\ninputs = ["{plain}"]\nsource_field = ""\n')
    assert cfg.corpus.source_field == ""
    assert _load(tmp_path, f'[corpus]\ninputs = ["{_corpus(tmp_path)}"]\n').corpus.inputs
