"""What the doctor found: one `Finding` per problem, with the measurements that triggered it."""

from __future__ import annotations

from dataclasses import dataclass, field

# The kinds of finding, in the order a reader meets them. A healthy model has no finding at all.
VANISHING = "vanishing"  # end-to-end gain below the stable band
EXPLODING = "exploding"  # end-to-end gain above the stable band
BOTTLENECK = "bottleneck"  # one step carries most of the loss (or gain) of the end-to-end gain
SATURATION = "saturation"  # many activations on the flat part of sigmoid/tanh
POSTLN_CONTRACTION = "postln-contraction"  # LayerNorm after the residual sum shrinks the backward path
BATCHNORM_BRANCHES = "batchnorm-branches"  # BatchNorm-scaled residual branches add up to an explosion
ILL_CONDITIONED = "ill-conditioned"  # sigma_max / sigma_min spread of a step's Jacobian
DEAD_RELU = "dead-relu"  # ReLU units that are zero for every example
KINDS = (
    VANISHING,
    EXPLODING,
    BOTTLENECK,
    SATURATION,
    POSTLN_CONTRACTION,
    BATCHNORM_BRANCHES,
    ILL_CONDITIONED,
    DEAD_RELU,
)


@dataclass(frozen=True)
class Finding:
    """One problem, where it is, and the numbers that show it.

    Attributes:
        kind: one of `KINDS`.
        steps: the names of the chain steps concerned (the probe report's ``BlockStats.name``), in
            chain order; empty when the finding concerns the whole model.
        evidence: the measured numbers that triggered it, by name (``{"log_gain": -9.2, "band": 1.0}``).
        severity: how far past its threshold, >= 1 (1 = just past it); findings are listed by it.
        summary: one readable sentence with the key number.
    """

    kind: str
    steps: tuple[str, ...]
    evidence: dict[str, float | int | str] = field(default_factory=dict)
    severity: float = 1.0
    summary: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown finding kind {self.kind!r}; kinds: {', '.join(KINDS)}")
