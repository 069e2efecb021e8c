"""The textbook's fully convolutional network: ResNet-18 features, 1x1 conv, 32x transposed conv.

The ResNet-18 here uses torchvision's parameter names, so a torchvision ``resnet18``
``state_dict`` saved to a local file loads into it (no download ever happens).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch
from torch import nn


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection (ResNet-18/34 block)."""

    def __init__(self, inplanes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet18Features(nn.Module):
    """ResNet-18 without its global pooling and classifier: ``[B, 3, H, W]`` -> ``[B, 512, H/32, W/32]``."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = nn.Sequential(BasicBlock(64, 64), BasicBlock(64, 64))
        self.layer2 = nn.Sequential(BasicBlock(64, 128, 2), BasicBlock(128, 128))
        self.layer3 = nn.Sequential(BasicBlock(128, 256, 2), BasicBlock(256, 256))
        self.layer4 = nn.Sequential(BasicBlock(256, 512, 2), BasicBlock(512, 512))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


def bilinear_kernel(in_channels: int, out_channels: int, kernel_size: int) -> torch.Tensor:
    """Weights ``[in, out, k, k]`` that make a transposed convolution upsample bilinearly
    (channel ``i`` to channel ``i``; zero across channels)."""
    factor = (kernel_size + 1) // 2
    center = factor - 1 if kernel_size % 2 == 1 else factor - 0.5
    og = (torch.arange(kernel_size).reshape(-1, 1), torch.arange(kernel_size).reshape(1, -1))
    filt = (1 - torch.abs(og[0] - center) / factor) * (1 - torch.abs(og[1] - center) / factor)
    weight = torch.zeros((in_channels, out_channels, kernel_size, kernel_size))
    for i in range(min(in_channels, out_channels)):
        weight[i, i] = filt
    return weight


class FCN(nn.Module):
    """``[B, 3, H, W]`` -> class scores ``[B, num_classes, H, W]`` (H, W multiples of 32)."""

    def __init__(self, num_classes: int = 21):
        super().__init__()
        self.backbone = ResNet18Features()
        self.final_conv = nn.Conv2d(512, num_classes, kernel_size=1)
        self.transpose_conv = nn.ConvTranspose2d(num_classes, num_classes, kernel_size=64, padding=16, stride=32)
        with torch.no_grad():
            self.transpose_conv.weight.copy_(bilinear_kernel(num_classes, num_classes, 64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.transpose_conv(self.final_conv(self.backbone(x)))


def build_fcn(num_classes: int = 21, weights: Optional[Path] = None) -> FCN:
    """A randomly initialised FCN, or one whose backbone is loaded from a local ``weights``
    file (a torchvision ``resnet18`` ``state_dict``; its ``fc.*`` entries are ignored).

    Raises:
        FileNotFoundError: ``weights`` does not exist.
        RuntimeError: the file's tensors do not fit a ResNet-18 (names the missing keys).
    """
    model = FCN(num_classes)
    if weights is not None:
        weights = Path(weights)
        if not weights.is_file():
            raise FileNotFoundError(f"weights file {weights} does not exist (no download is attempted)")
        state = torch.load(weights, map_location="cpu", weights_only=True)
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
        missing, unexpected = model.backbone.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise RuntimeError(f"{weights} is not a ResNet-18 state_dict: missing {missing[:5]}, "
                               f"unexpected {unexpected[:5]}")
    return model
