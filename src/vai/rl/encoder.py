"""The pixel encoder of SAC-AE / PAD: conv layers, a linear projection, layer norm and tanh.

Conv layers can be *shared* between encoders by module identity: the critic owns them, the actor
and PAD's self-supervised heads reuse its first ``num_shared_layers`` (Hansen et al. 2021, Sec. 3)
and add their own remaining convs and projection. Inputs are float images in [0, 1].
"""

from __future__ import annotations

import torch
from torch import nn

from vai.vision.keypoints import channels_last


def conv_stack(in_channels: int, num_filters: int, num_layers: int, first: int = 0) -> nn.ModuleList:
    """Layers ``first .. num_layers - 1`` of the conv trunk: 3x3, 32 filters, stride 2 for the first."""
    layers = nn.ModuleList()
    for index in range(first, num_layers):
        source = in_channels if index == 0 else num_filters
        layers.append(nn.Conv2d(source, num_filters, 3, stride=2 if index == 0 else 1))
    return layers


def conv_output_side(image_size: int, num_layers: int) -> int:
    side = (image_size - 3) // 2 + 1
    return side - 2 * (num_layers - 1)


class PixelEncoder(nn.Module):
    """(B, C, S, S) in [0, 1] -> features (B, feature_dim) in (-1, 1).

    ``shared`` are conv layers owned by another encoder (tied weights, as PAD's heads and SAC-AE's
    actor use them); ``detach_shared=True`` in :meth:`forward` stops gradients at their output.
    """

    def __init__(
        self,
        in_channels: int,
        image_size: int,
        feature_dim: int,
        num_filters: int,
        num_layers: int,
        shared: nn.ModuleList | None = None,
    ):
        super().__init__()
        shared = shared if shared is not None else nn.ModuleList()
        if len(shared) > num_layers:
            raise ValueError(f"{len(shared)} shared layers but only {num_layers} layers")
        # A plain list keeps the tied layers out of this module's parameters() and state_dict():
        # their owner saves and optimises them once.
        self._shared = list(shared)
        self.own = conv_stack(in_channels, num_filters, num_layers, first=len(shared))
        self.num_layers, self.feature_dim = num_layers, feature_dim
        self.projection = nn.Linear(num_filters * conv_output_side(image_size, num_layers) ** 2, feature_dim)
        self.norm = nn.LayerNorm(feature_dim)

    @property
    def convs(self) -> list[nn.Module]:
        return [*self._shared, *self.own]

    def shared_parameters(self) -> list[nn.Parameter]:
        return [p for layer in self._shared for p in layer.parameters()]

    def trunk(self, images: torch.Tensor, detach_shared: bool = False) -> torch.Tensor:
        # Channels-last (NHWC) convolutions, as the vision networks train; flatten() below still
        # orders the features (C, H, W), so the projection's weights mean the same in either layout.
        hidden = channels_last(images)
        last = len(self.convs) - 1
        for index, layer in enumerate(self.convs):
            hidden = layer(hidden)
            if index == last:
                # (C, H, W) order here, before the ReLU, which flatten() needs anyway: the ReLU and
                # its gradient then run on one layout with the projection's gradient.
                hidden = hidden.contiguous()
            hidden = torch.relu(hidden)
            if detach_shared and index == len(self._shared) - 1:
                hidden = hidden.detach()
        return hidden.flatten(1)

    def head(self, trunk: torch.Tensor) -> torch.Tensor:
        """Flattened conv output -> features: projection, layer norm, tanh."""
        return torch.tanh(self.norm(self.projection(trunk)))

    def forward(self, images: torch.Tensor, detach_shared: bool = False) -> torch.Tensor:
        return self.head(self.trunk(images, detach_shared))


def mlp(inputs: int, hidden: int, outputs: int) -> nn.Sequential:
    """Two hidden ReLU layers of width ``hidden``: SAC-AE's actor and Q heads, PAD's and VAI's heads."""
    return nn.Sequential(
        nn.Linear(inputs, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, outputs)
    )


def orthogonal_init(module: nn.Module) -> None:
    """SAC-AE's initialisation: orthogonal linear layers, delta-orthogonal convolutions, zero biases."""
    if isinstance(module, nn.Linear):
        nn.init.orthogonal_(module.weight)
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Conv2d):
        nn.init.zeros_(module.weight)
        nn.init.zeros_(module.bias)
        centre = module.weight.shape[-1] // 2
        nn.init.orthogonal_(module.weight.data[:, :, centre, centre], nn.init.calculate_gain("relu"))
