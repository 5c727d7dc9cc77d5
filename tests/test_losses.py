"""Autoencoder losses and the KR-dual EMD estimator."""
import os

import numpy as np
import pytest

os.environ.setdefault("POT_BACKEND_DISABLE_TENSORFLOW", "1")
import ot  # noqa: E402
import tensorflow as tf  # noqa: E402

from flow.core import geometry as G  # noqa: E402
from flow.core import losses as L  # noqa: E402


def _pairs(n=16, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.random((n, 48)) * (rng.random((n, 48)) < 0.3)
    b = rng.random((n, 48)) * (rng.random((n, 48)) < 0.3)
    a[:, 0] += 0.05
    b[:, 5] += 0.05
    return a, b


def _exact(a, b):
    m = G.ground_distance()
    return np.array([ot.emd2(x / x.sum(), y / y.sum(), m) for x, y in zip(a, b, strict=True)])


def test_weighted_mse_by_hand():
    a = np.zeros((1, 48), np.float32)
    b = np.zeros((1, 48), np.float32)
    a[0, 3], b[0, 3], b[0, 7] = 0.5, 0.25, 0.5
    want = ((0.25 ** 2) * 0.5 + (0.5 ** 2) * 0.5) / 48
    got = L.weighted_mse(tf.constant(a), tf.constant(b)).numpy()
    np.testing.assert_allclose(got, [want], rtol=1e-6)


def test_telescope_mse_against_numpy_transcription():
    a, b = _pairs(8, 1)

    def lk(x, y, w=1.0):
        return np.mean((x - y) ** 2 * np.maximum(x, y) * w, axis=-1)

    l1 = lk(a, b)
    l2 = lk(G.supercell_sums(a), G.supercell_sums(b), G.SUPERCELL_WEIGHTS)
    l3 = lk(G.group_sums(a), G.group_sums(b))
    want = 4 * l1 + 2 * l2 + l3
    got = L.telescope_mse(tf.constant(a, tf.float64), tf.constant(b, tf.float64)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-12)
    assert np.all(L.telescope_mse(tf.constant(a), tf.constant(a)).numpy() == 0)


def test_sinkhorn_approximates_exact_emd_and_is_differentiable():
    a, b = _pairs(32, 2)
    exact = _exact(a, b)
    got = L.sinkhorn(tf.constant(a, tf.float64), tf.constant(b, tf.float64), n_iter=200, eps=0.02).numpy()
    ratio = got / exact
    assert np.all((ratio > 0.9) & (ratio < 1.1)), ratio
    same = L.sinkhorn(tf.constant(a, tf.float64), tf.constant(a, tf.float64), n_iter=100).numpy()
    assert np.all(same < 0.1 * exact)
    x = tf.Variable(b, dtype=tf.float64)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(L.sinkhorn(tf.constant(a, tf.float64), x))
    g = tape.gradient(loss, x).numpy()
    assert np.all(np.isfinite(g)) and np.abs(g).sum() > 0


def test_get_loss_names():
    for name in ("telescope_mse", "weighted_mse", "sinkhorn"):
        assert callable(L.get_loss(name))
    with pytest.raises(ValueError, match=r"expected a loss registered in flow/core/losses.py \(emd_cnn, "
                                         r"telescope_mse, weighted_mse, sinkhorn\), got 'mse'"):
        L.get_loss("mse")


def test_sinkhorn_factory_passes_its_settings():
    a, b = _pairs(4)
    got = L.get_loss("sinkhorn", sinkhorn_eps=0.2, sinkhorn_iters=7)(tf.constant(a), tf.constant(b))
    want = L.sinkhorn(tf.constant(a), tf.constant(b), eps=0.2, n_iter=7)
    assert np.allclose(got.numpy(), want.numpy())


def test_kr_dual_is_a_tight_lower_bound_on_simple_cases():
    # a unit charge moved between two cells: EMD = their distance
    m = G.ground_distance()
    a = np.zeros((3, 48))
    b = np.zeros((3, 48))
    for k, (i, j) in enumerate([(0, 1), (0, 47), (20, 33)]):
        a[k, i], b[k, j] = 1.0, 1.0
    est = L.kr_dual_emd(a, b, steps=300, seed=1)
    want = np.array([m[0, 1], m[0, 47], m[20, 33]])
    assert np.all(est <= want + 1e-4)
    np.testing.assert_allclose(est, want, rtol=0.02)
    # general wafers: a lower bound, correlated with exact EMD
    a, b = _pairs(24, 3)
    exact = _exact(a, b)
    est = L.kr_dual_emd(a, b, steps=300, seed=2)
    assert np.all(est <= exact * (1 + 1e-4))
    assert np.corrcoef(est, exact)[0, 1] > 0.9
    # empty wafers: NaN, never a sentinel
    a[0] = 0
    assert np.isnan(L.kr_dual_emd(a[:2], b[:2], steps=5)[0])


@pytest.mark.parametrize("n_iter", [1, 3, 5])
def test_sinkhorn_bounded_with_few_iterations(n_iter):
    # the last iteration runs at the target eps, so the plan has unit mass and the
    # cost stays below the largest ground distance (it used to explode to 1e19)
    a, b = _pairs(16, 4)
    got = L.sinkhorn(tf.constant(a, tf.float32), tf.constant(b, tf.float32), n_iter=n_iter).numpy()
    assert np.all(np.isfinite(got)) and np.all(got <= G.ground_distance().max() + 1e-3)


def _sinkhorn_reference(a, b, *, eps, n_iter, eps0=4.0, scaling=0.7):
    """Independent float64 numpy write-down: log-domain updates with scipy's logsumexp."""
    from scipy.special import logsumexp

    m = G.ground_distance()
    a = a / (a.sum(-1, keepdims=True) + 1e-12)
    b = b / (b.sum(-1, keepdims=True) + 1e-12)
    la, lb = np.log(a + 1e-12), np.log(b + 1e-12)
    f, g = np.zeros_like(a), np.zeros_like(b)
    for k in range(n_iter):
        e = eps if k == n_iter - 1 else max(eps, eps0 * scaling ** k)
        f = -e * logsumexp(lb[:, None, :] + (g[:, None, :] - m[None]) / e, axis=-1)
        g = -e * logsumexp(la[:, :, None] + (f[:, :, None] - m[None]) / e, axis=-2)
    p = np.exp(la[:, :, None] + lb[:, None, :] + (f[:, :, None] + g[:, None, :] - m[None]) / eps)
    return (p * m[None]).sum((-2, -1))


@pytest.mark.parametrize("eps", [0.05, 0.015])  # 0.015: max(M)/eps > 700, the log-domain updates
def test_sinkhorn_equals_an_independent_float64_reference_value_and_gradient(eps):
    m = G.ground_distance()
    assert np.array_equal(m, m.T)  # the kernel updates rely on a symmetric ground distance
    assert (m.max() / eps > L._KERNEL_MAX_EXPONENT) == (eps == 0.015)
    a, b = _pairs(12, 5)
    want = _sinkhorn_reference(a, b, eps=eps, n_iter=20)
    got64 = L.sinkhorn(tf.constant(a, tf.float64), tf.constant(b, tf.float64), eps=eps, n_iter=20)
    got32 = L.sinkhorn(tf.constant(a, tf.float32), tf.constant(b, tf.float32), eps=eps, n_iter=20)
    assert got32.dtype == tf.float32 and got64.dtype == tf.float64
    np.testing.assert_allclose(got64.numpy(), want, rtol=1e-9)
    np.testing.assert_allclose(got32.numpy(), want, rtol=1e-6)
    # the gradient w.r.t. the reconstruction against central differences of the reference
    x = tf.Variable(b, dtype=tf.float64)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(L.sinkhorn(tf.constant(a, tf.float64), x, eps=eps, n_iter=20))
    grad = tape.gradient(loss, x).numpy()
    h = 1e-6
    for i in (0, 1, 3, 7):
        j = int(np.flatnonzero(b[i] > 0.01)[-1])  # a cell with charge: central differences stay positive
        bp, bm = b.copy(), b.copy()
        bp[i, j] += h
        bm[i, j] -= h
        up, down = (_sinkhorn_reference(a, x_, eps=eps, n_iter=20)[i] for x_ in (bp, bm))
        fd = up - down
        np.testing.assert_allclose(grad[i, j], fd / (2 * h), rtol=1e-4, atol=1e-7)
