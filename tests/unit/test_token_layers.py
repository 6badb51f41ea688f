"""Transformer layers in the CAM engine: tokens and channels-last outputs seen as maps, the
reshape hook, transformer blocks picked by locate_layers, and every method in one fused pass.

Small torchvision transformers (random weights, 32 px) exercise shapes in seconds; the full
vit_b_16 / swin_t / timm models are in ``test_architectures.py``.
"""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from xai_checks.cam import CAM, METHODS, locate_layers
from xai_checks.cam.tokens import NotAMap, layout_of, map_view
from xai_checks.models import reinitialised_copy


def small_vit(layers: int = 8) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        vit = torchvision.models.VisionTransformer(
            image_size=32, patch_size=8, num_layers=layers, num_heads=2, hidden_dim=16, mlp_dim=32
        )
    # torchvision starts the head at zero (every gradient would be 0): the control's rule gives
    # it random weights
    return reinitialised_copy(vit.eval(), seed=1)


def test_tokens_drop_the_class_token_and_fill_the_patch_grid_row_major():
    # token t of image n holds the value 100 * n + t in every channel
    n, grid, prefix = 2, (2, 3), 2
    tokens = torch.arange(prefix + 6).float()[None, :, None] + 100 * torch.arange(n)[:, None, None]
    tokens = tokens.expand(n, prefix + 6, 4)
    view = map_view("blocks.0", tokens, (16, 24), patch=8)
    assert (view.layout, view.grid, view.prefix) == ("tokens", grid, prefix)
    out = view(tokens)
    assert out.shape == (n, 4, 2, 3)
    expected = torch.tensor([[2.0, 3, 4], [5, 6, 7]])
    assert torch.equal(out[0, 0], expected) and torch.equal(out[1, 3], expected + 100)


def test_without_a_patch_embedding_the_grid_is_inferred_from_the_token_count():
    # 197 tokens for 224 x 224: 14 x 14 patches and one class token; 4 registers: 201
    assert layout_of((1, 197, 8), (224, 224)) == layout_of((1, 197, 8), (224, 224), patch=16)
    view = layout_of((1, 201, 8), (224, 224))
    assert view is not None and (view.grid, view.prefix) == ((14, 14), 5)


def test_channels_last_is_permuted_and_nchw_kept():
    x = torch.randn(2, 7, 7, 5)
    view = map_view("features.7", x, (224, 224))
    assert view.layout == "nhwc" and torch.equal(view(x), x.permute(0, 3, 1, 2))
    y = torch.randn(2, 5, 7, 7)
    assert map_view("layer4", y, (224, 224))(y) is y


@pytest.mark.parametrize(
    "shape",
    [(2, 3, 197, 64), (2, 768), (2, 64, 1, 1), (2, 1, 64)],
    ids=["attention-heads", "pooled", "1x1", "one-token"],
)
def test_outputs_that_cannot_be_a_map_are_refused_with_the_fix(shape):
    with pytest.raises(NotAMap, match=r"not a spatial map.*reshape="):
        map_view("blocks.0.attn.q_norm", torch.zeros(shape), (224, 224), patch=16)


def test_cam_refuses_an_attention_head_layer_instead_of_stretching_it():
    """(N, heads, tokens, head_dim) was taken as a 197 x 64 'map' stretched to the input."""
    vit = small_vit()
    attn = vit.encoder.layers.encoder_layer_0.self_attention  # returns a tuple: not a map
    with pytest.raises(TypeError, match="not a tensor"):
        CAM(vit, layers=[attn])(torch.randn(1, 3, 32, 32), targets=0)

    class Heads(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.reshape(x.shape[0], x.shape[1], 2, -1).transpose(1, 2)

    class WithHeads(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.vit, self.heads = vit, Heads()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.heads(self.vit._process_input(x))
            return self.vit(x)

    with pytest.raises(NotAMap, match=r"'heads' outputs shape \(1, 2, 16, 8\)"):
        CAM(WithHeads(), layers=["heads"])(torch.randn(1, 3, 32, 32), targets=0)


def test_locate_picks_the_last_block_of_each_quarter_that_reaches_the_head():
    """8 blocks: 2, 4, 6 and 8 by quarters; block 8's patch tokens never reach the head (it
    reads the class token only), so block 7 stands for the last quarter."""
    vit = small_vit(layers=8)
    names = [f"encoder.layers.encoder_layer_{i}" for i in (1, 3, 5, 6)]
    assert locate_layers(vit, (1, 3, 32, 32)) == names
    assert CAM(vit).layer_names == tuple(names)  # CAM(model) locates them at its declared size


def test_every_method_on_token_layers_in_one_pass_matches_an_explicit_reshape():
    """The automatic view equals pytorch-grad-cam's reshape_transform written by hand, for
    every method, with all layers from one fused call."""
    vit = small_vit()
    layers = locate_layers(vit, (1, 3, 32, 32))
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))

    def by_hand(t: torch.Tensor) -> torch.Tensor:
        return t[:, 1:].reshape(t.shape[0], 4, 4, t.shape[2]).permute(0, 3, 1, 2)

    for method in METHODS:
        auto = CAM(vit, layers=layers, method=method)(x, targets=[0, 1, 2])
        hook = CAM(vit, layers=layers, method=method, reshape=by_hand)(x, targets=[0, 1, 2])
        for layer in layers:
            assert auto.raw[layer].shape == (3, 4, 4)
            assert auto.maps[layer].shape == (3, 32, 32)
            torch.testing.assert_close(auto.raw[layer], hook.raw[layer], rtol=0, atol=0)
            assert float(auto.raw[layer].amax()) > 0  # a real map, not zeros


def test_a_bad_reshape_hook_is_named():
    vit = small_vit()
    with pytest.raises(NotAMap, match=r"reshape hook.*must return"):
        CAM(vit, layers=["encoder.layers.encoder_layer_0"], reshape=lambda t: t)(
            torch.randn(1, 3, 32, 32), targets=0
        )


def test_captum_backend_agrees_on_token_layers():
    """Raw maps compared, to float32 rounding of their terms' magnitude: a near-zero map (the
    HiResCAM map of the block before the last: ~5e-8 of its magnitude) is squashed by the
    native normaliser's relative floor and stretched by Captum's, by design."""
    vit = small_vit()
    layers = locate_layers(vit, (1, 3, 32, 32))
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    for method in ("gradcam", "hirescam"):
        native = CAM(vit, layers=layers, method=method)(x, targets=[3, 4])
        captum = CAM(vit, layers=layers, method=method, backend="captum")(x, targets=[3, 4])
        for layer in layers:
            atol = 1e-6 * float(native.magnitude[layer].max())
            torch.testing.assert_close(native.raw[layer], captum.raw[layer], rtol=1e-4, atol=atol)
