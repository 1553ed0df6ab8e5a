"""rrg_tutorial.ssm: discretizations, the recurrence, the kernel and the convolution (float64, exact checks)."""
import math
import pytest
import torch
from rrg_tutorial.ssm import (zoh, zoh_diag, zoh_euler_b_diag, bilinear, bilinear_diag, euler_diag, ssm_recurrence,
                              ssm_kernel, causal_conv, impulse_response, simulate_held_input, DISCRETIZATIONS_DIAG)

f64 = dict(dtype=torch.float64)


def osc():
    return torch.tensor([[0.0, 1.0], [-4.0, -0.6]], **f64), torch.tensor([0.0, 1.0], **f64), torch.tensor([1.0, 0.0], **f64)


def test_zoh_equals_eq3_and_closed_form():
    A, B, C = osc()
    for d in (0.05, 0.3, 1.7):
        Ad, Bd = zoh(A, B, d)
        torch.testing.assert_close(Ad, torch.linalg.matrix_exp(d * A))
        torch.testing.assert_close(Bd, torch.linalg.solve(d * A, (Ad - torch.eye(2, **f64)) @ (d * B)))
    a, b = -torch.arange(1.0, 9.0, **f64), torch.randn(8, **f64)
    for d in (1e-4, 0.1, 3.0):
        Ad, Bd = zoh(torch.diag(a), b, d)
        ad, bd = zoh_diag(a, b, d)
        torch.testing.assert_close(Ad, torch.diag(ad)); torch.testing.assert_close(Bd, bd)


def test_zoh_batched_steps_and_mimo_and_singular_A():
    A, B, _ = osc()
    d = torch.tensor([0.1, 0.2, 0.4], **f64)
    Ad, Bd = zoh(A, B, d)
    assert Ad.shape == (3, 2, 2) and Bd.shape == (3, 2)
    torch.testing.assert_close(Bd[1], zoh(A, B, 0.2)[1])
    Bm = torch.randn(2, 3, **f64)
    assert zoh(A, Bm, 0.1)[1].shape == (2, 3)
    # integrator: h' = x, exactly h_k = h_{k-1} + delta x_k
    Ad, Bd = zoh(torch.zeros(1, 1, **f64), torch.ones(1, **f64), 0.25)
    torch.testing.assert_close(Ad, torch.ones(1, 1, **f64)); torch.testing.assert_close(Bd, torch.tensor([0.25], **f64))


def test_zoh_diag_at_a_zero_and_gradient():
    a = torch.tensor([0.0, -1e-9, -2.0], **f64, requires_grad=True)
    ad, bd = zoh_diag(a, 1.0, 0.5)
    torch.testing.assert_close(bd[:2].detach(), torch.full((2,), 0.5, **f64))
    bd.sum().backward()
    assert torch.isfinite(a.grad).all()


def test_zoh_is_exact_for_held_input_others_are_not():
    A, B, C = osc()
    x = torch.randn(30, **f64)
    y = simulate_held_input(A, B, C, x, 0.2, substeps=32)
    err = lambda Ad, Bd: (ssm_recurrence(Ad, Bd, C, x) - y).abs().max().item()
    e_zoh, e_bil = err(*zoh(A, B, 0.2)), err(*bilinear(A, B, 0.2))
    assert e_zoh < 1e-7 < 1e-3 < e_bil


def test_bilinear_diag_and_euler():
    a, b = -torch.rand(5, **f64) * 4, torch.randn(5, **f64)
    Ad, Bd = bilinear(torch.diag(a), b, 0.3)
    ad, bd = bilinear_diag(a, b, 0.3)
    torch.testing.assert_close(Ad, torch.diag(ad)); torch.testing.assert_close(Bd, bd)
    ad, bd = euler_diag(a, b, 0.3)
    torch.testing.assert_close(ad, 1 + 0.3 * a); torch.testing.assert_close(bd, 0.3 * b)
    assert set(DISCRETIZATIONS_DIAG) >= {"zoh", "bilinear", "euler"}


def test_euler_b_ratio():
    a = torch.tensor([-1.0, -16.0], **f64)
    r = zoh_diag(a, 1.0, 0.1)[1] / zoh_euler_b_diag(a, 1.0, 0.1)[1]
    torch.testing.assert_close(r, torch.expm1(0.1 * a) / (0.1 * a))
    assert abs(r[0] - 0.9516) < 1e-4 and abs(r[1] - 0.4988) < 1e-4
    torch.testing.assert_close(zoh_euler_b_diag(a, 1.0, 0.1)[0], torch.exp(0.1 * a))


