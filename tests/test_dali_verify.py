"""The check behind on_error="skip" for the DALI loader: DALI's own decoder, one pipeline reused
over the whole split (rebuilt only after a failure), the refused files named."""

from __future__ import annotations

import pytest

from dali_voc.loaders import dali_verify
from dali_voc.resolve import resolve
from tests.helpers import config_for, require_dali


@pytest.fixture
def built(monkeypatch):
    """Counts the decoder pipelines refused_by_dali builds."""
    require_dali()
    count = []
    real = dali_verify._decoder_pipeline

    def counting(resolved, batch_size):
        count.append(batch_size)
        return real(resolved, batch_size)

    monkeypatch.setattr(dali_verify, "_decoder_pipeline", counting)
    return count


def _images(root):
    """Every image and label file of the tree (JPEG and PNG: more than three chunks)."""
    return sorted(str(p) for p in root.rglob("JPEGImages/*.jpg")) + sorted(str(p) for p in root.rglob("SegmentationClass/*.png"))


def test_one_pipeline_checks_every_chunk_of_a_clean_split(synth_root, built):
    paths = _images(synth_root)
    assert len(paths) > 2 * dali_verify._BATCH  # several chunks, the last one short
    resolved = resolve(config_for(synth_root, "dali"))
    assert dali_verify.refused_by_dali(paths, resolved) == {}
    assert built == [dali_verify._BATCH]


def test_a_refused_file_is_named_and_costs_two_rebuilds(synth_root, tmp_path, built):
    bad = tmp_path / "not_an_image.jpg"
    bad.write_bytes(b"this is not a JPEG" * 64)
    paths = _images(synth_root)
    paths.insert(dali_verify._BATCH + 4, str(bad))  # in the second chunk
    resolved = resolve(config_for(synth_root, "dali"))
    refused = dali_verify.refused_by_dali(paths, resolved)
    assert list(refused) == [str(bad)] and "cannot decode it" in refused[str(bad)]
    # the first pipeline dies on the chunk, its successor on the bad file itself; the third
    # checks the rest of that chunk's files one by one and the last chunk
    assert len(built) == 3
