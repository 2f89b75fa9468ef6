"""The fast training step: the same ELBO gradient as :meth:`VAE.elbo`, fused and allocation-free.

:class:`FusedStep` computes exactly what ``model.elbo`` followed by
``optimizer.step`` computes (eq.17-20 and the optimizer update), but

- every matrix product goes through BLAS into a preallocated buffer
  (``np.matmul(..., out=...)``);
- every elementwise or reduction loop is one call of a kernel of
  :mod:`scratchvae.kernels` (Numba), or of its plain NumPy twin;
- all parameters live in one flat array (``model.params`` become views of
  it), and so do the gradients and the optimizer's moments, so the update is
  one pass over parameter, gradient and moments; the flat arrays are cut
  from one allocation backed by huge pages where the kernel allows
  (:func:`_arena`);
- the buffers of the activations and their gradients are allocated on the
  first step and reused, their views cached by shape.

A steady-state step allocates only a few (N,)-sized summaries.

The BLAS thread count is left as the environment sets it
(``OPENBLAS_NUM_THREADS``): it is not tuned at run time, though one thread
beat two during slow spells of the benchmark machine, because OpenBLAS'
sgemm rounds differently with 1 and 2 threads at some of the step's shapes
(32x784 @ 784x400, for one), and a run resumed from a checkpoint must match
an uninterrupted one bit for bit.

Shape letters: N batch, L samples, R = L·N decoder rows, J latent, D data.
"""
import math

import numpy as np

from .optim import SGD, Adagrad, Adam

BACKENDS = ("numba", "numpy")
ENV_VAR = "SCRATCHVAE_BACKEND"


def default_backend():
    """$SCRATCHVAE_BACKEND if set, else "numba"."""
    import os

    backend = os.environ.get(ENV_VAR, "numba")
    if backend not in BACKENDS:
        raise ValueError(f"${ENV_VAR}={backend!r} is not a backend; choose from {', '.join(BACKENDS)}")
    return backend


