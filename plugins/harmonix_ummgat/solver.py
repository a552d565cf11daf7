"""One UMMGAT training state: networks, their EMA copies, optimisers, and the training step.

The step is StarGAN-v2's: D latent-guided, D reference-guided, G+M+E latent-guided, G
reference-guided, then the EMA of E, M and G. On a GPU it can use bf16 autocast (R1 in fp32),
channels_last and ``torch.compile``; under ``torch.distributed`` each network gets its own DDP
wrapper.
"""

from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass, fields

import torch
from torch import nn

from harmonix_ummgat.losses import compute_d_loss, compute_g_loss, moving_average
from harmonix_ummgat.networks import ModelConfig, Nets, build_nets
from harmonix_ummgat.recipe import Recipe

EMA_NETS = ("E", "M", "G")


@dataclass
class Batch:
    """One iteration's inputs, images in [-1, 1] ``(B, 1, H, W)``, lesion masks 0/1."""

    x_real: torch.Tensor
    y_org: torch.Tensor
    lesion: torch.Tensor
    y_trg: torch.Tensor
    x_ref: torch.Tensor
    x_ref2: torch.Tensor
    z_trg: torch.Tensor
    z_trg2: torch.Tensor
    x_lesion_ref: torch.Tensor  # a target-domain slice with a lesion (LAM's real lesions)
    lesion_ref: torch.Tensor  # its lesion mask

    def to(self, device: torch.device | str, channels_last: bool = False) -> Batch:
        def move(t: torch.Tensor) -> torch.Tensor:
            t = t.to(device, non_blocking=True)
            if channels_last and t.dim() == 4:
                t = t.contiguous(memory_format=torch.channels_last)
            return t

        return Batch(**{f.name: move(getattr(self, f.name)) for f in fields(self)})

    def pin_memory(self) -> Batch:
        """Page-locked copies (the DataLoader calls this with ``pin_memory=True``)."""
        return Batch(**{f.name: getattr(self, f.name).pin_memory() for f in fields(self)})


