"""One suite over every registered backbone, third-party ones included, plus the example plugin.

Every backbone is built through ``harmonix.build_backbone(name, img_size=..., preset="tiny")``:
the ``tiny`` preset is part of the backbone plugin contract (docs/plugins.md).
"""

from __future__ import annotations

import math
import re
import shutil
import sys
from importlib import metadata
from pathlib import Path

import pytest
import torch

import harmonix
from harmonix import plugins

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pytest depends on tomli there
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "harmonix-tiny-backbone"
EXAMPLE_PACKAGE = "harmonix_tiny_backbone"
BUILTIN = ("swin", "convnext", "attention-unet")
SIZE = 32
STYLE_DIM = 16


def _example_installed() -> bool:
    return any(ep.name == "tiny" for ep in metadata.entry_points(group="harmonix"))


def _backbone_names() -> list[str]:
    """Whatever is registered when the tests are collected, plus the example plugin."""
    return sorted(set(plugins.PluginHost().components("backbone")) | {"tiny"})


def install_example(site: Path) -> None:
    """Install examples/harmonix-tiny-backbone into ``site`` as pip would, without pip.

    The package is copied and a ``dist-info`` is written from the example's own pyproject.toml,
    so ``importlib.metadata`` finds its entry points exactly as after ``pip install``.
    """
    project = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())["project"]
    shutil.copytree(EXAMPLE / EXAMPLE_PACKAGE, site / EXAMPLE_PACKAGE)
    info = site / f"{project['name'].replace('-', '_')}-{project['version']}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n"
    )
    groups = project["entry-points"]
    (info / "entry_points.txt").write_text(
        "".join(
            f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items())
            for group, eps in groups.items()
        )
    )
    sys.path.insert(0, str(site))


@pytest.fixture(scope="module", autouse=True)
def example_plugin(tmp_path_factory):
    """The example plugin is discoverable for this module's tests (unless already installed)."""
    if _example_installed():
        yield
        return
    site = tmp_path_factory.mktemp("site-packages")
    install_example(site)
    plugins.reset_host()
    yield
    sys.path.remove(str(site))
    for name in [m for m in sys.modules if m.split(".")[0] == EXAMPLE_PACKAGE]:
        del sys.modules[name]
    plugins.reset_host()


def build(name: str, size: int = SIZE) -> tuple[harmonix.Backbone, int]:
    """The backbone's tiny preset at the smallest multiple of its size_multiple >= ``size``."""
    torch.manual_seed(0)
    net = harmonix.build_backbone(name, img_size=size, style_dim=STYLE_DIM, preset="tiny")
    fitted = math.ceil(size / net.size_multiple) * net.size_multiple
    if fitted != size:
        torch.manual_seed(0)
        net = harmonix.build_backbone(name, img_size=fitted, style_dim=STYLE_DIM, preset="tiny")
    return net, fitted


def inputs(size: int, batch: int = 2, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, 1, size, size, generator=g) * 2 - 1
    return x, torch.randn(batch, STYLE_DIM, generator=g)


every_backbone = pytest.mark.parametrize("name", _backbone_names())


@every_backbone
def test_output_has_the_input_size_at_two_sizes(name):
    net, size = build(name)
    assert isinstance(net, harmonix.Backbone)
    for side in (size, 2 * size):
        x, style = inputs(side)
        assert net(x, style).shape == (2, 1, side, side)


@every_backbone
def test_the_style_code_changes_the_output(name):
    net, size = build(name)
    net.eval()
    x, style = inputs(size)
    other = torch.randn(2, STYLE_DIM, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        a, b = net(x, style), net(x, other)
    assert (a - b).abs().mean() > 1e-3 * a.abs().mean()


@every_backbone
def test_gradients_reach_every_parameter(name):
    net, size = build(name)
    x, style = inputs(size)
    target = torch.rand_like(x) * 2 - 1
    torch.nn.functional.mse_loss(net(x, style), target).backward()
    missing = [
        n
        for n, p in net.named_parameters()
        if p.requires_grad and (p.grad is None or not p.grad.abs().sum() > 0)
    ]
    assert not missing, f"{name}: no gradient reaches {missing}"


@every_backbone
def test_one_optimisation_step_lowers_a_reconstruction_loss(name):
    net, size = build(name)
    x, style = inputs(size)

    def reconstruction_loss() -> torch.Tensor:
        return torch.nn.functional.l1_loss(net(x, style), x)

    with torch.no_grad():
        before = reconstruction_loss().item()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-4)
    reconstruction_loss().backward()
    optimizer.step()
    with torch.no_grad():
        after = reconstruction_loss().item()
    assert after < before


