"""The algorithms ``vai train --algo`` trains, each a frozen spec of what it adds to plain SAC.

All of them are :class:`vai.rl.sac.SACAgent`: the agent looks its spec up once, by name, and its
observation pipeline and critic branch on the spec's fields (the table under "The agent" in
docs/design.md says the same in words).
"""

from __future__ import annotations

from dataclasses import dataclass


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


def algorithm_spec(name: str) -> Algorithm:
    """The spec of algorithm ``name``; ValueError naming the algorithms for any other name."""
    try:
        return ALGORITHM_SPECS[name]
    except KeyError:
        raise ValueError(f"unknown algorithm {name!r}; choose one of: {', '.join(ALGORITHM_SPECS)}") from None
