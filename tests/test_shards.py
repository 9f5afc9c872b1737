"""Token shards: the native reader against an independent writer of Megatron's layout
(and the native writer against an independent reader), gathers, views, corruption."""

from __future__ import annotations

import struct
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import miniplm
from miniplm import FormatError, InputError, TokenDataset

from reference import megatron_read, megatron_write


@st.composite
def corpora(draw: st.DrawFn) -> tuple[Any, list[list[np.ndarray]]]:
    dtype = draw(st.sampled_from([np.uint16, np.int32]))
    hi = 65535 if dtype == np.uint16 else 2**31 - 1
    shards = draw(
        st.lists(
            st.lists(st.lists(st.integers(0, hi), max_size=40), max_size=12), min_size=1, max_size=4
        )
    )
    return dtype, [[np.array(s, dtype=dtype) for s in shard] for shard in shards]


@given(corpora(), st.data())
def test_reader_matches_independent_writer(corpus: Any, data: st.DataObject) -> None:
    dtype, shards = corpus
    flat = [s for shard in shards for s in shard]
    with tempfile.TemporaryDirectory() as tmp:
        for k, shard in enumerate(shards):
            megatron_write(Path(tmp) / f"corpus_{k}", shard, dtype)
        ds = TokenDataset(tmp)  # a directory holding one family of shards
        assert len(ds) == len(flat)
        assert ds.num_tokens == sum(len(s) for s in flat)
        assert ds.dtype == np.dtype(dtype)
        for i, s in enumerate(flat):
            np.testing.assert_array_equal(ds[i], s)
            assert not ds[i].flags.writeable
        np.testing.assert_array_equal(ds.lengths(), [len(s) for s in flat])
        if flat:
            ids = np.array(data.draw(st.lists(st.integers(0, len(flat) - 1), max_size=9)))
            cols = data.draw(st.integers(1, 50))
            batch, lengths = ds.gather(ids, cols, pad_id=-7)
            for row, i in zip(range(len(ids)), ids):
                want = np.full(cols, -7, dtype=np.int64)
                m = min(cols, len(flat[i]))
                want[:m] = flat[i][:m]
                np.testing.assert_array_equal(batch[row], want)
                assert lengths[row] == m
            out32 = np.zeros((len(ids), cols), dtype=np.int32)
            if dtype == np.uint16:
                ds.gather(ids, out=out32, pad_id=-1)
                np.testing.assert_array_equal(out32, np.where(batch == -7, -1, batch))


@given(corpora(), st.data())
def test_build_output_read_by_independent_reader(corpus: Any, data: st.DataObject) -> None:
    dtype, shards = corpus
    flat = [s for shard in shards for s in shard]
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        for k, shard in enumerate(shards):
            megatron_write(d / f"c_{k}", shard, dtype)
        n = len(flat)
        chosen = sorted(data.draw(st.sets(st.integers(0, max(n - 1, 0)), max_size=n))) if n else []
        np.save(d / "nll.npy", np.array([0.0 if i in chosen else 1.0 for i in range(n)]))
        miniplm.select(d / "sel", teacher_nll=d / "nll.npy", by="teacher", count=len(chosen))
        rep = miniplm.build(d / "c", d / "sel", d / "out", shard_size=64)
        assert rep["num_instances"] == len(chosen)
        got = []
        for k in range(len(list((d / "out").glob("*.idx")))):
            dt, seqs = megatron_read(d / "out" / f"refined_{k}")
            assert dt == np.dtype(dtype)
            got += seqs
        assert len(got) == len(chosen)
        for g, i in zip(got, chosen):
            np.testing.assert_array_equal(g, flat[i])
        np.testing.assert_array_equal(np.load(d / "out" / "source_ids.npy"), chosen)


