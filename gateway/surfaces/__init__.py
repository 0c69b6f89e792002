"""The surfaces a gateway serves."""

from __future__ import annotations

from gateway.surfaces.base import Surface
from gateway.surfaces.c2c import C2cSurface
from gateway.surfaces.close import CloseSurface
from gateway.surfaces.voyzu import VoyzuSurface


def default_surfaces(*, dev: bool = False) -> list[Surface]:
    return [C2cSurface(), CloseSurface(), VoyzuSurface(dev=dev)]