@every_backbone
def test_deterministic_in_eval_mode(name):
    net, size = build(name)
    net.eval()
    x, style = inputs(size)
    with torch.no_grad():
        assert torch.equal(net(x, style), net(x, style))


@every_backbone
def test_a_size_that_is_not_a_multiple_raises_value_error_naming_it(name):
    net, size = build(name)
    if net.size_multiple == 1:
        pytest.skip(f"{name} accepts every size")
    bad = size + net.size_multiple // 2
    x = torch.zeros(1, 1, bad, size)
    with pytest.raises(ValueError, match=rf"(?<!\d){bad}(?!\d)"):
        net(x, torch.zeros(1, STYLE_DIM))


@pytest.mark.parametrize("name", BUILTIN)
def test_builtin_default_presets_are_the_paper_preset_and_work_at_its_size(name):
    from harmonix.backbones import DEFAULT_PRESET

    torch.manual_seed(0)
    net = harmonix.build_backbone(name).eval()
    paper = harmonix.build_backbone(name, preset="paper")
    assert DEFAULT_PRESET == "paper" and sum(p.numel() for p in net.parameters()) == sum(
        p.numel() for p in paper.parameters())
    assert 176 % net.size_multiple == 0
    x, _ = inputs(176, batch=1)
    style = torch.randn(1, 64)  # the factories' default style_dim
    with torch.no_grad():
        assert net(x, style).shape == (1, 1, 176, 176)


@pytest.mark.parametrize("name", [*BUILTIN, "tiny"])
def test_every_backbone_has_a_paper_preset_larger_than_fast_and_reads_old_default(name):
    if name == "tiny" and not _example_installed():
        pytest.skip("the example plugin is not installed")

    def params(net):
        return sum(p.numel() for p in net.parameters()) / 1e6

    paper, fast = (harmonix.build_backbone(name, preset=p) for p in ("paper", "fast"))
    assert 176 % paper.size_multiple == 0
    assert params(paper) > 2 * params(fast)
    if name in BUILTIN:  # of similar size as the paper's Swin-T sized Swin-Unet (~27 M)
        assert 24 < params(paper) < 34, params(paper)
    old = harmonix.build_backbone(name, preset="default")  # model cards before the rename
    assert params(old) == params(fast)


def test_backbone_presets_come_from_one_core_helper():
    from harmonix.backbones import from_preset, preset_options

    presets = {"fast": {"width": 2}, "tiny": {"width": 1}}
    assert preset_options("x", presets, "default", {"depth": 3}) == {"width": 2, "depth": 3}
    assert from_preset("x", dict, presets, "tiny", {"width": 5}) == {"width": 5}
    with pytest.raises(ValueError, match="unknown x preset 'huge'; presets are fast, tiny"):
        preset_options("x", presets, "huge", {})
    for path in ("plugins/harmonix_swin/swin_unet.py", "plugins/harmonix_convnext/convnext_unet.py",
                 "plugins/harmonix_attention_unet/attention_unet.py",
                 "examples/harmonix-tiny-backbone/harmonix_tiny_backbone/__init__.py"):
        text = (ROOT / path).read_text()
        assert "from_preset(" in text and "preset not in PRESETS" not in text, path


@pytest.mark.parametrize("name", BUILTIN)
def test_builtin_factories_refuse_bad_configurations(name):
    with pytest.raises(ValueError, match="unknown .*preset 'huge'"):
        harmonix.build_backbone(name, preset="huge")
    with pytest.raises(ValueError, match="img_size 100"):
        harmonix.build_backbone(name, img_size=100)
    with pytest.raises(TypeError):
        harmonix.build_backbone(name, preset="tiny", no_such_option=1)


def test_swin_fast_preset_tiles_176_with_shifted_windows_of_11():
    from timm.models.swin_transformer import SwinTransformerBlock

    net = harmonix.build_backbone("swin", preset="fast")
    blocks = [m for m in net.modules() if isinstance(m, SwinTransformerBlock)]
    grids = {tuple(b.input_resolution) for b in blocks}
    assert grids == {(44, 44), (22, 22), (11, 11)}
    assert {b.window_size for b in blocks} == {(11, 11)}
    shifted = {tuple(b.input_resolution) for b in blocks if any(b.shift_size)}
    assert shifted == {(44, 44), (22, 22)}  # at 11x11 one window covers all: nothing to shift


