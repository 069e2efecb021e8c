"""Packed data that disagrees with its manifest, in a local folder: ``check DEST`` names each
fault with its file, and both loaders stop with an error naming the shard or member (never a
hang, never a label read out of step). Object-store failures are in tests/test_s3.py."""

from __future__ import annotations

import io
import json
import shutil
import tarfile

import pytest

from dali_voc.cli import main
from dali_voc.datasets.packed import MANIFEST_NAME
from dali_voc.errors import PackError, SampleDecodeError
from dali_voc.tools.check_pack import check_pack
from dali_voc.tools.pack import pack_tree
from tests.helpers import broken_tree, config_for, loader_for, require_dali, _cut

SHARD = 600_000
CROP = (200, 240)


@pytest.fixture(scope="module")
def pristine(synth_root, tmp_path_factory):
    dest = tmp_path_factory.mktemp("pristine")
    pack_tree(synth_root, str(dest), splits=["train"], shard_bytes=SHARD, workers=2, progress=False)
    return dest


@pytest.fixture
def pack(pristine, tmp_path):
    shutil.copytree(pristine, tmp_path / "pack")
    return tmp_path / "pack"


def _manifest(pack):
    return json.loads((pack / MANIFEST_NAME).read_text())


def _first_shard(pack):
    return pack / _manifest(pack)["splits"]["train"]["shards"][0]["name"]


def _rewrite_without(shard, member_suffix: str) -> str:
    """Rewrite ``shard`` without its first member ending in ``member_suffix``; returns its name."""
    with tarfile.open(shard) as tf:
        members = [(m, tf.extractfile(m).read()) for m in tf.getmembers()]
    dropped = next(m.name for m, _ in members if m.name.endswith(member_suffix))
    with tarfile.open(shard, "w", format=tarfile.PAX_FORMAT) as tf:
        for m, data in members:
            if m.name != dropped:
                tf.addfile(m, io.BytesIO(data))
    return dropped


def _both_loaders_fail_naming(pack, text: str):
    for backend in ("reference", "dali"):
        if backend == "dali":
            require_dali()
        loader = loader_for(config_for(pack, backend, batch_size=4, crop_size=CROP), shuffle=True)
        with pytest.raises(SampleDecodeError) as caught:
            for _ in loader:
                pass
        assert text in str(caught.value), (backend, str(caught.value))


def test_a_pristine_pack_checks_clean(pristine, capsys):
    assert check_pack(str(pristine)).clean
    assert main(["check", str(pristine)]) == 0
    assert "clean" in capsys.readouterr().out


def test_truncated_shard(pack):
    shard = _first_shard(pack)
    _cut(shard)
    kinds = {p.kind for p in check_pack(str(pack), progress=False).problems}
    assert {"shard-size", "unreadable-shard"} <= kinds or {"shard-size", "member-mismatch"} <= kinds, kinds
    _both_loaders_fail_naming(pack, shard.name)


def test_shard_missing_a_member(pack):
    shard = _first_shard(pack)
    dropped = _rewrite_without(shard, ".png")
    problems = check_pack(str(pack), progress=False).problems
    assert any(p.kind == "member-mismatch" and dropped in p.detail for p in problems), problems
    _both_loaders_fail_naming(pack, shard.name)


def test_index_disagreeing_with_its_tar(pack):
    index = pack / _manifest(pack)["splits"]["train"]["shards"][0]["index"]
    lines = index.read_text().splitlines()
    fields = lines[1].split()
    fields[1] = str(int(fields[1]) + 512)  # the first member's offset
    index.write_text("\n".join([lines[0], " ".join(fields), *lines[2:]]) + "\n")
    problems = check_pack(str(pack), progress=False).problems
    assert [p.kind for p in problems] == ["index-mismatch"] and fields[3] in problems[0].detail
    assert problems[0].path.endswith(index.name)


def test_shard_changed_in_place_fails_its_sha256(pack):
    shard = _first_shard(pack)
    data = bytearray(shard.read_bytes())
    data[1000] ^= 0xFF  # inside the first image's data: same size, same headers
    shard.write_bytes(bytes(data))
    problems = check_pack(str(pack), progress=False).problems
    assert [p.kind for p in problems] == ["shard-sha256"] and problems[0].path.endswith(shard.name)


def test_manifest_disagreeing_with_itself_or_the_shards(pack):
    manifest = _manifest(pack)
    manifest["splits"]["train"]["shards"][0]["samples"] += 1
    (pack / MANIFEST_NAME).write_text(json.dumps(manifest))
    kinds = {p.kind for p in check_pack(str(pack), progress=False).problems}
    assert {"count-mismatch", "index-mismatch"} <= kinds, kinds
    for backend in ("reference", "dali"):
        if backend == "dali":
            require_dali()
        with pytest.raises(PackError, match="disagrees with itself"):
            loader_for(config_for(pack, backend, batch_size=4, crop_size=CROP))