class Solver:
    """Owns the networks (``modules``: plain, ``nets``: as trained), ``ema`` and ``optims``."""

    def __init__(
        self,
        config: ModelConfig,
        recipe: Recipe,
        device: str | torch.device = "cpu",
        *,
        amp: bool = False,
        channels_last: bool = False,
        compile: bool = False,
        distributed: bool = False,
    ):
        self.config = config
        self.recipe = recipe
        self.device = torch.device(device)
        self.amp = amp
        self.channels_last = channels_last
        memory_format = torch.channels_last if channels_last else torch.preserve_format
        if self.device.type == "cuda":  # fixed shapes: let cuDNN pick; TF32 for the fp32 parts
            torch.backends.cudnn.benchmark = True
            torch.set_float32_matmul_precision("high")

        self.modules = build_nets(config)
        for net in self.modules.named().values():
            net.to(self.device, memory_format=memory_format)
        self._ddp: dict[str, nn.Module] = {}
        wrapped = dict(self.modules.named())
        if distributed:
            from torch.nn.parallel import DistributedDataParallel as DDP

            cuda = self.device.type == "cuda" and self.device.index is not None
            ids = [self.device.index] if cuda else None
            for name, net in wrapped.items():  # DDP broadcasts rank 0's weights here
                wrapped[name] = self._ddp[name] = DDP(net, device_ids=ids, broadcast_buffers=False)
        if compile:  # D stays eager: R1 needs a double backward
            for name in EMA_NETS:
                wrapped[name] = torch.compile(wrapped[name])
        self.nets = Nets(**wrapped)

        self.ema = Nets(**{k: copy.deepcopy(getattr(self.modules, k)) for k in EMA_NETS})
        for net in self.ema.named().values():
            net.requires_grad_(False).eval()

        fused = {"fused": True} if self.device.type == "cuda" else {}
        self.optims = {
            name: torch.optim.Adam(
                net.parameters(),
                lr=recipe.mapper_lr if name == "M" else recipe.lr,
                betas=(recipe.beta1, recipe.beta2),
                weight_decay=recipe.weight_decay,
                **fused,
            )
            for name, net in self.modules.named().items()
        }

    # -- training --------------------------------------------------------------------------
    def _zero_grad(self) -> None:
        for optim in self.optims.values():
            optim.zero_grad(set_to_none=True)

    def _no_sync(self, *names: str) -> contextlib.ExitStack:
        """Skip DDP's gradient all-reduce for networks that a step does not update."""
        stack = contextlib.ExitStack()
        for name in names:
            if name in self._ddp:
                stack.enter_context(self._ddp[name].no_sync())
        return stack

    def step(self, batch: Batch, iteration: int) -> dict[str, torch.Tensor]:
        """One StarGAN-v2 iteration; returns the detached loss terms (``"D/latent_real"``, ...)."""
        nets, recipe, b = self.nets, self.recipe, batch
        for net in self.modules.named().values():
            net.train()
        losses: dict[str, torch.Tensor] = {}

        lesions = dict(num_domains=self.config.num_domains, lesion=b.lesion,
                       x_lesion_ref=b.x_lesion_ref, lesion_ref=b.lesion_ref)
        for kind, guide in (("latent", {"z_trg": b.z_trg}), ("ref", {"x_ref": b.x_ref})):
            d_loss, terms = compute_d_loss(
                nets, recipe, b.x_real, b.y_org, b.y_trg, amp=self.amp, **lesions, **guide
            )
            self._zero_grad()
            d_loss.backward()
            self.optims["D"].step()
            losses.update({f"D/{kind}_{k}": v for k, v in terms.items()})

        common = dict(**lesions, lambda_ds=recipe.lambda_ds_at(iteration), amp=self.amp)
        with self._no_sync("D"):
            g_loss, terms = compute_g_loss(
                nets, recipe, b.x_real, b.y_org, b.y_trg, z_trgs=(b.z_trg, b.z_trg2), **common,
            )
            self._zero_grad()
            g_loss.backward()
        for name in ("G", "M", "E"):
            self.optims[name].step()
        losses.update({f"G/latent_{k}": v for k, v in terms.items()})

        with self._no_sync("D", "E"):
            g_loss, terms = compute_g_loss(
                nets, recipe, b.x_real, b.y_org, b.y_trg, x_refs=(b.x_ref, b.x_ref2), **common
            )
            self._zero_grad()
            g_loss.backward()
        self.optims["G"].step()
        losses.update({f"G/ref_{k}": v for k, v in terms.items()})

        beta = recipe.ema_beta_at(iteration)
        for name in EMA_NETS:
            moving_average(getattr(self.modules, name), getattr(self.ema, name), beta)
        return losses

    # -- state -----------------------------------------------------------------------------
    def state_tensors(self) -> dict[str, torch.Tensor]:
        """All weights: ``"E.<param>"``, ..., ``"D.<param>"`` and ``"ema.E.<param>"``, ...."""
        tensors = {}
        for prefix, nets in (("", self.modules), ("ema.", self.ema)):
            for name, net in nets.named().items():
                for key, value in net.state_dict().items():
                    tensors[f"{prefix}{name}.{key}"] = value.detach().to("cpu", copy=True)
        return tensors

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        for prefix, nets in (("", self.modules), ("ema.", self.ema)):
            for name, net in nets.named().items():
                net.load_state_dict(split_prefix(tensors, f"{prefix}{name}."))

    def optimizer_state(self) -> dict:
        return {name: optim.state_dict() for name, optim in self.optims.items()}

    def load_optimizer_state(self, state: dict) -> None:
        for name, optim in self.optims.items():
            optim.load_state_dict(state[name])


def split_prefix(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The entries of ``tensors`` under ``prefix``, with the prefix removed."""
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
