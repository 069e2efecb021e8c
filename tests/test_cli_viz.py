import numpy as np
import pytest
import torch
from PIL import Image

from dali_voc.cli import main
from dali_voc.tools.viz import colorize, denormalize, save_grid, save_overlay


def test_denormalize_inverts_normalization():
    rgb = torch.randint(0, 256, (2, 4, 5, 3), dtype=torch.uint8)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    x = (rgb.permute(0, 3, 1, 2).float() / 255 - mean) / std
    assert np.array_equal(denormalize(x), rgb.numpy())


def test_colorize_uses_the_colormap_and_void_for_ignore():
    y = torch.tensor([[[0, 1, 255]]])
    assert colorize(y)[0, 0].tolist() == [[0, 0, 0], [128, 0, 0], [224, 224, 192]]


def test_grid_and_overlay_files(tmp_path):
    x = torch.zeros(3, 3, 8, 10)
    y = torch.ones(3, 8, 10, dtype=torch.int64)
    grid = Image.open(save_grid(x, y, tmp_path / "g.png"))
    assert grid.size == (3 * 10 + 2 * 4, 2 * 8 + 4)
    over = Image.open(save_overlay(x, y, tmp_path / "o.png"))
    assert over.size == (3 * 10 + 2 * 4, 8)


@pytest.mark.slow  # synth writes its tree from worker processes
def test_cli_synth_info_show(tmp_path, capsys):
    root = tmp_path / "tree"
    assert main(["synth", "--root", str(root), "--num-train", "6", "--num-val", "3", "--workers", "1"]) == 0
    assert main(["info", str(root), "--splits", "train"]) == 0
    out = capsys.readouterr().out
    assert "[train] 6 images" in out and "background" in out and "void / ignored" in out
    png = tmp_path / "grid.png"
    assert main(["show", str(root), "-n", "2", "--crop", "200x200", "--out", str(png)]) == 0
    assert Image.open(png).size == (2 * 200 + 4, 2 * 200 + 4)
