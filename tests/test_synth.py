import hashlib
import json

import numpy as np
from PIL import Image

from dali_voc.tools.synth import SIZE_TABLE, SynthSpec, sample_shape, synthesize_voc, write_sample
from dali_voc.datasets.scan import scan_samples
from dali_voc.datasets.voc import VOCLayout, read_split, voc_palette

# IJG's standard luminance table (natural order, first row) scaled to quality 95.
_IJG_LUMA_ROW0 = [16, 11, 10, 16, 24, 40, 51, 61]


def test_size_distribution_is_voc_like():
    rng = np.random.default_rng(0)
    shapes = [sample_shape(rng) for _ in range(4000)]
    small = np.mean([h < 320 or w < 480 for h, w in shapes])
    assert 0.20 <= small <= 0.30  # VOC train: 350 of 1464 (24%) dropped at 320x480
    assert np.mean([max(h, w) == 500 for h, w in shapes]) > 0.9
    assert np.mean([(h, w) == (375, 500) for h, w in shapes]) > 0.3
    assert abs(sum(w for *_, w in SIZE_TABLE) - 1.0) < 1e-9


def test_tree_statistics(synth_root):
    layout = VOCLayout.locate(synth_root)
    samples = scan_samples(layout, "trainval")
    assert len(samples) == 56
    jpeg_500x375 = [s.image.stat().st_size for s in samples if (s.height, s.width) == (375, 500)]
    assert len(jpeg_500x375) >= 10
    assert 90_000 <= np.mean(jpeg_500x375) <= 115_000  # VOC: ~90-110 KB at 500x375
    png_bytes = [s.label.stat().st_size for s in samples]
    assert 1_500 <= np.mean(png_bytes) <= 5_000  # VOC: ~3 KB
    for s in samples[:12]:
        with Image.open(s.image) as im:
            assert im.format == "JPEG" and im.mode == "RGB"
            luma = im.quantization[0]
            assert list(luma)[:8] == [max(1, (v * 10 + 50) // 100) for v in _IJG_LUMA_ROW0]  # quality 95
            assert im.layers == 3 and im.layer[0][1:3] == (2, 2)  # 4:2:0
        with Image.open(s.label) as lb:
            assert lb.mode == "P" and lb.getpalette()[:768] == voc_palette()
            idx = np.asarray(lb)
            assert (idx == 255).any(), "objects carry a void border"
            assert set(np.unique(idx).tolist()) <= set(range(21)) | {255}
            assert len(np.unique(idx)) >= 3  # background, >= 1 object, border


def test_content_is_textured_not_flat_or_white_noise(synth_root):
    layout = VOCLayout.locate(synth_root)
    image = np.asarray(Image.open(layout.image_path(read_split(layout, "train")[0])).convert("L"), np.float32)
    assert image.std() > 10  # not flat
    # Neighbouring pixels are strongly correlated, as in photographs (white noise: ~0).
    corr = np.corrcoef(image[:, :-1].ravel(), image[:, 1:].ravel())[0, 1]
    assert corr > 0.8


def test_splits_pair_names_and_are_disjoint(synth_root):
    layout = VOCLayout.locate(synth_root)
    train, val = read_split(layout, "train"), read_split(layout, "val")
    assert len(train) == 40 and len(val) == 16 and not set(train) & set(val)
    assert read_split(layout, "trainval") == train + val
    for name in train + val:
        assert layout.image_path(name).is_file() and layout.label_path(name).is_file()


def test_deterministic_for_a_seed(tmp_path):
    digest = {}
    for run, seed in (("a", 3), ("b", 3), ("c", 4)):
        voc = tmp_path / run / "VOCdevkit" / "VOC2012"
        (voc / "JPEGImages").mkdir(parents=True)
        (voc / "SegmentationClass").mkdir()
        write_sample(voc, 5, seed)
        digest[run] = [hashlib.sha1(p.read_bytes()).hexdigest() for p in sorted(voc.rglob("*.*"))]
    assert digest["a"] == digest["b"] and digest["a"] != digest["c"]


def test_regeneration_is_a_no_op(synth_root):
    voc = VOCLayout.locate(synth_root).root
    before = (voc / "dali_voc_synth.json").stat().st_mtime_ns
    synthesize_voc(synth_root, SynthSpec(num_train=40, num_val=16, seed=0), progress=False)
    assert (voc / "dali_voc_synth.json").stat().st_mtime_ns == before
    manifest = json.loads((voc / "dali_voc_synth.json").read_text())
    assert manifest["mean_jpeg_bytes"] > 0
