"""The conditional GAN's two networks (Mirza & Osindero, 2014) in DCGAN style: digits of a chosen class.

Both players see the label: the generator G(z, y) gets the one-hot class beside the noise, the
discriminator D(x, y) gets it as ten extra input planes. They live beside the classifiers but not in
their registry: ``core.gan`` trains, samples, scores and saves them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

ARCH = "cgan-generator"  # how generators are named in the manifests and file metadata
LATENT = 64  # length of the noise vector z


# What a generator may be built with; a weights file's metadata is checked against these first.
MAX_LATENT, MAX_WIDTH = 1024, 512


class Generator(nn.Module):
    """z (N x 64) and labels (N,) -> images N x 1 x 28 x 28 in [-1, 1]."""

    def __init__(self, *, num_classes: int = 10, latent: int = LATENT, width: int = 64) -> None:
        super().__init__()
        self.num_classes, self.latent, self.width = num_classes, latent, width
        self.project = nn.Sequential(
            nn.Linear(latent + num_classes, 2 * width * 7 * 7, bias=False),
            nn.BatchNorm1d(2 * width * 7 * 7),
            nn.ReLU(inplace=True),
        )
        self.upsample = nn.Sequential(
            nn.ConvTranspose2d(2 * width, width, 4, stride=2, padding=1, bias=False),  # N x 64 x 14 x 14
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.ConvTranspose2d(width, 1, 4, stride=2, padding=1),  # N x 1 x 28 x 28
            nn.Tanh(),
        )

    def forward(self, z: Tensor, labels: Tensor) -> Tensor:
        h = self.project(torch.cat([z, F.one_hot(labels, self.num_classes).to(z.dtype)], dim=1))
        return self.upsample(h.view(-1, 2 * self.width, 7, 7))


class Discriminator(nn.Module):
    """Images (N x 1 x 28 x 28) and labels -> one logit each: is this a real digit of that class?"""

    def __init__(self, *, num_classes: int = 10, width: int = 64) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.net = nn.Sequential(
            nn.Conv2d(1 + num_classes, width, 4, stride=2, padding=1),  # N x 64 x 14 x 14
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(width, 2 * width, 4, stride=2, padding=1, bias=False),  # N x 128 x 7 x 7
            nn.BatchNorm2d(2 * width),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Flatten(),
            nn.Linear(2 * width * 7 * 7, 1),
        )

    def forward(self, images: Tensor, labels: Tensor) -> Tensor:
        planes = F.one_hot(labels, self.num_classes).to(images.dtype)[:, :, None, None]
        planes = planes.expand(-1, -1, images.shape[2], images.shape[3])
        return self.net(torch.cat([images, planes], dim=1)).squeeze(1)


def init_weights(model: nn.Module, generator: torch.Generator | None = None) -> None:
    """DCGAN's initialisation of every layer: N(0, 0.02) weights, batch-norm scales N(1, 0.02), drawn from
    ``generator`` (default: torch's global one)."""
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(module.weight, 0.0, 0.02, generator=generator)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
            nn.init.normal_(module.weight, 1.0, 0.02, generator=generator)
            nn.init.zeros_(module.bias)