def test_recurrence_equals_convolution():
    A, B, C = osc()
    Ad, Bd = zoh(A, B, 0.3)
    x = torch.randn(4, 50, **f64)
    K = ssm_kernel(Ad, Bd, C, 50)
    torch.testing.assert_close(ssm_recurrence(Ad, Bd, C, x), causal_conv(x, K), rtol=1e-10, atol=1e-10)
    a, b, c = -torch.arange(1.0, 5.0, **f64), torch.randn(4, **f64), torch.randn(4, **f64)
    ad, bd = zoh_diag(a, b, 0.1)
    torch.testing.assert_close(ssm_recurrence(ad, bd, c, x), causal_conv(x, ssm_kernel(ad, bd, c, 50)), rtol=1e-10, atol=1e-10)
    # direct definition of the causal convolution
    y = causal_conv(x[0], K)
    assert abs(y[7] - sum(K[j] * x[0, 7 - j] for j in range(8))) < 1e-10
    torch.testing.assert_close(ssm_recurrence(ad, bd, c, x, D=2.0), ssm_recurrence(ad, bd, c, x) + 2 * x)


def test_kernel_is_step_average_of_impulse_response():
    A, B, C = osc()
    d = 0.4
    K = ssm_kernel(*zoh(A, B, d), C, 6)
    for j in range(6):
        t = torch.linspace(j * d, (j + 1) * d, 4001, **f64)
        assert abs(K[j] / d - torch.trapezoid(impulse_response(A, B, C, t), t) / d) < 1e-7


@pytest.mark.parametrize("call,exc,msg", [
    (lambda: zoh(torch.zeros(2, 3), torch.zeros(2), 0.1), ValueError, "square"),
    (lambda: zoh(torch.zeros(2, 2), torch.zeros(3), 0.1), ValueError, r"B must have shape \(N,\)"),
    (lambda: zoh(torch.zeros(2, 2), torch.zeros(2), -0.1), ValueError, "positive and finite"),
    (lambda: zoh(torch.zeros(2, 2, dtype=torch.int64), torch.zeros(2), 0.1), TypeError, "floating-point"),
    (lambda: zoh_diag(torch.tensor([-1.0]), 1.0, float("nan")), ValueError, "positive and finite"),
    (lambda: bilinear(torch.zeros(1, 2), torch.zeros(1), 0.1), ValueError, "square"),
    (lambda: ssm_recurrence(torch.zeros(2, 2), torch.zeros(3), torch.zeros(2), torch.zeros(4)), ValueError,
     r"Bd must be a tensor of shape \(N,\) = \(2,\)"),
    (lambda: ssm_recurrence(torch.zeros(2, 3), torch.zeros(2), torch.zeros(2), torch.zeros(4)), ValueError, "Ad must be"),
    (lambda: ssm_recurrence(torch.zeros(2), torch.zeros(2), torch.zeros(2), torch.zeros(0)), ValueError, "L >= 1"),
    (lambda: ssm_recurrence(torch.zeros(2), torch.zeros(2), torch.zeros(2), "abc"), TypeError, "x must be a tensor"),
    (lambda: ssm_kernel([1.0, 1.0], torch.zeros(2), torch.zeros(2), 3), ValueError, "Ad must be a tensor"),
    (lambda: ssm_kernel(torch.zeros(2), torch.zeros(2), torch.zeros(2), 2.5), ValueError, "L must be a positive int"),
    (lambda: causal_conv([1.0, 2.0], torch.zeros(2)), TypeError, "must be tensors"),
    (lambda: causal_conv(torch.zeros(0), torch.zeros(0)), ValueError, "L >= 1"),
    (lambda: impulse_response(torch.zeros(2, 2), torch.zeros(2), torch.zeros(3), torch.arange(3.0)), ValueError,
     r"C must be a tensor of shape \(N,\)"),
    (lambda: simulate_held_input(torch.zeros(1, 1), torch.zeros(1), torch.zeros(1), torch.zeros(2), 0.1, 0), ValueError,
     "substeps must be a positive int"),
    (lambda: ssm_kernel(torch.zeros(2), torch.zeros(2), torch.zeros(2), 0), ValueError, "L must be a positive int"),
    (lambda: causal_conv(torch.zeros(5), torch.zeros(4)), ValueError, "kernel must have"),
    (lambda: simulate_held_input(torch.zeros(1, 1), torch.zeros(1), torch.zeros(1), torch.zeros(2, 2), 0.1), ValueError, "1-D"),
])
def test_validation(call, exc, msg):
    with pytest.raises(exc, match=msg): call()
