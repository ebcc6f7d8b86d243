"""One small factory over MONAI's segmentation networks, 2D and 3D, instance norm by default.

Instance norm keeps training and evaluation identical (no running statistics), so attacking a model in
eval mode, or forwarding clean and adversarial batches together, changes nothing; batch norm would.
"""

from __future__ import annotations

from collections.abc import Callable

from monai.networks import nets
from torch import nn

__all__ = ["NETWORKS", "build_network"]


def _unet(
    spatial_dims,
    in_channels,
    out_channels,
    channels=(16, 32, 64, 128, 256),
    strides=None,
    num_res_units=2,
    norm="instance",
    dropout=0.0,
    **kw,
):
    strides = strides or (2,) * (len(channels) - 1)
    return nets.UNet(
        spatial_dims,
        in_channels,
        out_channels,
        channels=channels,
        strides=strides,
        num_res_units=num_res_units,
        norm=norm,
        dropout=dropout,
        **kw,
    )


def _basic_unet(spatial_dims, in_channels, out_channels, features=(16, 16, 32, 64, 128, 16), norm="instance", **kw):
    norm = ("instance", {"affine": True}) if norm == "instance" else norm
    return nets.BasicUNet(spatial_dims, in_channels, out_channels, features=features, norm=norm, **kw)


def _segresnet(spatial_dims, in_channels, out_channels, init_filters=16, norm="instance", **kw):
    return nets.SegResNet(
        spatial_dims, init_filters=init_filters, in_channels=in_channels, out_channels=out_channels, norm=norm, **kw
    )


def _dynunet(spatial_dims, in_channels, out_channels, depth=5, filters=None, norm="instance", **kw):
    strides = [1] + [2] * (depth - 1)
    return nets.DynUNet(
        spatial_dims,
        in_channels,
        out_channels,
        kernel_size=[3] * depth,
        strides=strides,
        upsample_kernel_size=strides[1:],
        filters=filters,
        norm_name=norm,
        **kw,
    )


def _attention_unet(spatial_dims, in_channels, out_channels, channels=(16, 32, 64, 128), strides=None, **kw):
    strides = strides or (2,) * (len(channels) - 1)
    return nets.AttentionUnet(spatial_dims, in_channels, out_channels, channels=channels, strides=strides, **kw)


NETWORKS: dict[str, Callable[..., nn.Module]] = {
    "unet": _unet,
    "basicunet": _basic_unet,
    "segresnet": _segresnet,
    "dynunet": _dynunet,
    "attentionunet": _attention_unet,
}


def build_network(name: str, spatial_dims: int, in_channels: int, out_channels: int, **kwargs) -> nn.Module:
    """Build a MONAI segmentation network by name.

    Args:
        name: one of :data:`NETWORKS` (case-insensitive): unet, basicunet, segresnet, dynunet,
            attentionunet (the last uses batch norm: MONAI offers no other; attack it in eval mode).
        spatial_dims: 2 or 3.
        in_channels: image channels.
        out_channels: classes including background (the network returns logits).
        **kwargs: passed to the builder (e.g. ``channels`` for unet, ``features`` for basicunet).

    Raises:
        ValueError: unknown name (the message lists the choices) or bad ``spatial_dims``.

    Example:
        >>> net = build_network("unet", 2, 1, 4, channels=(4, 8, 16))
        >>> import torch; net(torch.zeros(1, 1, 32, 32)).shape
        torch.Size([1, 4, 32, 32])
    """
    key = name.lower().replace("-", "").replace("_", "")
    if key not in NETWORKS:
        raise ValueError(f"unknown network {name!r}; choose one of {', '.join(NETWORKS)}")
    if spatial_dims not in (2, 3):
        raise ValueError(f"`spatial_dims` must be 2 or 3, got {spatial_dims}")
    if in_channels < 1 or out_channels < 2:
        raise ValueError(f"need in_channels >= 1 and out_channels >= 2, got {in_channels}, {out_channels}")
    return NETWORKS[key](spatial_dims, in_channels, out_channels, **kwargs)
