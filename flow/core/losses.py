"""Reconstruction losses for the autoencoder, and a neural EMD cross-check.

All losses take ``(y_true, y_pred)`` as ``(N, 48)`` tensors in TC order and
return a per-sample loss ``(N,)``.  Sources:

* ``weighted_mse``: Shenoy et al. 2023, Eq. 2: ``mean((x - y)^2 max(x, y))``.
* ``telescope_mse``: Eq. 3-5: ``4 L1 + 2 L2 + L3`` over cells, the 36 weighted
  2x2 super-cells and the three 4x4 groups (tables in ``geometry``).
* ``sinkhorn``: entropic optimal transport (Cuturi 2013) in the log domain
  with epsilon-scaling (Schmitzer 2019; Feydy et al. 2019), differentiable;
  the transport cost ``<P, M>`` of the regularised plan on the hexagonal ground
  distance, both wafers normalised to unit sum.
* ``emd_cnn``: the frozen EMD CNN of the ``emd`` stage (the paper's method),
  see :func:`flow.core.emd_cnn.emd_loss`.
* :func:`kr_dual_emd`: the Kantorovich-Rubinstein dual,
  ``EMD(a, b) = max_{f 1-Lipschitz} sum_i f(x_i) (a_i - b_i)``, estimated by
  training one small 1-Lipschitz network per pair (weight-normalised dense
  layers + GroupSort, as in NEEMo / Anil et al. 2019).  Any 1-Lipschitz ``f``
  gives a lower bound, so it is used to cross-check exact EMD, not to train.

The loss table :data:`LOSSES` (name -> :class:`Loss`) is the one list of
losses: config validation (``autoencoder.losses``, ``conditional_losses``,
``export_loss``) accepts exactly its names and the ``autoencoder`` stage builds
each loss with its ``factory``.  Adding a loss: ``docs/extending.md``.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from flow.core import geometry as G
from flow.runner.errors import ConfigError


def _tf():
    import tensorflow as tf

    return tf


def weighted_mse(y_true, y_pred):
    tf = _tf()
    y_true = tf.cast(y_true, y_pred.dtype)
    return tf.reduce_mean(tf.square(y_true - y_pred) * tf.maximum(y_true, y_pred), axis=-1)


def _remap(rows: np.ndarray) -> np.ndarray:
    """48 x K 0/1 matrix summing cells into the K groups listed in ``rows``."""
    m = np.zeros((G.N_TC, len(rows)), dtype=np.float32)
    for k, cells in enumerate(rows):
        m[list(cells), k] = 1.0
    return m


_REMAP_36 = _remap(G.SUPERCELLS_2X2)
_REMAP_3 = _remap(G.GROUPS_4X4)


def telescope_mse(y_true, y_pred):
    tf = _tf()
    y_true = tf.cast(y_true, y_pred.dtype)

    def lk(a, b, w=None):
        t = tf.square(a - b) * tf.maximum(a, b)
        return tf.reduce_mean(t if w is None else t * w, axis=-1)

    r36 = tf.constant(_REMAP_36, dtype=y_pred.dtype)
    r3 = tf.constant(_REMAP_3, dtype=y_pred.dtype)
    w36 = tf.constant(G.SUPERCELL_WEIGHTS, dtype=y_pred.dtype)
    l1 = lk(y_true, y_pred)
    l2 = lk(tf.matmul(y_true, r36), tf.matmul(y_pred, r36), w36)
    l3 = lk(tf.matmul(y_true, r3), tf.matmul(y_pred, r3))
    return 4.0 * l1 + 2.0 * l2 + l3


#: exp(-x) of a float64 stays a normal number up to x ~ 708; the kernel form of a
#: Sinkhorn update is used while max(M) / eps stays below this, else the log form.
_KERNEL_MAX_EXPONENT = 700.0


def _softmin_update(h, e: float, kernel, m):
    """``-e * logsumexp_j(h_j - M_ij / e)`` for every row ``i`` (float64 tensors).

    With ``kernel = exp(-M / e)`` (float64, symmetric): ``hmax + log(sum_j K_ij
    exp(h_j - hmax))``, one (N, 48) x (48, 48) matrix product instead of the
    exponentials of an (N, 48, 48) tensor; exact, because ``exp(h_j - hmax) <= 1``
    with equality for some ``j`` keeps the sum at or above ``min K > 0``.  Without a
    kernel (``eps`` too small for float64), the log-domain form.
    """
    tf = _tf()
    if kernel is None:
        return -e * tf.reduce_logsumexp(h[:, None, :] - m[None] / e, axis=-1)
    hmax = tf.stop_gradient(tf.reduce_max(h, -1, keepdims=True))  # the result does not depend on it
    return -e * (hmax + tf.math.log(tf.matmul(tf.exp(h - hmax), kernel)))


def sinkhorn(y_true, y_pred, *, eps: float = 0.05, eps0: float = 4.0, scaling: float = 0.7,
             n_iter: int = 40):
    """Entropic OT cost with epsilon-scaling, log-domain potentials (stable for small eps).

    ``eps`` and ``eps0`` are in units of the ground distance (2.0 = one cell
    spacing).  The schedule decreases geometrically from ``eps0`` by
    ``scaling`` per iteration and is clamped at ``eps``; the last iteration
    always runs at ``eps``, so the returned plan (built with the potentials
    of that iteration) has exactly the marginal ``b`` and unit mass: the cost
    is bounded by the largest ground distance even when ``n_iter`` is small.

    The potentials are computed in float64 with the kernel form of each update
    (:func:`_softmin_update`): the same function as the log-domain updates,
    about 4x less CPU per training step at batch 512 than the float32
    log-domain tensors (docs/autoencoder.md, "Sinkhorn's cost"), and closer to
    a float64 reference.  The result has the dtype of ``y_pred``.
    """
    tf = _tf()
    f64 = tf.float64
    tiny = tf.constant(1e-12, f64)
    a = tf.cast(y_true, f64)
    b = tf.cast(y_pred, f64)
    a = a / (tf.reduce_sum(a, -1, keepdims=True) + tiny)
    b = b / (tf.reduce_sum(b, -1, keepdims=True) + tiny)
    m_np = G.ground_distance().astype(np.float64)
    m = tf.constant(m_np, dtype=f64)
    loga = tf.math.log(a + tiny)
    logb = tf.math.log(b + tiny)
    f = tf.zeros_like(a)
    g = tf.zeros_like(b)
    schedule = [max(eps, eps0 * scaling ** k) for k in range(n_iter - 1)] + [eps]
    kernels = {e: (tf.constant(np.exp(-m_np / e), dtype=f64) if m_np.max() / e <= _KERNEL_MAX_EXPONENT
                   else None) for e in set(schedule)}
    for e in schedule:
        # f_i = -e log sum_j exp(log b_j + (g_j - M_ij)/e), then the same for g (M is symmetric)
        f = _softmin_update(logb + g / e, e, kernels[e], m)
        g = _softmin_update(loga + f / e, e, kernels[e], m)
    logp = loga[:, :, None] + logb[:, None, :] + (f[:, :, None] + g[:, None, :] - m[None]) / eps
    return tf.cast(tf.reduce_sum(tf.exp(logp) * m[None], axis=[-2, -1]), y_pred.dtype)


# ------------------------------------------------------------- the loss table
@dataclass(frozen=True)
class LossSettings:
    """What a loss factory may use: the ``autoencoder`` settings of the losses."""

    emd_cnn_path: object = None
    """The frozen EMD CNN (``emd/emd_cnn.keras``; losses with ``needs_emd_cnn``)."""
    sinkhorn_eps: float = 0.05
    sinkhorn_iters: int = 40


@dataclass(frozen=True)
class Loss:
    """One registered reconstruction loss."""

    name: str
    """Config name (``autoencoder.losses``), also the model name in every table."""
    factory: Callable[[LossSettings], Callable]
    """Settings -> ``(y_true, y_pred) -> (N,)`` TensorFlow loss."""
    needs_emd_cnn: bool
    """Built from the ``emd`` stage's frozen EMD CNN (``autoencoder.refine_rounds``
    fine-tunes that CNN in a closed loop for these losses)."""
    description: str


def _emd_cnn_loss(s: LossSettings):
    from flow.core.emd_cnn import emd_loss, load_emd_cnn

    return emd_loss(load_emd_cnn(s.emd_cnn_path))


def _sinkhorn_loss(s: LossSettings):
    def sinkhorn_loss(y_true, y_pred):
        return sinkhorn(y_true, y_pred, eps=s.sinkhorn_eps, n_iter=s.sinkhorn_iters)

    return sinkhorn_loss


#: the table: adding a loss = its function above + one entry here
LOSSES: dict[str, Loss] = {entry.name: entry for entry in (
    Loss("emd_cnn", _emd_cnn_loss, True, "the frozen EMD CNN of the emd stage, the paper's method"),
    Loss("telescope_mse", lambda s: telescope_mse, False,
         "telescope MSE over cells, 2x2 super-cells and 4x4 groups (Eq. 3-5)"),
    Loss("weighted_mse", lambda s: weighted_mse, False, "MSE weighted by max(x, y) (Eq. 2)"),
    Loss("sinkhorn", _sinkhorn_loss, False,
         "entropic optimal transport cost on the hexagonal ground distance (sinkhorn_eps, sinkhorn_iters)"),
)}


def loss_names() -> tuple[str, ...]:
    """Registered loss names, in table order (the default ``autoencoder.losses``)."""
    return tuple(LOSSES)


def loss_spec(name: str) -> Loss:
    """The table entry of ``name``; a :class:`~flow.runner.errors.ConfigError` listing the
    registered losses otherwise."""
    try:
        return LOSSES[name]
    except KeyError:
        raise ConfigError(f"expected a loss registered in flow/core/losses.py ({', '.join(LOSSES)}), "
                          f"got {name!r}") from None


def get_loss(name: str, *, emd_cnn_path=None, sinkhorn_eps: float = 0.05, sinkhorn_iters: int = 40):
    """Loss function by config name (``emd_cnn`` needs the frozen model's path)."""
    return loss_spec(name).factory(LossSettings(emd_cnn_path=emd_cnn_path, sinkhorn_eps=sinkhorn_eps,
                                                sinkhorn_iters=sinkhorn_iters))


# ------------------------------------------------------- KR dual (NEEMo-style)
def kr_dual_emd(a, b, *, hidden: int = 32, steps: int = 400, lr: float = 0.02,
                batch: int = 256, seed: int = 0) -> np.ndarray:
    """Lower-bound estimate of EMD(a_n, b_n) for each pair via the KR dual.

    One 1-Lipschitz MLP ``f: R^2 -> R`` per pair (all pairs trained at once
    with batched weights): ``x -> GroupSort(W1 x + c1) -> GroupSort(W2 h + c2)
    -> w3 . h``, with rows of ``W1`` rescaled to L2 norm <= 1 and rows of
    ``W2``/``w3`` to L1 norm <= 1, which makes ``f`` 1-Lipschitz from the
    Euclidean plane.  Maximises ``sum_i f(x_i)(a_i - b_i)`` with Adam.
    Inputs are normalised to unit sum; empty wafers give NaN.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    sa, sb = a.sum(-1, keepdims=True), b.sum(-1, keepdims=True)
    empty = (sa[:, 0] <= 0) | (sb[:, 0] <= 0)
    d = np.where(empty[:, None], 0.0, a / np.where(sa > 0, sa, 1) - b / np.where(sb > 0, sb, 1))
    out = np.empty(len(a))
    rng = np.random.default_rng(seed)
    for lo in range(0, len(a), batch):
        out[lo:lo + batch] = _kr_batch(d[lo:lo + batch], hidden, steps, lr, rng)
    out[empty] = np.nan
    return out


def _kr_batch(d: np.ndarray, hidden: int, steps: int, lr: float, rng: np.random.Generator) -> np.ndarray:
    """KR-dual estimates for one batch of mass differences ``d = a - b`` (B, 48)."""
    tf = _tf()
    xy = tf.constant(G.TC_XY, tf.float32)
    dd = tf.constant(d, tf.float32)
    n = d.shape[0]

    def var(*shape):
        return tf.Variable(rng.normal(0, 0.5, size=shape).astype(np.float32))

    w1, c1, w2, c2, w3 = var(n, hidden, 2), var(n, hidden), var(n, hidden, hidden), var(n, hidden), \
        var(n, 1, hidden)
    params = [w1, c1, w2, c2, w3]
    opt = tf.keras.optimizers.Adam(lr)

    def renorm(w, p):
        return w / tf.maximum(1.0, tf.norm(w, ord=p, axis=-1, keepdims=True))

    def groupsort(h):
        s = tf.shape(h)
        return tf.reshape(tf.sort(tf.reshape(h, tf.concat([s[:-1], [-1, 2]], 0)), axis=-1), s)

    def objective():
        h = groupsort(tf.einsum("bhk,ik->bih", renorm(w1, 2), xy) + c1[:, None, :])
        h = groupsort(tf.einsum("bgh,bih->big", renorm(w2, 1), h) + c2[:, None, :])
        f = tf.einsum("boh,bih->bio", renorm(w3, 1), h)[..., 0]            # f at the 48 cells
        return tf.reduce_sum(f * dd, axis=-1)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            obj = objective()
            loss = -tf.reduce_sum(obj)
        opt.apply_gradients(zip(tape.gradient(loss, params), params, strict=True))
        return obj

    # every iterate is a 1-Lipschitz function, so the best value seen is a valid lower bound
    best = np.full(n, -np.inf)
    for _ in range(steps):
        best = np.maximum(best, step().numpy())
    return np.maximum(best, objective().numpy())
