"""A population of small convolutional encoders, run as one grouped convolution.

Member p's filters are group p of a `groups=P` convolution over the members' images stacked on the
channel axis, so one `conv2d` call serves the whole population.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from evorl_cli.nets.layout import ParamLayout
from evorl_cli.nets.mlp import HIDDEN_GAIN, orthogonal


class CNNEncoder:
    """Conv layers (`channels`, `kernels`, `strides`) with ReLU, flattened: image [C, H, W] -> features."""

    def __init__(self, prefix: str, image: tuple[int, int, int], channels: list[int], kernels: list[int],
                 strides: list[int], layout: ParamLayout) -> None:
        self.prefix, self.image, self.layout = prefix, image, layout
        self.convs = []
        c, h, w = image
        for layer, (out, k, s) in enumerate(zip(channels, kernels, strides)):
            layout.add(f"{prefix}.w{layer}", (out, c, k, k))
            layout.add(f"{prefix}.b{layer}", (out,))
            self.convs.append((out, c, k, s))
            h, w = (h - k) // s + 1, (w - k) // s + 1
            if h < 1 or w < 1:
                raise ValueError(f"image {image} is too small for the conv stack")
            c = out
        self.out_dim = c * h * w

    def forward(self, p: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """`x` [P, B, C*H*W] -> [P, B, out_dim]."""
        size, batch = x.shape[:2]
        c, h, w = self.image
        x = x.reshape(size, batch, c, h, w).transpose(0, 1).reshape(batch, size * c, h, w)
        for layer, (out, cin, k, s) in enumerate(self.convs):
            weight = p[f"{self.prefix}.w{layer}"].reshape(size * out, cin, k, k)
            bias = p[f"{self.prefix}.b{layer}"].reshape(size * out)
            x = F.relu(F.conv2d(x, weight, bias, stride=s, groups=size))
        return x.reshape(batch, size, -1).transpose(0, 1)

    def init_member(self, row: torch.Tensor, gen: torch.Generator) -> None:
        for layer, (out, cin, k, _) in enumerate(self.convs):
            self.layout.view(row, f"{self.prefix}.w{layer}")[:] = orthogonal(out, cin * k * k, HIDDEN_GAIN, gen).view(
                out, cin, k, k)
            self.layout.view(row, f"{self.prefix}.b{layer}").zero_()
