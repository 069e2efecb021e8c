"""Options and state that both backends refuse the same way: a seed outside the one range every
backend accepts is an :class:`OptionError` at configuration, and a damaged ``state_dict`` is a
:class:`LoaderStateError` naming its field, refused before anything changes."""

from __future__ import annotations

import copy

import pytest
import torch

from dali_voc import LoaderConfig, LoaderStateError, OptionError
from dali_voc.config import SEED_RANGE
from tests.helpers import broken_tree, config_for, loader_for

BACKENDS = ["reference", "dali"]


@pytest.mark.parametrize("seed", [-1, 2**63, 1.5, True, "7", None])
def test_a_seed_outside_the_range_is_refused_naming_it(tmp_path, seed):
    with pytest.raises(OptionError, match=r"seed=.* is not valid; expected an integer in \[0, 2\*\*63 - 1\]"):
        LoaderConfig(root=tmp_path, seed=seed)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("seed", list(SEED_RANGE))
def test_both_ends_of_the_seed_range_load_on_every_backend(tmp_path, backend, seed):
    root = broken_tree(tmp_path, lambda voc: None)
    loader = loader_for(config_for(root, backend, batch_size=2, seed=seed), shuffle=True)
    assert sum(x.shape[0] for x, _ in loader) == 4


def _labels(batches) -> list[torch.Tensor]:
    return [y.clone() for _, y in batches]


#: state field -> how it is damaged; the error must name the field
DAMAGE = {
    "missing epoch": ("epoch", lambda s: s.pop("epoch")),
    "missing batches_done": ("batches_done", lambda s: s.pop("batches_done")),
    "missing unknown_pixels": ("unknown_pixels", lambda s: s.pop("unknown_pixels")),
    "epoch of wrong type": ("epoch", lambda s: s.update(epoch="0")),
    "negative epoch": ("epoch", lambda s: s.update(epoch=-1)),
    "batches_done past the epoch": ("batches_done", lambda s: s.update(batches_done=10**6)),
    "batches_done a float": ("batches_done", lambda s: s.update(batches_done=1.0)),
    "negative unknown_pixels": ("unknown_pixels", lambda s: s.update(unknown_pixels=-5)),
    "not a dict": ("dict", lambda s: None),
    "epoch edited within its range": ("epoch", lambda s: s.update(epoch=3)),
    "batches_done edited within its range": ("batches_done", lambda s: s.update(batches_done=0)),
    "digests not a dict": ("digests", lambda s: s.update(digests="abc")),
}
#: what only the DALI loader's state holds
DALI_DAMAGE = {
    "missing checkpoint": ("dali_checkpoint", lambda s: s.pop("dali_checkpoint")),
    "checkpoint not base64": ("dali_checkpoint", lambda s: s.update(dali_checkpoint="not base64!")),
    "checkpoint cut short": ("dali_checkpoint", lambda s: s.update(dali_checkpoint=s["dali_checkpoint"][:24])),
    "checkpoint of bytes": ("dali_checkpoint", lambda s: s.update(dali_checkpoint=b"abc")),
    "checkpoint with a flipped character": ("dali_checkpoint", lambda s: s.update(dali_checkpoint=_flipped(
        s["dali_checkpoint"]))),
}


def _flipped(text: str) -> str:
    """``text`` (base64) with one character in the middle replaced by another base64 character."""
    middle = len(text) // 2
    return text[:middle] + ("A" if text[middle] != "A" else "B") + text[middle + 1:]


@pytest.mark.parametrize(("backend", "case"), [(b, c) for b in BACKENDS for c in sorted(DAMAGE)]
                         + [("dali", c) for c in sorted(DALI_DAMAGE)])
def test_a_damaged_state_is_refused_naming_the_field_and_changes_nothing(tmp_path, backend, case):
    """The refused loader goes on exactly as a twin that never saw the state: same batches
    (labels), same state afterwards, and the next epoch too."""
    field, damage = {**DAMAGE, **DALI_DAMAGE}[case]
    root = broken_tree(tmp_path, lambda voc: None)
    loader, twin = (loader_for(config_for(root, backend, batch_size=1), shuffle=True) for _ in range(2))
    mine, theirs = iter(loader), iter(twin)
    next(mine), next(theirs)
    state = loader.state_dict()
    bad = copy.deepcopy(state)
    bad = "a string" if field == "dict" else (damage(bad), bad)[1]
    with pytest.raises(LoaderStateError, match=field):
        loader.load_state_dict(bad)
    assert loader.state_dict() == state
    assert [torch.equal(a, b) for a, b in zip(_labels(mine), _labels(theirs))] == [True] * 4
    assert loader.state_dict() == twin.state_dict()
    assert [torch.equal(a, b) for a, b in zip(_labels(loader), _labels(twin))] == [True] * 5  # the next epoch too


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_state_saved_without_digests_still_resumes(tmp_path, backend):
    """States saved before the digests were recorded are taken as they are."""
    root = broken_tree(tmp_path, lambda voc: None)
    loader = loader_for(config_for(root, backend, batch_size=1), shuffle=True)
    batches = iter(loader)
    next(batches)
    state = {k: v for k, v in loader.state_dict().items() if k != "digests"}
    rest = _labels(batches)
    resumed = loader_for(config_for(root, backend, batch_size=1), shuffle=True)
    resumed.load_state_dict(state)
    assert [torch.equal(a, b) for a, b in zip(_labels(resumed), rest)] == [True] * 4


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_good_state_still_resumes(tmp_path, backend):
    root = broken_tree(tmp_path, lambda voc: None)
    loader = loader_for(config_for(root, backend, batch_size=1), shuffle=True)
    batches = iter(loader)
    next(batches), next(batches)
    state = loader.state_dict()
    rest = _labels(batches)
    resumed = loader_for(config_for(root, backend, batch_size=1), shuffle=True)
    resumed.load_state_dict(state)
    assert [torch.equal(a, b) for a, b in zip(_labels(resumed), rest)] == [True] * 3
