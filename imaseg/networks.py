"""One small factory over MONAI's segmentation networks, 2D and 3D, instance norm by default.

Instance norm keeps training and evaluation identical (no running statistics), so attacking a model in
eval mode, or forwarding clean and adversarial batches together, changes nothing; batch norm would.

A network of one's own is ``package.module:factory``: code. A name given in Python or on ``imaseg train``'s
command line is the user's choice and is imported; a name read from a run folder (its ``config.yaml``, which
may come from anyone) is data: :func:`require_trusted_factory` refuses it unless the user named it too
(``--trust-factory NAME`` on ``evaluate`` / ``predict`` / ``export``, :func:`trust_network_factory` in
Python) or this process already built it (a run trained here).
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from monai.networks import nets
from torch import nn

from imaseg.config import section_from_mapping, setting
from imaseg.data.errors import DataError

__all__ = [
    "NETWORKS",
    "NetworkConfig",
    "build_network",
    "network_help",
    "require_trusted_factory",
    "resolve_device",
    "trust_network_factory",
    "trusted_network_factories",
]

_TRUSTED_FACTORIES: set[str] = set()  # named by the user, or built by this process


def resolve_device(name: str) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; any other name as torch reads it."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def network_help() -> str:
    """``--help`` of the network name: the registered networks, or one's own factory."""
    return (
        f"MONAI network: {', '.join(NETWORKS)}; or your own as package.module:factory (called with spatial_dims, "
        "in_channels, out_channels; returns an nn.Module giving logits)"
    )


@dataclass(frozen=True)
class NetworkConfig:
    """The network of a run (the ``network`` section of its ``train`` settings): what training builds and
    what evaluation, prediction and export rebuild.

    Runs written before the section existed kept these settings flat (``network: unet``, ``channels``,
    ``res_units``, ``dropout``): :attr:`FLAT_ALIASES` and :attr:`SHORTHAND` still read them, and
    ``--network``, ``--channels``, ``--res-units``, ``--dropout`` stay flags of ``imaseg train``.

    Example:
        >>> NetworkConfig.from_mapping({"network": "unet", "channels": [4, 8], "epochs": 3}).channels
        (4, 8)
        >>> NetworkConfig.from_mapping({"network": {"name": "segresnet"}}).name
        'segresnet'
    """

    FLAT_ALIASES: ClassVar[Mapping[str, str]] = {"channels": "channels", "res_units": "res_units", "dropout": "dropout"}
    SHORTHAND: ClassVar[str] = "name"  # ``network: unet``: the name alone

    name: str = setting("unet", network_help)
    channels: tuple[int, ...] = setting((16, 32, 64, 128, 256), "feature channels per level (unet/attentionunet)")
    res_units: int = setting(2, "residual units per level (unet)")
    dropout: float = setting(0.0, "dropout (unet)")

    @classmethod
    def from_mapping(cls, settings: Mapping[str, Any]) -> NetworkConfig:
        """The network section of a run's ``train`` settings, nested or in the older flat layout; other keys
        are ignored."""
        return section_from_mapping(cls, settings, "network", source="train")

    def build_arguments(self) -> dict[str, Any]:
        """The keyword arguments :func:`build_network` takes for these settings, beyond the data's shape."""
        kwargs: dict[str, Any] = {}
        name = self.name.lower()
        if name in ("unet", "attentionunet"):
            kwargs["channels"] = tuple(self.channels)
        if name == "unet":
            kwargs.update(num_res_units=self.res_units, dropout=self.dropout)
        return kwargs  # a network of one's own (package.module:factory) takes only the data's shape

    def build(self, spatial_dims: int, in_channels: int, num_classes: int) -> nn.Module:
        """The network these settings describe, for data of this shape."""
        return build_network(self.name, spatial_dims, in_channels, num_classes, **self.build_arguments())


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


def trust_network_factory(*names: str) -> None:
    """Let runs whose ``config.yaml`` names these ``package.module:factory`` networks be rebuilt (imported and
    called) in this process: what ``--trust-factory NAME`` does."""
    _TRUSTED_FACTORIES.update(names)


