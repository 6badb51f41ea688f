"""The re-initialisation rule behind the null control and the sanity cascade, on the modules
that have no ``reset_parameters``: ``nn.MultiheadAttention`` (private ``_reset_parameters``),
a library's own ``init_weights``, and parameters owned directly by a model or block."""

from __future__ import annotations

import torch
import torchvision
from torch import nn

from xai_checks.models import reinitialise_, reinitialised_copy


def _changed(a: nn.Module, b: nn.Module) -> set[str]:
    sb = b.state_dict()
    return {
        k for k, v in a.state_dict().items() if v.is_floating_point() and not torch.equal(v, sb[k])
    }


def test_vit_control_changes_every_parameter():
    """torchvision's ViT: the root owns class_token, the encoder pos_embedding, attention only
    has _reset_parameters: each was a 'no reset_parameters()' error."""
    torch.manual_seed(0)
    vit = torchvision.models.VisionTransformer(
        image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=16, mlp_dim=32
    ).eval()
    with torch.no_grad():
        for p in vit.parameters():
            p.add_(0.5)  # as if trained: no parameter is at its initial value
    control = reinitialised_copy(vit, seed=0)
    changed = _changed(vit, control)
    assert changed == {k for k, v in vit.state_dict().items() if v.is_floating_point()}
    assert "encoder.layers.encoder_layer_0.self_attention.in_proj_weight" in changed
    assert torch.equal(control.class_token, torch.zeros_like(control.class_token))  # a token: 0
    assert 0.01 < float(control.encoder.pos_embedding.std()) < 0.03  # trunc normal, std 0.02
    detail = control.xai_weights.detail
    assert "by _reset_parameters()" in detail and "by generic rule" in detail
    again = reinitialised_copy(vit, seed=0)  # seeded: the same control every time
    assert not _changed(control, again)


def test_a_librarys_init_weights_is_used_when_its_whole_subtree_is_reset():
    class Lib(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.token = nn.Parameter(torch.full((1, 1, 4), 5.0))
            self.proj = nn.Linear(4, 4)
            self.calls = 0

        def init_weights(self) -> None:  # the library's own rule: token ~ 7
            self.calls += 1
            self.token.fill_(7.0)

    model = nn.Sequential(Lib(), nn.Linear(4, 2))
    how = reinitialise_(model, seed=0)
    assert model[0].calls == 1 and float(model[0].token.mean()) == 7.0
    assert "1 by init_weights()" in how
    # a cascade step that resets only the head must not let Lib.init_weights touch proj
    proj = model[0].proj.weight.clone()
    reinitialise_(model, seed=1, modules=[model[0]])  # Lib alone: its proj is not chosen
    assert model[0].calls == 1  # not called: it would reach proj
    assert torch.equal(model[0].proj.weight, proj)
    assert torch.equal(model[0].token, torch.zeros_like(model[0].token))  # generic: a token


def test_the_global_rng_is_untouched():
    model = nn.Sequential(nn.Linear(3, 3), nn.LayerNorm(3))
    torch.manual_seed(3)
    expected = torch.rand(3)
    torch.manual_seed(3)
    reinitialised_copy(model, seed=0)
    assert torch.equal(torch.rand(3), expected)