def test_swin_small_tiles_64_with_windows_of_8_at_2_mm_patches():
    from timm.models.swin_transformer import SwinTransformerBlock

    net = harmonix.build_backbone("swin", img_size=64, preset="small").eval()
    blocks = [m for m in net.modules() if isinstance(m, SwinTransformerBlock)]
    assert {tuple(b.input_resolution) for b in blocks} == {(32, 32), (16, 16), (8, 8)}
    assert {b.window_size for b in blocks} == {(8, 8)}
    with torch.no_grad():
        assert net(torch.rand(2, 1, 64, 64), torch.randn(2, 64)).shape == (2, 1, 64, 64)


def test_example_plugin_is_listed_with_its_distribution_and_builds(cli, monkeypatch):
    from harmonix.cli.app import console

    monkeypatch.setattr(console, "width", 200)  # one table row per line, whatever else is listed
    component = plugins.get_host().get("backbone", "tiny")
    assert component.distribution == "harmonix-tiny-backbone"
    result = cli("plugins")
    assert result.exit_code == 0
    row = next(line for line in result.output.splitlines() if " tiny " in line)
    assert "harmonix-tiny-backbone" in row
    net = harmonix.build_backbone("tiny")
    x, _ = inputs(16, batch=1)
    assert net(x, torch.randn(1, 64)).shape == (1, 1, 16, 16)


def test_docs_show_the_example_plugin_verbatim():
    """docs/plugins.md quotes the example's files; a change to either must reach the other."""
    docs = (ROOT / "docs" / "plugins.md").read_text()
    quoted = re.findall(r"<!-- file: (\S+) -->\n```\w*\n(.*?)```", docs, flags=re.S)
    assert {path for path, _ in quoted} >= {
        f"{EXAMPLE_PACKAGE}/__init__.py",
        "pyproject.toml",
    }
    for path, text in quoted:
        assert text == (EXAMPLE / path).read_text(), f"docs/plugins.md is out of date for {path}"


def test_swin_full_resolution_skip_adds_a_pixel_path_from_the_input():
    plain = harmonix.build_backbone("swin", img_size=32, preset="tiny").eval()
    net = harmonix.build_backbone("swin", img_size=32, preset="tiny", full_res_channels=8).eval()
    embed = 16  # tiny's width
    extra = (1 * 8 * 9 + 8) + ((embed + 8) * embed * 9 + embed)  # input conv + fuse conv
    assert sum(p.numel() for p in net.parameters()) == \
        sum(p.numel() for p in plain.parameters()) + extra
    x, style = torch.rand(1, 1, 32, 32) * 2 - 1, torch.randn(1, 64)
    with torch.no_grad():
        before = net(x, style)
        net.full_res.weight.zero_()
        net.full_res.bias.fill_(1.0)  # the path now carries a constant, not the input
        after = net(x, style)
    assert not torch.allclose(before, after)
    net.train()
    net(x, style).abs().mean().backward()
    assert net.full_res.weight.grad is not None and net.full_res.weight.grad.abs().sum() > 0


def test_swin_resize_upsampling_turns_a_smooth_token_map_into_a_smooth_image():
    """``final_upsample="resize"`` (a resize-convolution): tokens that are all alike come out as
    an image without a pattern at the patch period, where Swin-Unet's linear patch expanding
    paints every patch with the same block (the generated slices' grid, issue 20)."""
    from harmonix_swin.swin_unet import PatchExpand, ResizeExpand

    torch.manual_seed(0)
    tokens = torch.randn(1, 1, 1, 16).expand(1, 8, 8, 16)  # one feature vector everywhere
    with torch.no_grad():
        linear = PatchExpand(16, 16, scale=4, norm=False)(tokens)
        resize = ResizeExpand(16, scale=4)(tokens)
    assert linear.shape == resize.shape == (1, 32, 32, 16)
    inside = (slice(None), slice(4, -4), slice(4, -4))  # away from the convolution's padding
    assert linear[inside].std(dim=(1, 2)).min() > 1e-3  # a block pattern, period 4
    assert resize[inside].std(dim=(1, 2)).max() < 1e-5  # flat
    net = harmonix.build_backbone("swin", img_size=32, preset="tiny", final_upsample="resize")
    assert isinstance(net.final_expand, ResizeExpand)
    out = net(torch.rand(2, 1, 32, 32) * 2 - 1, torch.randn(2, 64))
    assert out.shape == (2, 1, 32, 32)
    out.abs().mean().backward()
    assert net.final_expand.conv.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="final_upsample 'nearest'"):
        harmonix.build_backbone("swin", img_size=32, preset="tiny", final_upsample="nearest")
