

# ---- added for the patch: the affine batch norm and the steady heap change no value


def _bn_net():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.LazyLinear(3)).double()
    net(torch.randn(2, 3, 5, 5, dtype=torch.float64))
    with torch.no_grad():
        net[1].running_mean.normal_()
        net[1].running_var.uniform_(0.5, 2.0)
        net[1].weight.normal_()
        net[1].bias.normal_()
    return net.eval()


def test_affine_batchnorm_gives_the_same_loss_gradient_and_hessian():
    net = _bn_net()
    x = torch.randn(6, 3, 5, 5, dtype=torch.float64)
    y = torch.randint(0, 3, (6,))
    params = list(net.parameters())
    names = [n for n, _ in net.named_parameters()]

    def loss_and_grad(affine):
        with H.affine_batchnorm(enabled=affine):
            loss = F.cross_entropy(net(x), y)
        return loss.detach(), torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, params)])

    (loss_a, grad_a), (loss_b, grad_b) = loss_and_grad(True), loss_and_grad(False)
    assert torch.allclose(loss_a, loss_b, rtol=1e-12) and torch.allclose(grad_a, grad_b, rtol=1e-10, atol=1e-13)

    def loss_of(flat):  # the plain (native batch norm) loss as a function of the flat parameters
        parts = dict(zip(names, (t.view(p.shape) for t, p in zip(flat.split([p.numel() for p in params]), params))))
        return F.cross_entropy(torch.func.functional_call(net, parts, (x,)), y)

    dense_ref = torch.autograd.functional.hessian(loss_of, torch.cat([p.detach().reshape(-1) for p in params]))
    dense_op = H.dense(H.HessianOperator(net, (x, y)))  # its graph built under the affine map
    assert torch.allclose(dense_op, dense_ref, rtol=1e-9, atol=1e-11)


def test_training_mode_batchnorm_is_left_alone():
    bn = nn.BatchNorm2d(4).double().train()
    x = torch.randn(3, 4, 2, 2, dtype=torch.float64)
    with H.affine_batchnorm():
        out = bn(x)
    assert "NativeBatchNorm" in type(out.grad_fn).__name__


def test_steady_heap_nests_and_restores():
    with H.steady_heap():
        with H.steady_heap():
            a = torch.randn(1000, 1000) @ torch.randn(1000, 1000)
    assert H._heap_depth == 0 and torch.isfinite(a).all()