def test_shuffled_build_and_views(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    seqs = [rng.integers(0, 1000, rng.integers(0, 30)).astype(np.uint16) for _ in range(500)]
    megatron_write(tmp_path / "ds", seqs, np.uint16)
    np.save(tmp_path / "nll.npy", rng.random(500))
    miniplm.select(tmp_path / "sel", teacher_nll=tmp_path / "nll.npy", by="teacher", ratio=0.4)
    ids, _ = miniplm.load_selection(tmp_path / "sel")
    a = miniplm.build(tmp_path / "ds", tmp_path / "sel", tmp_path / "a", shuffle=True, seed=1)
    b = miniplm.build(tmp_path / "ds", tmp_path / "sel", tmp_path / "b", shuffle=True, seed=1)
    c = miniplm.build(tmp_path / "ds", tmp_path / "sel", tmp_path / "c", shuffle=True, seed=2)
    src_a = np.load(tmp_path / "a" / "source_ids.npy")
    assert sorted(src_a.tolist()) == ids.tolist() and src_a.tolist() != ids.tolist()
    np.testing.assert_array_equal(src_a, np.load(tmp_path / "b" / "source_ids.npy"))
    assert src_a.tolist() != np.load(tmp_path / "c" / "source_ids.npy").tolist()
    assert a["num_tokens"] == b["num_tokens"] == c["num_tokens"] == sum(len(seqs[i]) for i in ids)
    out = TokenDataset(tmp_path / "a")
    for j, i in enumerate(src_a):
        np.testing.assert_array_equal(out[j], seqs[i])
    view = TokenDataset(tmp_path / "ds").select(tmp_path / "sel")
    assert len(view) == len(ids)
    for j, i in enumerate(ids):
        np.testing.assert_array_equal(view[j], seqs[i])
    batch, lengths = view.gather(np.arange(len(ids)), 8)
    assert lengths.tolist() == [min(8, len(seqs[i])) for i in ids]
    for row, i in zip(batch, ids):
        m = min(8, len(seqs[i]))
        np.testing.assert_array_equal(row[:m], seqs[i][:m])
        assert (row[m:] == 0).all()
    with pytest.raises(FileExistsError):
        miniplm.build(tmp_path / "ds", tmp_path / "sel", tmp_path / "a")


def test_empty_shard_and_single_prefix(tmp_path: Path) -> None:
    megatron_write(tmp_path / "empty", [], np.uint16)
    ds = TokenDataset(tmp_path / "empty")
    assert len(ds) == 0 and ds.num_tokens == 0
    with pytest.raises(IndexError):
        ds[0]
    megatron_write(tmp_path / "multi_0", [np.arange(3)], np.int32)
    megatron_write(tmp_path / "multi_1", [np.arange(4)], np.int32)
    assert len(TokenDataset(tmp_path / "multi")) == 2  # prefix with _0, _1 shards


def _corrupt(tmp_path: Path, edit: Any) -> Path:
    prefix = tmp_path / "bad"
    megatron_write(prefix, [np.arange(5), np.arange(3)], np.uint16)
    idx = bytearray(Path(f"{prefix}.idx").read_bytes())
    binary = bytearray(Path(f"{prefix}.bin").read_bytes())
    idx, binary = edit(idx, binary)
    Path(f"{prefix}.idx").write_bytes(bytes(idx))
    Path(f"{prefix}.bin").write_bytes(bytes(binary))
    return prefix


CORRUPTIONS = {
    "magic": lambda i, b: (b"XXXXXXX\x00\x00" + i[9:], b),
    "version": lambda i, b: (i[:9] + struct.pack("<Q", 2) + i[17:], b),
    "dtype": lambda i, b: (i[:17] + b"\x63" + i[18:], b),
    "count": lambda i, b: (i[:18] + struct.pack("<Q", 2**61) + i[26:], b),
    "size": lambda i, b: (i[:-3], b),  # truncated .idx
    "bin": lambda i, b: (i, b[:-2]),  # truncated .bin
    "pointer": lambda i, b: (i[: 34 + 8 + 8] + struct.pack("<q", 999) + i[34 + 8 + 16 :], b),
    "negative": lambda i, b: (i[:34] + struct.pack("<i", -5) + i[38:], b),
    "document": lambda i, b: (i[:-8] + struct.pack("<q", 7), b),
}


@pytest.mark.parametrize("what", sorted(CORRUPTIONS))
def test_corruption_is_a_clear_error(tmp_path: Path, what: str) -> None:
    prefix = _corrupt(tmp_path, CORRUPTIONS[what])
    with pytest.raises(FormatError, match=r"bad\.(idx|bin)") as err:
        TokenDataset(prefix)
    assert "bad" in str(err.value)


def test_dataset_layout_errors(tmp_path: Path) -> None:
    megatron_write(tmp_path / "a_0", [np.arange(3)], np.uint16)
    megatron_write(tmp_path / "a_2", [np.arange(3)], np.uint16)
    with pytest.raises((FormatError, InputError), match="a_1"):
        TokenDataset(tmp_path / "a")
    megatron_write(tmp_path / "m_0", [np.arange(3)], np.uint16)
    megatron_write(tmp_path / "m_1", [np.arange(3)], np.int32)
    with pytest.raises((FormatError, InputError), match="dtype"):
        TokenDataset(tmp_path / "m")
    (tmp_path / "b_0.bin").unlink(missing_ok=True)
    megatron_write(tmp_path / "lone", [np.arange(3)], np.uint16)
    Path(f"{tmp_path / 'lone'}.bin").unlink()
    with pytest.raises(FileNotFoundError, match=r"lone\.bin"):
        TokenDataset(tmp_path / "lone")
    with pytest.raises(FileNotFoundError):
        TokenDataset(tmp_path / "nothing_here")


def test_build_refuses_bad_selection(tmp_path: Path) -> None:
    megatron_write(tmp_path / "ds", [np.arange(3)] * 5, np.uint16)
    sel = tmp_path / "sel"
    sel.mkdir()
    (sel / "selection.json").write_text('{"format": "miniplm.selection"}')
    np.save(sel / "ids.npy", np.array([3, 1], dtype=np.uint64))
    with pytest.raises(FormatError, match=r"ids\.npy"):
        miniplm.build(tmp_path / "ds", sel, tmp_path / "out")
    np.save(sel / "ids.npy", np.array([1, 5], dtype=np.uint64))
    with pytest.raises((FormatError, InputError), match=r"ids\.npy"):
        miniplm.build(tmp_path / "ds", sel, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds.bin", "ds.idx", "sel"]


def test_indices_must_be_integers(tmp_path: Path) -> None:
    megatron_write(tmp_path / "c", [np.array([1, 2]), np.array([3]), np.array([4])], np.uint16)
    ds = TokenDataset(tmp_path / "c")
    assert ds[np.int64(1)].tolist() == [3]
    assert ds[np.uint8(2)].tolist() == [4]
    for bad in [1.5, True, np.float64(1.0), np.bool_(True), "1"]:
        with pytest.raises(TypeError, match="integer"):
            ds[bad]  # type: ignore[index]
    for ids in [[0.5, 1.2], np.array([0.0]), [True, False]]:
        with pytest.raises(TypeError, match="integers"):
            ds.gather(np.asarray(ids), 2)
    out, _ = ds.gather(np.array([], dtype=np.int64), 2)
    assert out.shape == (0, 2)
    view = ds.select(np.array([0, 2], dtype=np.uint64))
    assert view[1].tolist() == [4]
    with pytest.raises(TypeError):
        view[0.0]  # type: ignore[index]
    with pytest.raises(TypeError):
        view.gather(np.array([0.7]), 2)


def test_token_range_and_vocab_check(tmp_path: Path) -> None:
    megatron_write(tmp_path / "c_0", [np.array([0, 7]), np.array([3])], np.int32)
    megatron_write(tmp_path / "c_1", [np.array([1, -2]), np.array([50])], np.int32)
    ds = TokenDataset(tmp_path)
    assert ds.token_range() == (-2, 50)
    with pytest.raises(InputError, match=r"instance 2 holds token id -2"):
        ds.check_vocab(100)
    megatron_write(tmp_path / "c_1", [np.array([1, 2]), np.array([50])], np.int32)
    ds = TokenDataset(tmp_path)
    ds.check_vocab(51)
    with pytest.raises(InputError, match=rf"{tmp_path}.*instance 3 holds token id 50"):
        ds.check_vocab(50)


def test_datatrove_prefixes_as_glob_or_list(tmp_path: Path) -> None:
    for k in range(3):
        megatron_write(tmp_path / f"{k:05d}_tokens", [np.array([k]), np.array([k, k])], np.uint16)
    with pytest.raises(InputError, match="several datasets"):
        TokenDataset(tmp_path)
    glob = TokenDataset(f"{tmp_path}/*_tokens")
    assert len(glob) == 6 and glob[2].tolist() == [1]
    assert glob.record() == f"{tmp_path}/*_tokens"
    listed = TokenDataset([tmp_path / "00002_tokens", tmp_path / "00000_tokens"])
    assert [listed[i].tolist() for i in range(4)] == [[2], [2, 2], [0], [0, 0]]
    assert listed.record() == [str(tmp_path / "00002_tokens"), str(tmp_path / "00000_tokens")]
    assert glob.fingerprint().startswith("xxh3c:")
    assert glob.fingerprint() != listed.fingerprint()


def test_selection_is_tied_to_its_dataset(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    seqs = [rng.integers(0, 1000, 5).astype(np.uint16) for _ in range(20)]
    megatron_write(tmp_path / "ds", seqs, np.uint16)
    megatron_write(tmp_path / "small", seqs[:19], np.uint16)
    megatron_write(tmp_path / "same", seqs[::-1], np.uint16)
    ds = TokenDataset(tmp_path / "ds")
    info = miniplm.select(tmp_path / "sel", random=True, ratio=0.5, data=tmp_path / "ds")
    assert info["dataset"] == {
        "num_instances": 20,
        "fingerprint": ds.fingerprint(),
        "path": str(tmp_path / "ds"),
    }
    assert len(ds.select(tmp_path / "sel")) == 10
    for other, what in [("small", "dataset of 20 instances"), ("same", "another dataset")]:
        with pytest.raises(InputError, match=what):
            TokenDataset(tmp_path / other).select(tmp_path / "sel")
        with pytest.raises(InputError, match=what):
            miniplm.build(tmp_path / other, tmp_path / "sel", tmp_path / "out")
    # Plain .npy scores: only the count is known, unless --data is given.
    np.save(tmp_path / "nll.npy", rng.random(20))
    info = miniplm.select(tmp_path / "s2", teacher_nll=tmp_path / "nll.npy", by="teacher", count=5)
    assert info["dataset"] == {"num_instances": 20, "fingerprint": None, "path": None}
    TokenDataset(tmp_path / "same").select(tmp_path / "s2")
    with pytest.raises(InputError, match="dataset of 20 instances"):
        TokenDataset(tmp_path / "small").select(tmp_path / "s2")
    # A garbage or foreign selection.json names the file.
    (tmp_path / "s2" / "selection.json").write_text("{garbage")
    with pytest.raises(FormatError, match=r"selection\.json.*JSON"):
        ds.select(tmp_path / "s2")
    with pytest.raises(FormatError, match=r"selection\.json.*JSON"):
        miniplm.load_selection(tmp_path / "s2")
    (tmp_path / "s2" / "selection.json").write_text("[]")
    with pytest.raises(FormatError, match="not a selection"):
        ds.select(tmp_path / "s2")
    # Unsorted or duplicate ids are refused, from a file or an array.
    for bad in [[3, 1], [1, 1]]:
        with pytest.raises(InputError, match="ascending"):
            ds.select(np.array(bad))
        sel = ds.write_selection(tmp_path / "given", np.array([1, 3]), "test", overwrite=True)
        np.save(sel / "ids.npy", np.array(bad, dtype=np.uint64))
        with pytest.raises(FormatError, match="ascending"):
            ds.select(sel)
    # The core writer sorts and records the binding.
    sel = ds.write_selection(tmp_path / "given", np.array([7, 2, 7]), "test", overwrite=True)
    assert ds.select(sel).ids.tolist() == [2, 7]
    meta = miniplm.load_selection(sel)[1]
    assert meta["mode"] == "given" and meta["num_selected"] == 2
    assert meta["dataset"]["fingerprint"] == ds.fingerprint()


def test_selection_from_score_runs_records_their_dataset(tmp_path: Path) -> None:
    from miniplm.scores import write_score_run

    seqs = [np.arange(i % 5 + 1, dtype=np.uint16) for i in range(12)]
    megatron_write(tmp_path / "ds", seqs, np.uint16)
    megatron_write(tmp_path / "other", seqs[::-1], np.uint16)
    ds, other = TokenDataset(tmp_path / "ds"), TokenDataset(tmp_path / "other")
    rng = np.random.default_rng(1)
    cnt = np.full(12, 3)
    for name, d in [("t", ds), ("r", ds), ("x", other)]:
        rec = {"path": str(d.path), "fingerprint": d.fingerprint()}
        write_score_run(tmp_path / name, rng.random(12), cnt, dataset=rec)
    info = miniplm.select(
        tmp_path / "sel", teacher=tmp_path / "t", reference=tmp_path / "r", count=4
    )
    assert info["dataset"]["fingerprint"] == ds.fingerprint()
    assert info["dataset"]["path"] == str(tmp_path / "ds")
    with pytest.raises(InputError, match="another dataset"):
        other.select(tmp_path / "sel")
    with pytest.raises(InputError, match="different datasets"):
        miniplm.select(tmp_path / "s2", teacher=tmp_path / "t", reference=tmp_path / "x", count=4)
    with pytest.raises(InputError, match="different datasets"):
        miniplm.select(
            tmp_path / "s3", teacher=tmp_path / "t", data=tmp_path / "other", by="teacher", count=4
        )
    assert not (tmp_path / "s2").exists() and not (tmp_path / "s3").exists()


def test_glob_dataset_through_select_build_and_inspect(tmp_path: Path) -> None:
    from miniplm import _core

    (tmp_path / "dt").mkdir()
    for k in range(2):
        seqs = [np.array([k, i], dtype=np.uint16) for i in range(6)]
        megatron_write(tmp_path / "dt" / f"{k:05d}_tokens", seqs, np.uint16)
    glob = str(tmp_path / "dt" / "*_tokens")
    info = miniplm.select(tmp_path / "sel", random=True, count=5, data=glob)
    assert info["dataset"]["path"] == glob and info["num_instances"] == 12
    rep = miniplm.build(glob, tmp_path / "sel", tmp_path / "out")
    assert rep["dataset"]["path"] == glob
    assert rep["dataset"]["fingerprint"] == TokenDataset(glob).fingerprint()
    argv = ["miniplm-sample", "--quiet", "inspect", "--json", glob]
    assert _core.sample_main(argv) == 0
    assert miniplm.inspect(glob)["num_instances"] == 12
