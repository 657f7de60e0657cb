"""vidkd's BatchNorm3d: the stock layer's results through a faster view, never a different layer."""

import pytest
import torch
from torch import nn

from vidkd.models import build_backbone
from vidkd.models.batchnorm import BatchNorm3d, fold_factor

CL = torch.channels_last_3d


def _pair(channels: int) -> tuple[nn.BatchNorm3d, BatchNorm3d]:
    stock = nn.BatchNorm3d(channels).double()
    with torch.no_grad():
        stock.weight.normal_()
        stock.bias.normal_()
    ours = BatchNorm3d(channels).double()
    ours.load_state_dict(stock.state_dict())
    return stock, ours


@pytest.mark.parametrize("channels", [36, 22, 57, 10])
def test_training_steps_match_the_stock_layer(channels):
    torch.manual_seed(channels)
    stock, ours = _pair(channels)
    x = (3 * torch.randn(4, channels, 4, 6, 6, dtype=torch.float64) + 1).to(memory_format=CL)
    assert fold_factor(x, channels) > 1  # the folded path is the one under test
    for _ in range(2):  # running statistics after more than one update
        grad = torch.randn_like(x)
        xs, xo = x.clone().requires_grad_(), x.clone().requires_grad_()
        ys, yo = stock(xs), ours(xo)
        ys.backward(grad)
        yo.backward(grad)
        assert yo.is_contiguous(memory_format=CL)
        torch.testing.assert_close(yo, ys, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(xo.grad, xs.grad, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(ours.weight.grad, stock.weight.grad, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(ours.bias.grad, stock.bias.grad, rtol=1e-10, atol=1e-10)
        stock.weight.grad = stock.bias.grad = ours.weight.grad = ours.bias.grad = None
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        torch.testing.assert_close(getattr(ours, name), getattr(stock, name), rtol=1e-12, atol=1e-12)
    stock.eval()
    ours.eval()
    with torch.no_grad():
        torch.testing.assert_close(ours(x), stock(x), rtol=1e-10, atol=1e-10)


def test_relu_in_place_after_it_keeps_gradients_right():
    torch.manual_seed(0)
    stock, ours = _pair(36)
    x = torch.randn(2, 36, 4, 6, 6, dtype=torch.float64).to(memory_format=CL)
    xs, xo = x.clone().requires_grad_(), x.clone().requires_grad_()
    torch.relu_(stock(xs)).pow(2).sum().backward()
    torch.relu_(ours(xo)).pow(2).sum().backward()
    torch.testing.assert_close(xo.grad, xs.grad, rtol=1e-10, atol=1e-10)


def test_other_inputs_take_the_stock_path():
    x = torch.randn(2, 36, 4, 6, 6)
    assert fold_factor(x, 36) == 1  # contiguous layout
    assert fold_factor(x.to(memory_format=CL), 32) == 1  # already a multiple of 16
    assert fold_factor(torch.randn(1, 36, 1, 1, 3).to(memory_format=CL), 36) == 1  # 3 voxels: no fold of 4


def test_a_backbone_keeps_its_keys_and_counts():
    net = build_backbone("r21d", width=0.25)
    norms = [m for m in net.modules() if isinstance(m, nn.BatchNorm3d)]
    assert norms and all(isinstance(m, BatchNorm3d) for m in norms)
    assert any(m.num_features % 16 for m in norms)  # R(2+1)D x0.25 has the channel counts this is for
    assert sum(p.numel() for p in build_backbone("r21d").parameters()) == 14_365_303


def test_float32_is_at_least_as_accurate_as_the_stock_kernel():
    """Against float64, on activations whose mean dwarfs their spread (where float32 sums cancel)."""
    torch.manual_seed(0)
    x64 = (torch.randn(12, 36, 8, 16, 16, dtype=torch.float64) + 10).to(memory_format=CL)
    grad = torch.randn_like(x64) + 1

    def gradients(norm, dtype):
        x = x64.to(dtype).clone().requires_grad_()
        norm.to(dtype)(x).backward(grad.to(dtype))
        return x.grad.double(), norm.weight.grad.double()

    exact = gradients(nn.BatchNorm3d(36), torch.float64)
    errors = {}
    for name, norm in (("stock", nn.BatchNorm3d(36)), ("ours", BatchNorm3d(36))):
        errors[name] = [float((g - e).abs().max() / e.abs().max()) for g, e in zip(gradients(norm, torch.float32), exact)]
    assert all(ours <= stock for ours, stock in zip(errors["ours"], errors["stock"])), errors
