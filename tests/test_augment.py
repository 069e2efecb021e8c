"""Augmentation: the label resampling formula, presets, color jitter, and agreement between
the DALI loader (CPU operators) and the reference path for the parameters DALI drew."""

from __future__ import annotations

import colorsys
import dataclasses

import numpy as np
import pytest
import torch

from dali_voc.geometry.augment import PRESETS, Augmentation, draw_geometry, scale_factor, scaled_size
from dali_voc.config import IMAGENET_MEAN, IMAGENET_STD, LoaderConfig
from dali_voc.errors import OptionError
from dali_voc.resolve import resolve
from dali_voc.loaders.photometric import apply_jitter, draw_jitter
from dali_voc.geometry.windows import CropWindow, SampleGeometry, crop_with_pad, resample, source_pixels, valid_masks
from tests.helpers import config_for, decode_coordinates, image_levels, loader_for, raw_image, require_dali

#: Largest difference, in uint8 levels, between an image from DALI's resize (linear,
#: antialiased, of the window's region; CPU operators) and PIL's bilinear resize of the whole
#: image, both rounding to uint8; measured 1.0 over 10 epochs (mean 0.001).
RESIZE_LEVELS = 1.5
#: The same after the color jitter (which both paths run through the same torch code, so it
#: only carries the resize difference forward, amplified by contrast, saturation and hue up to
#: ~3.4x); measured 3.5 over 10 epochs (mean 0.0025).
JITTER_LEVELS = 5.0


