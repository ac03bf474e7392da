"""Strategy recipes (one YAML file each), installed as ``avalanche_freeze.strategies``.

Each file names its recipe (``strategy: NAME``) and holds only settings that differ from
the components' defaults; ``avalanche-freeze run --strategy NAME`` loads it.
"""