def test_impossible_member_records_are_refused_at_construction(pack):
    manifest = _manifest(pack)
    sample = manifest["splits"]["train"]["samples"][0]
    sample["label"], sample["id"] = sample["id"], sample["label"]  # members swapped in the record
    (pack / MANIFEST_NAME).write_text(json.dumps(manifest))
    for backend in ("reference", "dali"):
        if backend == "dali":
            require_dali()
        with pytest.raises(PackError, match=f"impossible members for sample '{sample['name']}'"):
            loader_for(config_for(pack, backend, batch_size=4, crop_size=CROP))


def test_manifest_offset_out_of_step_is_named_by_both_loaders(pack):
    manifest = _manifest(pack)
    sample = manifest["splits"]["train"]["samples"][0]
    sample["label"][0] += 512  # a block into the label's data
    (pack / MANIFEST_NAME).write_text(json.dumps(manifest))
    problems = check_pack(str(pack), progress=False).problems
    assert any(p.kind == "member-mismatch" and sample["name"] in p.detail for p in problems)
    _both_loaders_fail_naming(pack, sample["name"])


def test_pack_refuses_a_tree_with_errors_or_skips_them(tmp_path):
    from tests.helpers import _image
    tree = broken_tree(tmp_path / "tree", lambda voc: _cut(_image(voc)))  # sample s_0002's JPEG cut short
    with pytest.raises(PackError, match="sample\\(s\\) with errors"):
        pack_tree(tree, str(tmp_path / "refused"), splits=["train"], progress=False)
    assert not (tmp_path / "refused" / MANIFEST_NAME).exists()
    report = pack_tree(tree, str(tmp_path / "skipped"), splits=["train"], skip_bad=True, progress=False)
    (name, why), = report.left_out["train"]
    assert name == "s_0002" and "s_0002.jpg" in why
    loader = loader_for(config_for(tmp_path / "skipped", "reference", batch_size=1, crop_size=(64, 64)))
    assert [n for n, _ in loader.selection.skipped] == [name]
    assert loader.selection.total == report.packed["train"] + 1


def test_an_id_member_of_another_sample_is_named_not_loaded(pack):
    """The manifest points a kept sample's ``.id`` at a sample the loader dropped (too small):
    DALI, which reads the ``.id`` members, would return an index that is not the loader's and
    names the disagreement; the reference path does not read ``.id`` members and loads the
    right bytes."""
    require_dali()
    crop = (400, 480)
    manifest = _manifest(pack)
    samples = manifest["splits"]["train"]["samples"]
    small = [s for s in samples if s["height"] < crop[0] or s["width"] < crop[1]]
    kept = [s for s in samples if s not in small and any(t["shard"] == s["shard"] for t in small)]
    victim = kept[0]
    victim["id"] = next(t for t in small if t["shard"] == victim["shard"])["id"]
    (pack / MANIFEST_NAME).write_text(json.dumps(manifest))
    reference = loader_for(config_for(pack, "reference", batch_size=2, crop_size=crop, last_batch="partial",
                                      return_meta=True), shuffle=True)
    assert sorted(i for b in reference for i in b.ids.tolist()) == [s.index for s in reference.selection.samples]
    loader = loader_for(config_for(pack, "dali", batch_size=2, crop_size=crop), shuffle=True)
    with pytest.raises(SampleDecodeError, match="not one of the loader's samples"):
        for _ in loader:
            pass


def test_reference_refuses_a_member_the_manifest_places_on_another_samples_bytes(tmp_path):
    """Two samples of one size whose label records are swapped in the manifest: both labels
    decode fine at either place, so only the tar header before each member tells (the
    reference path checks it; ``check`` reports it)."""
    tree = broken_tree(tmp_path / "tree", lambda voc: None)  # five samples, all 330x490, distinct labels
    pack_tree(tree, str(tmp_path / "pack"), splits=["train"], progress=False)
    manifest = _manifest(tmp_path / "pack")
    a, b = manifest["splits"]["train"]["samples"][:2]
    a["label"], b["label"] = b["label"], a["label"]
    (tmp_path / "pack" / MANIFEST_NAME).write_text(json.dumps(manifest))
    assert any(p.kind == "member-mismatch" for p in check_pack(str(tmp_path / "pack"), progress=False).problems)
    loader = loader_for(config_for(tmp_path / "pack", "reference", batch_size=5, crop_size=(64, 64)))
    with pytest.raises(SampleDecodeError, match="the shard and its manifest disagree"):
        next(iter(loader))