def kernel_set(backend):
    """The kernels of a backend: "numba" (compiled) or "numpy" (their readable twins)."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
    from . import kernels

    names = ("bias_act_forward", "act_backward", "col_sum", "all_finite", "bernoulli_loglik_grad",
             "gaussian_loglik_grad", "gaussian_loglik_grad_shared", "kl_grad", "reparam_forward", "reparam_backward",
             "adam_update", "sgd_momentum_update", "adagrad_update")
    suffix = "" if backend == "numba" else "_numpy"
    ks = type("Kernels", (), {})()
    for n in names:
        setattr(ks, n, getattr(kernels, n + suffix))
    ks.codes = kernels.ACT_CODES
    return ks


HUGE_PAGE = 2 << 20


def _arena(count, size, dtype):
    """``count`` zeroed 1-D arrays of ``size`` elements, cut from one allocation, each 64-byte aligned.

    Parameters, gradients and moments are streamed every step (28 bytes per
    parameter in the Adam pass). When the arrays take 2 MiB or more together,
    the allocation is an anonymous private memory map, 2 MiB aligned and
    advised ``MADV_HUGEPAGE`` where the platform has it, so the kernel can back
    it with transparent huge pages (5 TLB entries for the standard model's
    10.4 MB instead of about 2,550). Measured on the 2-vCPU virtual machine of
    the benchmarks, batch 32, in alternating processes: the Adam pass 0.205-0.210
    ms against 0.217-0.224 ms with NumPy's 4 KiB pages; during a slow spell of
    the shared host, when memory-bound work ran 5-8x slower in every process,
    1.15-1.20 ms against 1.64-1.70 ms.
    """
    import mmap

    itemsize = np.dtype(dtype).itemsize
    stride = -(-size * itemsize // 64) * 64  # bytes per array, rounded up to 64
    nbytes = count * stride
    advise = getattr(mmap, "MADV_HUGEPAGE", None)
    if advise is None or nbytes < HUGE_PAGE:
        raw = np.zeros(nbytes + 64, np.uint8)
        start = -raw.ctypes.data % 64
    else:
        span = -(-nbytes // HUGE_PAGE) * HUGE_PAGE  # whole huge pages
        buf = mmap.mmap(-1, span + HUGE_PAGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)  # zero-filled
        raw = np.frombuffer(buf, np.uint8)
        start = -raw.ctypes.data % HUGE_PAGE
        try:
            buf.madvise(advise, start, span)
        except OSError:  # e.g. a kernel built without transparent huge pages: plain pages then
            pass
    return [raw[start + i * stride:start + i * stride + size * itemsize].view(dtype) for i in range(count)]


class FusedStep:
    """One training step of ``model`` with ``optimizer``, fused, on preallocated buffers.

    Parameters
    ----------
    model : VAE (its ``params`` are repacked into one flat array, as views; values unchanged)
    optimizer : SGD, Adagrad or Adam (its state is repacked the same way)
    batch_size : int, the largest N a step will see
    samples : int, L
    backend : "numba" or "numpy" (the kernels' twins; slow, for checking)
    """

    def __init__(self, model, optimizer, batch_size, samples=1, backend="numba"):
        self.model, self.opt = model, optimizer
        self.k = kernel_set(backend)
        self.dtype = model.dtype
        self.B, self.L = int(batch_size), int(samples)
        c = model.config
        self.J, self.D = c.latent_dim, c.data_dim
        self.act = self.k.codes[c.activation]
        self.ident = self.k.codes["identity"]
        self._fixed_logvar = np.full(self.D, c.fixed_logvar, self.dtype)  # read only with gaussian_variance="fixed"
        self._pack()
        self._buffers, self._views = {}, {}

    # ------------------------------------------------------------------ packing
    def _pack(self):
        m, dt = self.model, self.dtype
        names = list(m.params)
        total = sum(m.params[k].size for k in names)
        slots = {SGD: ("v",), Adagrad: ("s",), Adam: ("m", "v")}[type(self.opt)]
        flats = _arena(2 + len(slots), total, dt)
        self.flat_p, self.flat_g = flats[0], flats[1]
        self.grads, offset = {}, 0
        views = {}
        for k in names:
            p = m.params[k]
            n = p.size
            self.flat_p[offset:offset + n] = p.ravel()
            views[k] = (offset, n, p.shape)
            m.params[k] = self.flat_p[offset:offset + n].reshape(p.shape)
            self.grads[k] = self.flat_g[offset:offset + n].reshape(p.shape)
            offset += n
        self.flat_state = {}
        for slot, flat in zip(slots, flats[2:]):
            for k, (o, n, shape) in views.items():
                key = f"{slot}.{k}"
                if key in self.opt.state:
                    flat[o:o + n] = np.asarray(self.opt.state[key], dt).ravel()
                self.opt.state[key] = flat[o:o + n].reshape(shape)
            self.flat_state[slot] = flat

    def _buf(self, name, shape):
        """A contiguous view of shape ``shape`` into a flat buffer sized for the largest batch.

        Views are cached by (name, shape): a steady-state step only looks them up
        (computing them anew cost about 4 µs each, 60 µs a step).
        """
        view = self._views.get((name, shape))
        if view is None:
            size = math.prod(shape)
            b = self._buffers.get(name)
            if b is None or b.size < size:
                b = self._buffers[name] = np.empty(max(size, 1), self.dtype)
                self._views = {key: v for key, v in self._views.items() if key[0] != name}  # views of the old one
            view = self._views[(name, shape)] = b[:size].reshape(shape)
        return view

    # --------------------------------------------------------------------- step
    def _mlp_forward(self, prefix, layers, h, rows):
        """Dense layers: BLAS into a buffer, then bias + activation in one kernel. Keeps what backward needs."""
        P, k = self.model.params, self.k
        saved = []
        last = len(layers) - 1
        for i, name in enumerate(layers):
            W, b = P[name + ".W"], P[name + ".b"]
            a = self._buf(f"{prefix}.a{i}", (rows, W.shape[1]))
            np.matmul(h, W, out=a)
            if i < last:
                out = self._buf(f"{prefix}.h{i}", a.shape)
                k.bias_act_forward(out, a, b, self.act)
            else:
                out = a
                k.bias_act_forward(a, a, b, self.ident)
            saved.append((name, h, a, out))
            h = out
        return h, saved

    def _mlp_backward(self, prefix, saved, dout, need_dx):
        """Backward of :meth:`_mlp_forward` into the flat gradient; returns ∂loss/∂input (or None)."""
        P, G, k = self.model.params, self.grads, self.k
        last = len(saved) - 1
        for i in range(last, -1, -1):
            name, h_in, a, out = saved[i]
            if i < last:
                k.act_backward(dout, dout, a, out, self.act)  # in place: dout becomes ∂loss/∂a
            np.matmul(h_in.T, dout, out=G[name + ".W"])
            k.col_sum(G[name + ".b"], dout)
            if i > 0 or need_dx:
                W = P[name + ".W"]
                dh = self._buf(f"{prefix}.d{i}", (dout.shape[0], W.shape[0]))
                np.matmul(dout, W.T, out=dh)
                dout = dh
        return dout if need_dx else None

    def step(self, x, eps, beta=1.0):
        """:meth:`forward_backward` then :meth:`update`; returns (recon, kl)."""
        out = self.forward_backward(x, eps, beta)
        self.update()
        return out

    def forward_backward(self, x, eps, beta=1.0):
        """Forward and backward for one minibatch, the gradient left in :attr:`grads` (views of ``flat_g``).

        Parameters
        ----------
        x : (N, D) array of the model's dtype, N ≤ batch_size (checked by the caller)
        eps : (L, N, J) standard normal noise
        beta : KL weight

        Returns
        -------
        recon, kl : (N,) arrays (fresh), the terms of eq.17/eq.20 per data point
        """
        m, k, c = self.model, self.k, self.model.config
        N = x.shape[0]
        L, J, D = eps.shape[0], self.J, self.D
        R = L * N
        # ---- forward
        enc, enc_saved = self._mlp_forward("enc", m.enc_layers, x, N)  # (N, 2J)
        z = self._buf("z", (L, N, J))
        std = self._buf("std", (N, J))
        k.reparam_forward(z, std, enc, eps)  # enc = [μ | log σ²]
        dec, dec_saved = self._mlp_forward("dec", m.dec_layers, z.reshape(R, J), R)  # (R, D or 2D)
        ll = self._buf("ll", (L, N))
        ddec = self._buf("ddec", dec.shape)
        scale = -1.0 / R  # ∂loss/∂log p(x|z_l) of the loss −mean_n(recon − beta·kl)
        if c.likelihood == "bernoulli":
            k.bernoulli_loglik_grad(ll, ddec.reshape(L, N, D), x, dec.reshape(L, N, D), scale)
        elif c.gaussian_variance == "predicted":
            k.gaussian_loglik_grad(ll, ddec.reshape(L, N, 2 * D), x, dec.reshape(L, N, 2 * D), scale)
        else:
            if c.gaussian_variance == "learned":
                logvar_d, dlogvar_d = m.params["dec.logvar"], self.grads["dec.logvar"]
            else:  # a constant log-variance; its gradient goes to a scratch buffer
                logvar_d, dlogvar_d = self._fixed_logvar, self._buf("fixed_dlogvar", (D,))
            k.gaussian_loglik_grad_shared(ll, ddec.reshape(L, N, D), dlogvar_d, x, dec.reshape(L, N, D),
                                          logvar_d, scale)
        # ---- backward
        dz = self._mlp_backward("dec", dec_saved, ddec, need_dx=True).reshape(L, N, J)
        denc = self._buf("denc", (N, 2 * J))
        kl = self._buf("kl", (N,))
        k.kl_grad(kl, denc, enc, float(beta) / N)
        k.reparam_backward(denc, dz, eps, std)  # accumulates onto the KL gradient
        self._mlp_backward("enc", enc_saved, denc, need_dx=False)
        return ll.mean(axis=0), kl.copy()

    def gradients_finite(self):
        """Whether every gradient of the last step is finite (one pass over the flat gradient)."""
        return bool(self.k.all_finite(self.flat_g))

    def update(self):
        """The optimizer step on the flat arrays, one pass; the same formulas as scratchvae.optim."""
        o, k = self.opt, self.k
        o.t += 1
        if isinstance(o, Adam):
            k.adam_update(self.flat_p, self.flat_state["m"], self.flat_state["v"], self.flat_g, o.lr, o.beta1,
                          o.beta2, o.eps, 1 - o.beta1**o.t, 1 - o.beta2**o.t)
        elif isinstance(o, Adagrad):
            k.adagrad_update(self.flat_p, self.flat_state["s"], self.flat_g, o.lr, o.eps)
        else:
            k.sgd_momentum_update(self.flat_p, self.flat_state["v"], self.flat_g, o.lr, o.momentum)