@contextlib.contextmanager
def trusted_network_factories(*names: str) -> Iterator[None]:
    """Within the block, also trust ``names`` (see :func:`trust_network_factory`)."""
    saved = set(_TRUSTED_FACTORIES)
    _TRUSTED_FACTORIES.update(names)
    try:
        yield
    finally:
        _TRUSTED_FACTORIES.clear()
        _TRUSTED_FACTORIES.update(saved)


def require_trusted_factory(name: str, source: object, *, received: str = "a run folder", also: str = "") -> None:
    """Refuse a ``package.module:factory`` network read from ``source`` (a file someone else may have written)
    unless the user named it or this process built it; registered networks always pass.

    Args:
        name: the network name read.
        source: the file it was read from (named in the message).
        received: what ``source`` belongs to, for the message (``"a run folder"``, ``"a bundle"``).
        also: another way to trust it, appended to the message.

    Raises:
        DataError: an untrusted factory, naming the file and how to trust it.
    """
    if ":" not in name or name in _TRUSTED_FACTORIES:
        return
    raise DataError(
        f"{source}: its network {name!r} is code (package.module:factory) that imaseg would import and run, and "
        f"{received} is data: imaseg runs no code it names. If you trust it and that package, name the factory "
        f"yourself: --trust-factory {name} (or imaseg.networks.trust_network_factory({name!r}) in Python){also}",
        [str(source)],
    )


def _custom_network(name: str, spatial_dims: int, in_channels: int, out_channels: int) -> nn.Module:
    """``package.module:factory`` -> the factory's network for data of this shape."""
    import importlib

    module_name, _, attribute = name.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as error:
        raise ValueError(
            f"network {name!r}: cannot import {attribute!r} from {module_name!r} ({error}); give "
            "package.module:factory with the package importable (installed, or on PYTHONPATH)"
        ) from None
    shape = {"spatial_dims": spatial_dims, "in_channels": in_channels, "out_channels": out_channels}
    _check_factory(name, factory, shape)
    network = factory(**shape)
    if not isinstance(network, nn.Module):
        raise ValueError(f"network {name!r}: the factory returned {type(network).__name__}, not a torch nn.Module")
    _TRUSTED_FACTORIES.add(name)  # built here: rebuilding this process's own runs needs no second say-so
    return network


def _check_factory(name: str, factory: object, shape: dict[str, int]) -> None:
    fix = "give a function factory(spatial_dims, in_channels, out_channels) that returns an nn.Module"
    if not callable(factory):
        raise ValueError(f"network {name!r}: {type(factory).__name__} is not callable; {fix}")
    try:
        inspect.signature(factory).bind(**shape)
    except TypeError as error:
        raise ValueError(f"network {name!r}: cannot be called as a network factory ({error}); {fix}") from None
    except ValueError:  # no signature to inspect (some built-ins): calling it says
        raise ValueError(f"network {name!r}: not a function whose arguments can be checked; {fix}") from None


def build_network(name: str, spatial_dims: int, in_channels: int, out_channels: int, **kwargs) -> nn.Module:
    """Build a MONAI segmentation network by name.

    Args:
        name: a key of :data:`NETWORKS` (case-insensitive; ``attentionunet`` uses batch norm: MONAI
            offers no other, attack it in eval mode); or ``"package.module:factory"``, a network of your
            own: ``factory(spatial_dims=, in_channels=, out_channels=)`` must return an ``nn.Module``
            giving logits ``(B, out_channels, *spatial)`` (the module must be importable wherever the
            run is evaluated or used for prediction).
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
    if ":" in name:
        return _custom_network(name, spatial_dims, in_channels, out_channels)
    key = name.lower().replace("-", "").replace("_", "")
    if key not in NETWORKS:
        raise ValueError(
            f"unknown network {name!r}; choose one of {', '.join(NETWORKS)}, or give your own as package.module:factory"
        )
    if spatial_dims not in (2, 3):
        raise ValueError(f"`spatial_dims` must be 2 or 3, got {spatial_dims}")
    if in_channels < 1 or out_channels < 2:
        raise ValueError(f"need in_channels >= 1 and out_channels >= 2, got {in_channels}, {out_channels}")
    return NETWORKS[key](spatial_dims, in_channels, out_channels, **kwargs)
