"""Self-supervised methods: heads and losses (built on lightly), selected by name.

Registered names: ``simsiam``, ``barlowtwins``, ``simclr``, ``byol``, ``vicreg``, and, when
solo-learn is installed (``make setup-solo``), ``solo:simsiam``, ``solo:byol``,
``solo:barlowtwins``, ``solo:vicreg``, ``solo:simclr``, ``solo:dino``, ``solo:mocov2plus``
(:mod:`.solo`).
Add your own with :func:`register_ssl_method`.
"""

from .barlow_twins import BarlowTwins
from .base import (
    DEFAULT_LR,
    SSLMethod,
    SSLOutput,
    available_ssl_methods,
    create_ssl_method,
    gather_batch,
    recommended_lr,
    register_ssl_method,
)
from .byol import BYOL
from .simclr import SimCLR
from .simsiam import SimSiam
from .vicreg import VICReg

for _cls in (SimSiam, BarlowTwins, SimCLR, BYOL, VICReg):
    register_ssl_method(_cls.name, _cls)

from . import solo  # noqa: E402  (registers solo-learn's methods when it is installed)

__all__ = [
    "BYOL",
    "DEFAULT_LR",
    "BarlowTwins",
    "SSLMethod",
    "SSLOutput",
    "SimCLR",
    "SimSiam",
    "VICReg",
    "available_ssl_methods",
    "create_ssl_method",
    "gather_batch",
    "recommended_lr",
    "register_ssl_method",
]
