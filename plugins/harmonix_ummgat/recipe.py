"""The training recipe (optimiser, loss weights, EMA), stored in the model card as ``"recipe"``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

#: Recipe fields with an option of their own in ``harmonix train`` (not set through --recipe).
OWN_OPTIONS = {"iters": "--iters", "batch": "--batch-size", "lam": "--lam/--no-lam"}
_TRUE, _FALSE = {"true", "yes", "on", "1"}, {"false", "no", "off", "0"}
_FRACTIONS = {"beta1", "beta2", "ema_beta"}


@dataclass
class Recipe:
    """StarGAN-v2's recipe; the defaults are the paper's (UMMGAT) settings."""

    iters: int = 20_000
    batch: int = 8  # per process
    lr: float = 1e-4  # E, G and D
    mapper_lr: float = 1e-4  # M: the paper's (StarGAN-v2 uses 1e-6)
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
    lam: bool = True  # lesion-aware module: the lesion style terms
    lambda_les: float = 1.0  # lesion style of the translated lesion
    lambda_les_cyc: float = 1.0  # lesion style kept through the cycle
    # LAM terms a lesion-blind network cannot satisfy (harmonix_ummgat.lam; not the paper's)
    les_stop_grad: bool = True  # real-lesion codes are fixed targets of les and les_cyc
    lambda_les_adv: float = 1.0  # D's lesion branches: generated lesions must look real
    lambda_les_var: float = 1.0  # lesion codes spread within each domain (VICReg-style)
    lambda_les_con: float = 1.0  # a lesion's code differs from mirrored healthy tissue's
    les_spread_target: float = 1.0  # les_var's level: this times the whole-image codes' spread
    lambda_struct: float = 0.0  # normalised-gradient-field structure term, source vs output

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
        """Cards written before the LAM's own terms existed keep the paper's LAM."""
        known = set(cls.__dataclass_fields__)
        values = {k: v for k, v in data.items() if k in known}
        if "lambda_les_adv" not in data:
            values = {**PAPER_LAM, **values}
        return cls(**values)


#: The paper's LAM (the ``les`` and ``les_cyc`` terms only): ``--recipe`` these to compare.
PAPER_LAM = {"les_stop_grad": False, "lambda_les_adv": 0.0, "lambda_les_var": 0.0,
             "lambda_les_con": 0.0}


def _typed(key: str, kind: str, value: Any) -> Any:
    """``value`` (a string from the command line, or already typed) as a ``kind`` field."""
    if kind == "bool":
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _TRUE | _FALSE:
            return text in _TRUE
        raise ValueError(f"--recipe {key}={value}: {key} takes true or false")
    try:
        number = float(value) if kind == "float" else int(str(value), 10)
    except (TypeError, ValueError):
        wanted = "a number" if kind == "float" else "an integer"
        raise ValueError(f"--recipe {key}={value}: {key} takes {wanted}") from None
    if number != number or number in (float("inf"), float("-inf")) or number < 0:
        raise ValueError(f"--recipe {key}={value}: {key} must be a finite number >= 0")
    if key in _FRACTIONS and number > 1:
        raise ValueError(f"--recipe {key}={value}: {key} must be between 0 and 1")
    return number


def recipe_overrides(values: Mapping[str, Any]) -> dict[str, Any]:
    """``{"lr": "3e-4", "ema_warmup": "false"}`` typed from the :class:`Recipe` fields;
    ``ValueError`` naming an unknown key or a bad value."""
    kinds = {f.name: str(f.type) for f in fields(Recipe)}
    out = {}
    for key, value in values.items():
        if key in OWN_OPTIONS:
            raise ValueError(f"--recipe {key}: use {OWN_OPTIONS[key]}")
        if key not in kinds:
            known = ", ".join(k for k in kinds if k not in OWN_OPTIONS)
            raise ValueError(f"--recipe: unknown key '{key}'; keys are {known}")
        out[key] = _typed(key, kinds[key], value)
    return out