def _loop_source(window, image_hw, crop_hw, scaled, flip):
    """The formula of dali_voc.geometry.windows, transcribed pixel by pixel with Python integers."""
    (top, left), (H, W), (ch, cw), (sh, sw) = window, image_hw, crop_hw, scaled
    out = {}
    for y in range(ch):
        for x in range(cw):
            ty, tx = top + y, left + (cw - 1 - x if flip else x)
            if 0 <= ty < sh and 0 <= tx < sw:
                out[y, x] = ((2 * ty + 1) * H // (2 * sh), (2 * tx + 1) * W // (2 * sw))
    return out


@pytest.mark.parametrize("case", [
    ((0, 0), (7, 9), (7, 9), (7, 9), False),      # identity
    ((2, 3), (7, 9), (14, 18), (5, 6), False),    # exactly 2x
    ((1, 0), (8, 10), (4, 5), (6, 7), True),      # exactly 0.5x, window past the scaled image, flipped
    ((-2, -3), (7, 9), (11, 13), (9, 12), True),  # odd factor, window above and left
    ((5, 4), (13, 17), (9, 23), (6, 8), False),   # shrink one axis, grow the other
    ((0, 0), (3, 4), (1, 1), (3, 4), True),       # scaled to one pixel
])
def test_source_pixels_follow_the_stated_formula_pixel_by_pixel(case):
    window, image_hw, scaled, crop_hw, flip = case
    rows, cols, row_ok, col_ok = source_pixels(np.array([window]), np.array([image_hw]), crop_hw,
                                               np.array([scaled]), np.array([flip]))
    want = _loop_source(window, image_hw, crop_hw, scaled, flip)
    got = {(y, x): (int(rows[0, y]), int(cols[0, x]))
           for y in range(crop_hw[0]) for x in range(crop_hw[1]) if row_ok[0, y] and col_ok[0, x]}
    assert got == want
    assert all(0 <= sy < image_hw[0] and 0 <= sx < image_hw[1] for sy, sx in got.values())


def test_unscaled_unflipped_resampling_is_the_plain_crop():
    rng = np.random.default_rng(0)
    array = rng.integers(0, 255, size=(13, 17), dtype=np.uint8)
    for window in [CropWindow(0, 0), CropWindow(-3, 4), CropWindow(5, -2), CropWindow(8, 10)]:
        assert np.array_equal(resample(array, SampleGeometry(window, (13, 17), False), (9, 11), fill=7), crop_with_pad(array, window, (9, 11), fill=7))
        assert np.array_equal(resample(array, SampleGeometry(window, (13, 17), True), (9, 11), fill=7),
                              crop_with_pad(array, window, (9, 11), fill=7)[:, ::-1])
    # exactly 2x: every source pixel becomes a 2x2 block
    assert np.array_equal(resample(array, SampleGeometry(CropWindow(0, 0), (26, 34), False), (26, 34)),
                          np.repeat(np.repeat(array, 2, axis=0), 2, axis=1))
    mask = valid_masks(np.array([[-3, 4]]), np.array([[13, 17]]), (9, 11), flips=np.array([1]))[0]
    assert np.array_equal(mask, valid_masks(np.array([[-3, 4]]), np.array([[13, 17]]), (9, 11))[0][:, ::-1])


def test_presets_and_explicit_settings():
    root = "."
    assert LoaderConfig(root).augmentation == Augmentation()
    assert LoaderConfig(root).small_image_policy == "drop"
    tv = LoaderConfig(root, augment="torchvision")
    assert tv.augmentation == PRESETS["torchvision"] and tv.small_image_policy == "pad"
    assert LoaderConfig(root, augment="torchvision", small_images="drop").small_image_policy == "drop"
    mm = LoaderConfig(root, augment="mmseg", jitter=(0, 0, 0, 0), flip_prob=0.25, scale_range=(0.75, 1.5))
    assert mm.augmentation == Augmentation((0.75, 1.5), 512, 0.25, None)
    assert LoaderConfig(root, scale_range=(1, 2)).augmentation == Augmentation((1.0, 2.0), 0, 0.0, None)
    for evaluation in (mm.evaluation(), mm.whole_image()):
        assert evaluation.augmentation == Augmentation()
    with pytest.raises(OptionError, match="top_left"):
        resolve(LoaderConfig(root, augment="torchvision", crop_placement="top_left", backend="reference"))
    for bad in (dict(augment="imagenet"), dict(scale_range=(2.0, 1.0)), dict(scale_range=(0.0, 1.0)),
                dict(flip_prob=1.5), dict(jitter=(0.1, 0.1, 0.1)), dict(jitter=(0.1, 0.1, 0.1, 0.7)),
                dict(scale_base=-1)):
        with pytest.raises(ValueError):
            LoaderConfig(root, **bad)


def test_reference_draws_scaled_sizes_in_range_and_keeps_textbook_windows():
    aug = PRESETS["torchvision"]
    sizes, flips = [], []
    for k in range(400):
        g = draw_geometry(np.random.default_rng([0, 0, k]), (375, 500), (320, 480), aug)
        sizes.append(g.scaled)
        flips.append(g.flip)
        assert 260 - 1 <= min(g.scaled) <= 1040 + 1 and g.scaled[1] * 375 == pytest.approx(g.scaled[0] * 500, abs=500)
    assert 0.4 < np.mean(flips) < 0.6 and len(set(sizes)) > 300
    plain = draw_geometry(np.random.default_rng([0, 0, 3]), (375, 500), (320, 480), Augmentation())
    assert plain.scaled == (375, 500) and not plain.flip
    assert scaled_size((375, 500), scale_factor((375, 500), 1.0, 520)) == (520, 693)


def _hsv_shift_reference(rgb: np.ndarray, shift: float) -> np.ndarray:
    return np.array([colorsys.hsv_to_rgb((h + shift) % 1.0, s, v)
                     for h, s, v in (colorsys.rgb_to_hsv(*p) for p in rgb.reshape(-1, 3))]).reshape(rgb.shape)


def test_color_jitter_follows_its_definitions_and_leaves_padding_at_zero():
    rng = np.random.default_rng(4)
    raw = rng.random((2, 3, 6, 7)).astype(np.float32)
    raw[1, :, 0, 0] = 0.5  # a gray pixel: no hue
    mean = np.array(IMAGENET_MEAN, np.float32).reshape(1, 3, 1, 1)
    std = np.array(IMAGENET_STD, np.float32).reshape(1, 3, 1, 1)
    row_ok = np.ones((2, 6), bool)
    col_ok = np.ones((2, 7), bool)
    col_ok[1, 5:] = False  # padding in sample 1
    images = torch.from_numpy((raw - mean) / std * (row_ok[:, None, :, None] & col_ok[:, None, None, :]))
    factors = np.array([[1.2, 0.7, 1.3, 0.15], [0.8, 1.4, 0.6, -0.3]], dtype=np.float32)
    got = apply_jitter(images, factors, row_ok, col_ok).numpy()
    assert (got[1][:, :, 5:] == 0).all()
    for b in range(2):
        inside = np.outer(row_ok[b], col_ok[b])
        v = np.clip(raw[b].astype(np.float64) * factors[b, 0], 0, 1)
        gray = 0.299 * v[0] + 0.587 * v[1] + 0.114 * v[2]
        level = gray[inside].mean()
        v = np.clip((v - level) * factors[b, 1] + level, 0, 1)
        gray = 0.299 * v[0] + 0.587 * v[1] + 0.114 * v[2]
        v = np.clip(gray + (v - gray) * factors[b, 2], 0, 1)
        v = _hsv_shift_reference(v.transpose(1, 2, 0), float(factors[b, 3])).transpose(2, 0, 1)
        want = (v - mean[0]) / std[0]
        assert np.abs(got[b][:, inside] - want[:, inside]).max() < 1e-4, b
    identity = apply_jitter(images, np.array([[1, 1, 1, 0]] * 2, np.float32), row_ok, col_ok)
    assert (identity - images).abs().max() < 1e-5
    draws = draw_jitter(3, 1, [5, 9], (0.1, 0.2, 0.3, 0.05))
    assert np.array_equal(draws, draw_jitter(3, 1, [5, 9], (0.1, 0.2, 0.3, 0.05)))
    assert np.array_equal(draws[1], draw_jitter(3, 1, [9], (0.1, 0.2, 0.3, 0.05))[0])  # per sample, not per batch
    assert (np.abs(draws - [1, 1, 1, 0]) <= [0.1, 0.2, 0.3, 0.05]).all()
    assert not np.array_equal(draws, draw_jitter(3, 2, [5, 9], (0.1, 0.2, 0.3, 0.05)))


def recreate(reference, position, batch, k):
    """Sample ``k`` of ``batch`` re-created on the reference path from the drawn parameters."""
    x, y = reference.load(position[int(batch.ids[k])], CropWindow(*batch.windows[k].tolist()),
                          tuple(batch.scaled[k].tolist()), bool(batch.flips[k]))
    scaled = batch.scaled[k:k + 1].numpy()
    _, _, row_ok, col_ok = source_pixels(batch.windows[k:k + 1].numpy(), scaled, reference.config.crop_size, scaled,
                                         batch.flips[k:k + 1].numpy())
    return apply_jitter(x[None], batch.jitter[k:k + 1].numpy(), row_ok, col_ok)[0], y


@pytest.mark.parametrize("preset", ["torchvision", "mmseg"])
def test_dali_cpu_batches_equal_the_reference_at_the_drawn_parameters(stripe_tree, preset):
    """Over three epochs: every label equals the reference path's at DALI's drawn scale, window
    and flip, pixel for pixel; images within the stated bound; both flips and a spread of
    scales occur; the jitter factors are the (seed, epoch, sample) draws."""
    require_dali()
    config = config_for(stripe_tree, "dali", batch_size=4, augment=preset, return_meta=True, void_label="ignore")
    loader = loader_for(config, shuffle=True)
    reference = loader_for(dataclasses.replace(config, backend="reference"), shuffle=True).dataset
    position = {s.index: i for i, s in enumerate(loader.selection.samples)}
    worst, flips, factors = 0.0, set(), set()
    for epoch in range(3):
        for batch in loader:
            for k in range(len(batch.ids)):
                x_ref, y_ref = recreate(reference, position, batch, k)
                assert torch.equal(batch.labels[k], y_ref), (preset, epoch, int(batch.ids[k]))
                worst = max(worst, float(image_levels(batch.images[k].cpu() - x_ref).abs().max()))
                sample = reference.samples[position[int(batch.ids[k])]]
                shorter = batch.scaled[k].tolist()[0 if sample.height <= sample.width else 1]
                base = PRESETS[preset].scale_base
                assert 0.5 * base - 1 <= shorter <= 2.0 * base + 1  # the shorter side is s * base
                flips.add(bool(batch.flips[k]))
                factors.add(shorter)
            want = draw_jitter(0, epoch, batch.ids.tolist(), PRESETS[preset].jitter) if preset == "mmseg" else None
            if want is not None:
                assert np.array_equal(batch.jitter.numpy(), want)
            else:
                assert (batch.jitter.numpy() == [1, 1, 1, 0]).all()
    assert flips == {False, True} and len(factors) > 10
    assert worst <= (JITTER_LEVELS if preset == "mmseg" else RESIZE_LEVELS), worst


def test_image_is_resampled_at_the_same_geometry_as_its_label(coord_tree):
    """Coordinate-encoding images: the coordinates read back from X (a linear resize keeps a
    linear ramp) are the centre of each output pixel mapped into the image, within a pixel,
    including flips; so the image went through the scale, window and flip its label did."""
    require_dali()
    config = config_for(coord_tree, "dali", batch_size=2, scale_range=(0.6, 1.7), flip_prob=0.5, return_meta=True)
    loader = loader_for(config, shuffle=True)
    heights = {s.index: (s.height, s.width) for s in loader.selection.samples}
    checked = 0
    for _ in range(2):
        for batch in loader:
            for k in range(len(batch.ids)):
                (H, W), (sh, sw) = heights[int(batch.ids[k])], batch.scaled[k].tolist()
                top, left = batch.windows[k].tolist()
                y, x, _ = decode_coordinates(raw_image(batch.images[k].numpy()))
                ch, cw = config.crop_size
                xs = np.arange(cw)
                tx = left + (cw - 1 - xs if bool(batch.flips[k]) else xs)
                ty = top + np.arange(ch)
                fy = (ty + 0.5) * H / sh - 0.5
                fx = (tx + 0.5) * W / sw - 0.5
                fy_grid, fx_grid = np.meshgrid(fy, fx, indexing="ij")
                # away from the encoding's wrap-arounds at multiples of 256 and from the borders
                usable = ((fy_grid % 256 > 3) & (fy_grid % 256 < 252) & (fx_grid % 256 > 3) & (fx_grid % 256 < 252)
                          & (fy_grid > 2) & (fy_grid < H - 3) & (fx_grid > 2) & (fx_grid < W - 3)
                          & (ty[:, None] >= 0) & (ty[:, None] < sh) & (tx[None, :] >= 0) & (tx[None, :] < sw))
                assert usable.sum() > 1000
                assert np.abs(y[usable] - fy_grid[usable]).max() <= 1.0
                assert np.abs(x[usable] - fx_grid[usable]).max() <= 1.0
                checked += 1
    assert checked >= 8


def test_reference_loader_batches_are_their_own_recreation(stripe_tree):
    """The reference loader's batches (workers, collate, jitter) equal the sample-by-sample
    re-creation from their reported parameters, bit for bit."""
    config = config_for(stripe_tree, "reference", batch_size=3, augment="mmseg", return_meta=True, num_workers=2)
    loader = loader_for(config, shuffle=True)
    position = {s.index: i for i, s in enumerate(loader.selection.samples)}
    for batch in loader:
        for k in range(len(batch.ids)):
            x_ref, y_ref = recreate(loader.dataset, position, batch, k)
            assert torch.equal(batch.labels[k], y_ref) and torch.equal(batch.images[k], x_ref)


def test_augmented_dali_loader_resumes_from_its_state(stripe_tree):
    """DALI's checkpoint carries the scale and flip generators: a restored loader continues
    with the batches an uninterrupted one yields."""
    require_dali()
    config = config_for(stripe_tree, "dali", batch_size=2, augment="mmseg", return_meta=True)
    whole = [b for b in loader_for(config, shuffle=True)]
    first = loader_for(config, shuffle=True)
    it = iter(first)
    next(it)
    state = first.state_dict()
    resumed = loader_for(config, shuffle=True)
    resumed.load_state_dict(state)
    rest = list(resumed)
    assert len(rest) == len(whole) - 1
    for got, want in zip(rest, whole[1:]):
        for a, b in zip(got, want):
            assert torch.equal(a, b)
