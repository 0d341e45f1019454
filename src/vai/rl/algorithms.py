"""The algorithms ``vai train --algo`` trains, each a frozen spec of what it adds to plain SAC.

All of them are :class:`vai.rl.sac.SACAgent`: the agent looks its spec up once, by name, and its
observation pipeline and critic branch on the spec's fields (the table under "The agent" in
docs/design.md says the same in words).

Every algorithm has an *oracle* variant, named ``ALGORITHM+oracle`` (``vai+oracle``, ``sac+oracle``):
the same agent on observations whose pixels off the agent are black by MuJoCo's segmentation
(``make_env(..., oracle=True)``), in training and in every evaluation mode. ``vai+oracle`` is VAI
with a perfect adapter: the upper bound of the method. It is a measurement, never a default, and its
name says "oracle" in every record and table.
"""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Algorithm:
    """What one algorithm adds to SAC with PAD's heads."""

    name: str
    adapter: bool = False
    """A frozen attention adapter masks every frame the encoder sees (VAI, Sec. 3.3)."""
    adapt_aug: bool = False
    """Every encoder pass sees a fresh adapt_aug of its view: small boxes and Gaussian noise (VAI's
    ``--adapt_aug``)."""
    shift: bool = False
    """Training views are the centre crop shifted by a few pixels (DrQ) instead of a random crop (RAD, PAD)."""
    convolved_critic: bool = False
    """The critic also fits the clean target on a randomly convolved copy of the batch, the two losses
    weighted by ``svea_alpha`` and ``svea_beta`` (SVEA, Hansen et al. 2021, Eq. 6)."""
    oracle: bool = False
    """The environment blacks out every pixel off the agent by its true mask (the oracle row); no
    learned adapter."""


ALGORITHM_SPECS: dict[str, Algorithm] = {
    spec.name: spec
    for spec in (
        Algorithm("vai", adapter=True, adapt_aug=True),
        Algorithm("sac"),
        Algorithm("drq", shift=True),
        Algorithm("svea", convolved_critic=True),
    )
}
"""Every algorithm by name, in the order of :data:`vai.presets.rl.ALGORITHMS`."""


ORACLE = "+oracle"
"""The suffix of an algorithm's oracle variant (see the module)."""


def algorithm_spec(name: str) -> Algorithm:
    """The spec of algorithm ``name`` (``ALGORITHM+oracle`` too); ValueError naming the algorithms for
    any other name."""
    base = name.removesuffix(ORACLE)
    if base not in ALGORITHM_SPECS:
        raise ValueError(
            f"unknown algorithm {name!r}; choose one of: {', '.join(ALGORITHM_SPECS)} "
            f"(each also as ALGORITHM{ORACLE}, on true masks)"
        )
    spec = ALGORITHM_SPECS[base]
    return replace(spec, name=name, adapter=False, oracle=True) if name != base else spec


def with_attention(name: str, attention: str) -> str:
    """Algorithm ``name`` seeing through ``attention``: ``learned`` keeps it, ``oracle`` gives its
    oracle variant (``vai`` -> ``vai+oracle``)."""
    if attention not in ATTENTION:
        raise ValueError(f"unknown attention {attention!r}; choose one of: {', '.join(ATTENTION)}")
    base = name.removesuffix(ORACLE)
    return base + ORACLE if attention == "oracle" else name


ATTENTION = ("learned", "oracle")
"""``--attention``: ``learned`` (each algorithm as it is: ``vai`` through its adapter) or ``oracle``
(every algorithm on true masks)."""
