import torch

from tether.lm.model.moe import MoEMLP, recording_routes, route_flip_frac


def test_top1_router_gets_a_gradient_and_gate_is_the_full_softmax():
    torch.manual_seed(0)
    moe = MoEMLP(8, 16, n_experts=4, top_k=1)
    h = torch.randn(3, 5, 8)
    moe(h).square().sum().backward()
    # a softmax over the single selected logit would be the constant 1: no router gradient at all
    assert moe.router.weight.grad.abs().sum() > 0
    with torch.no_grad(), recording_routes(moe) as layers:
        out = moe(h)
        probs = torch.softmax(moe.router(h), -1)
        top = layers[0].routes[0]                                   # (3, 5, 1)
        gu = torch.einsum("...d,efd->...ef", h, moe.gate_up)
        g, u = gu.chunk(2, -1)
        y = torch.einsum("...ef,edf->...ed", torch.nn.functional.silu(g) * u, moe.down)   # (3, 5, E, d)
        expected = probs.gather(-1, top) * y.gather(-2, top[..., None].expand(-1, -1, -1, 8))[..., 0, :]
        torch.testing.assert_close(out, expected)


def test_route_flip_frac_counts_differing_sets():
    a = [torch.tensor([[[0], [1], [2]]])]
    b = [torch.tensor([[[0], [3], [2]]])]
    assert abs(route_flip_frac(a, b, torch.ones(1, 3, dtype=torch.bool)).item() - 1 / 3) < 1e-6
