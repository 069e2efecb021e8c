"""The FCN example: trains with either loader, metrics are right, ignored pixels don't count."""

import json
import math

import pytest
import torch

from dali_voc.examples.fcn import FCN, bilinear_kernel, build_fcn
from dali_voc.metrics import confusion_matrix, mean_iou, pixel_accuracy
from tests.helpers import require_dali


def test_per_class_iou_table_by_hand():
    from dali_voc.metrics import iou_table, per_class_iou
    cm = confusion_matrix(torch.tensor([0, 1, 1, 1, 0]), torch.tensor([0, 0, 1, 1, 2]), num_classes=4, ignore_index=255)
    ious = per_class_iou(cm)
    assert ious[:3] == pytest.approx([1 / 3, 2 / 3, 0.0]) and math.isnan(ious[3])  # class 3: never seen
    table = iou_table(cm, ["bg", "a", "b", "c"]).splitlines()
    assert [line.split() for line in table] == [["bg", "33.3"], ["a", "66.7"], ["b", "0.0"], ["c", "-"],
                                                ["mIoU", "33.3"], ["pixel", "acc", "60.0"]]
    assert len({len(line) for line in table}) == 1  # one column


def test_confusion_matrix_miou_and_accuracy_by_hand():
    target = torch.tensor([[0, 0, 1, 1, 2, 255]])
    pred = torch.tensor([[0, 1, 1, 1, 0, 2]])
    cm = confusion_matrix(pred, target, num_classes=3, ignore_index=255)
    assert cm.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]  # the 255 pixel is not counted
    # IoU: class 0: 1 / (2 + 2 - 1) = 1/3; class 1: 2 / (2 + 3 - 2) = 2/3; class 2: 0 / (1 + 0 - 0) = 0
    assert mean_iou(cm) == pytest.approx((1 / 3 + 2 / 3 + 0) / 3)
    assert pixel_accuracy(cm) == pytest.approx(3 / 5)


def test_ignored_pixels_do_not_contribute_to_metrics_or_loss():
    torch.manual_seed(0)
    target = torch.randint(0, 21, (2, 8, 8))
    target[:, :4] = 255
    logits = torch.randn(2, 21, 8, 8, requires_grad=True)
    loss = torch.nn.CrossEntropyLoss(ignore_index=255)(logits, target)
    loss.backward()
    assert (logits.grad[:, :, :4] == 0).all()  # no gradient from ignored pixels
    other = logits.detach().clone()
    other[:, :, :4] = torch.randn(2, 21, 4, 8) * 100  # change predictions on ignored pixels only
    assert torch.nn.CrossEntropyLoss(ignore_index=255)(other, target) == pytest.approx(loss.item())
    cm_a = confusion_matrix(logits.argmax(1), target, 21, 255)
    cm_b = confusion_matrix(other.argmax(1), target, 21, 255)
    assert torch.equal(cm_a, cm_b) and cm_a.sum() == 2 * 4 * 8


def test_fcn_shapes_and_bilinear_upsampling():
    model = FCN(21)
    assert model(torch.zeros(1, 3, 64, 96)).shape == (1, 21, 64, 96)
    up = torch.nn.ConvTranspose2d(1, 1, kernel_size=4, padding=1, stride=2, bias=False)
    with torch.no_grad():
        up.weight.copy_(bilinear_kernel(1, 1, 4))
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    y = up(x)
    assert y.shape == (1, 1, 8, 8)
    assert y[0, 0, 2:6, 2:6].mean().item() == pytest.approx(x[0, 0, 1:3, 1:3].mean().item(), rel=0.05)  # interior


def test_local_weights_load_and_missing_file_is_named(tmp_path):
    source = build_fcn()
    path = tmp_path / "resnet18.pt"
    state = dict(source.backbone.state_dict())
    state["fc.weight"] = torch.zeros(1000, 512)  # a torchvision file has the classifier too
    torch.save(state, path)
    loaded = build_fcn(weights=path)
    assert torch.equal(loaded.backbone.conv1.weight, source.backbone.conv1.weight)
    with pytest.raises(FileNotFoundError, match="no download"):
        build_fcn(weights=tmp_path / "nope.pt")


@pytest.mark.slow  # the example's whole command line, DataLoader worker processes included
@pytest.mark.parametrize("backend", ["reference", "dali"])
def test_two_steps_train_with_either_backend(synth_root, tmp_path, backend, capsys):
    if backend == "dali":
        require_dali()
    from dali_voc.examples import train_fcn
    out = tmp_path / "r.json"
    reports = train_fcn.main(["--root", str(synth_root), "--backend", backend, "--batch-size", "2",
                              "--crop", "64x96", "--epochs", "1", "--steps", "2", "--json", str(out)])
    (report,) = reports
    assert report.steps == 2 and report.images == 4
    assert math.isfinite(report.train_loss) and report.train_loss > 0
    assert 0 <= report.data_wait_share <= 1 and report.images_per_s > 0
    assert 0 <= report.val_mean_iou <= 1 and report.val_images == 4
    assert json.loads(out.read_text())[0]["steps"] == 2
    assert len(report.val_class_iou) == 21  # whole-image validation, per class
    assert "per-class IoU" in capsys.readouterr().out


@pytest.mark.slow  # two ResNet-18 training steps on the CPU
def test_parameters_change_after_steps(synth_root):
    from dali_voc import load_data_voc
    from dali_voc.examples.train_fcn import TrainSettings, train_epoch
    train_iter, _ = load_data_voc(2, (64, 96), root=synth_root, backend="reference", num_workers=0, verbose=False,
                                  void_label="ignore")
    torch.manual_seed(0)
    model = build_fcn()
    before = [p.detach().clone() for p in model.parameters()]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    loss, steps, *_ = train_epoch(model, train_iter, optimizer, torch.nn.CrossEntropyLoss(ignore_index=255),
                                  torch.device("cpu"), TrainSettings(max_steps=2))
    assert steps == 2 and math.isfinite(loss)
    changed = sum(not torch.equal(a, b.detach()) for a, b in zip(before, model.parameters()))
    assert changed > len(before) // 2


@pytest.mark.slow
def test_e2e_benchmark_smoke(synth_root, tmp_path, capsys):
    require_dali()
    from benchmarks.train_e2e import main
    assert main(["--root", str(synth_root), "--batch-size", "2", "--crop", "64x96", "--steps", "2",
                 "--warmup", "1", "--out", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "train_e2e.json").read_text())
    assert [r["backend"] for r in data["rows"]] == ["reference", "dali"]
    for r in data["rows"]:
        assert r["images_per_s"] > 0 and 0 <= r["data_wait_share"] <= 1 and r["steps"] == 2


@pytest.mark.gpu
def test_gpu_short_training_run_with_dali(synth_root, capsys):
    require_dali()
    from dali_voc.examples import train_fcn
    reports = train_fcn.main(["--root", str(synth_root), "--backend", "dali", "--batch-size", "4",
                              "--crop", "320x480", "--epochs", "2", "--steps", "5"])
    for r in reports:
        assert math.isfinite(r.train_loss) and r.steps == 5
        print(f"GPU DALI training: {r.images_per_s:.1f} images/s, data wait {100 * r.data_wait_share:.1f}%")
