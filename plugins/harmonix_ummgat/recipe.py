"""The training recipe (optimiser, loss weights, EMA), stored in the model card as ``"recipe"``."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass
class Recipe:
    """StarGAN-v2's recipe; the defaults are the paper's (UMMGAT) settings."""

    iters: int = 20_000
    batch: int = 8  # per process
    lr: float = 1e-4  # E, G and D
    mapper_lr: float = 1e-6  # M, as StarGAN-v2 does
    beta1: float = 0.0
    beta2: float = 0.99
    weight_decay: float = 1e-4
    ema_beta: float = 0.999  # EMA of E, M and G (not D)
    ema_warmup: bool = True  # decay (1 + t) / (10 + t) until it reaches ema_beta
    r1_gamma: float = 1.0  # R1 = gamma / 2 * E||grad D(x_real)||^2
    lambda_sty: float = 1.0
    lambda_cyc: float = 1.0
    lambda_ds: float = 0.0  # style diversification (StarGAN-v2: 1 or 2), off by default
    ds_iters: int = 100_000  # lambda_ds decays linearly to 0 over this many iterations
    lam: bool = True  # lesion-aware module: the lesion style reconstruction loss
    lambda_les: float = 1.0

    def lambda_ds_at(self, iteration: int) -> float:
        """The diversification weight at ``iteration`` (0-based), decayed as StarGAN-v2 does."""
        if self.lambda_ds <= 0:
            return 0.0
        return max(0.0, self.lambda_ds * (1.0 - iteration / self.ds_iters))

    def ema_beta_at(self, iteration: int) -> float:
        """The EMA decay at ``iteration`` (0-based). With warm-up (as TensorFlow's
        ExponentialMovingAverage with ``num_updates``), the average forgets the random
        initial weights within the first few hundred iterations instead of ~5000, so short
        runs sample from trained weights; from iteration ~9000 on it is ``ema_beta``."""
        if not self.ema_warmup:
            return self.ema_beta
        return min(self.ema_beta, (1.0 + iteration) / (10.0 + iteration))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Recipe:
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})
