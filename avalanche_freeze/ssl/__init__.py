"""Self-supervised methods: heads and losses (built on lightly), selected by name.

Registered names: ``simsiam``, ``barlowtwins``, ``simclr``, ``byol``, ``vicreg``.
Add your own with :func:`register_ssl_method`.
"""

from .barlow_twins import BarlowTwins
from .base import (
    SSLMethod,
    SSLOutput,
    available_ssl_methods,
    create_ssl_method,
    register_ssl_method,
)
from .byol import BYOL
from .simclr import SimCLR
from .simsiam import SimSiam
from .vicreg import VICReg

for _cls in (SimSiam, BarlowTwins, SimCLR, BYOL, VICReg):
    register_ssl_method(_cls.name, _cls)

__all__ = [
    "BYOL",
    "BarlowTwins",
    "SSLMethod",
    "SSLOutput",
    "SimCLR",
    "SimSiam",
    "VICReg",
    "available_ssl_methods",
    "create_ssl_method",
    "register_ssl_method",
]
