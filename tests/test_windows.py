import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from dali_voc.loaders.reference import crop_window_for
from dali_voc.datasets.scan import Sample
from dali_voc.geometry.windows import (CropWindow, anchor_from_uniform, anchor_range, crop_with_pad, random_window,
                              valid_mask)
from tests.helpers import coordinate_rgb, decode_coordinates


def test_anchor_covers_its_whole_range_uniformly():
    # 10 possible anchors (slack 9): each appears about 1/10 of the time.
    rng = np.random.default_rng(0)
    anchors = [anchor_from_uniform(u, 329, 320) for u in rng.random(20000)]
    counts = np.bincount(anchors)
    assert len(counts) == 10
    assert counts.min() > 1700 and counts.max() < 2300


def test_anchor_when_the_image_is_smaller_is_negative_or_zero():
    assert anchor_range(300, 320) == (-20, 0)
    values = {anchor_from_uniform(u, 300, 320) for u in np.linspace(0, 0.9999, 500)}
    assert values == set(range(-20, 1))


@settings(max_examples=200, deadline=None)
@given(h=st.integers(1, 700), w=st.integers(1, 700), ch=st.integers(1, 600), cw=st.integers(1, 600),
       seed=st.integers(0, 2**32 - 1))
def test_window_stays_in_its_range_and_the_crop_reads_the_right_pixels(h, w, ch, cw, seed):
    window = random_window(np.random.default_rng(seed), (h, w), (ch, cw))
    lo_y, hi_y = anchor_range(h, ch)
    lo_x, hi_x = anchor_range(w, cw)
    assert lo_y <= window.top <= hi_y and lo_x <= window.left <= hi_x
    mask = valid_mask(window, (h, w), (ch, cw))
    # The window always covers min(image, crop) pixels per dimension: no image row is lost
    # when the image is smaller, and no pad appears when it is larger.
    assert mask.sum() == min(h, ch) * min(w, cw)


@settings(max_examples=60, deadline=None)
@given(h=st.integers(5, 300), w=st.integers(5, 300), ch=st.integers(1, 320), cw=st.integers(1, 320),
       seed=st.integers(0, 1000))
def test_image_and_label_crops_are_identical_windows(h, w, ch, cw, seed):
    image = coordinate_rgb(h, w, 1)
    label = coordinate_rgb(h, w, 1)
    window = random_window(np.random.default_rng(seed), (h, w), (ch, cw))
    ci, cl = crop_with_pad(image, window, (ch, cw)), crop_with_pad(label, window, (ch, cw))
    mask = valid_mask(window, (h, w), (ch, cw))
    assert np.array_equal(ci, cl)
    y, x, _ = decode_coordinates(ci)
    rows, cols = np.nonzero(mask)
    assert np.array_equal(y[rows, cols], rows + window.top)
    assert np.array_equal(x[rows, cols], cols + window.left)
    assert (ci[~mask] == 0).all()


def test_reference_windows_are_a_function_of_seed_epoch_and_index():
    sample = Sample(3, "a", None, None, 375, 500)  # type: ignore[arg-type]
    a = crop_window_for(7, 0, sample, (320, 480))
    assert a == crop_window_for(7, 0, sample, (320, 480))
    others = {crop_window_for(7, e, sample, (320, 480)) for e in range(1, 20)}
    assert len(others | {a}) > 5
    assert isinstance(a, CropWindow)
