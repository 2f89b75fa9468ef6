"""The one forward and backward of the VAE, run with a kernel set into reusable buffers.

:class:`Engine` executes the network that :class:`scratchvae.model.VAE`
describes (dense layers, activation, the encoder head [μ | log σ²], the
decoder head, the likelihood) for every workload: the ELBO and its gradient
(eq.17, eq.20), the importance-weighted bound L_K and its gradient (eq.29,
eq.34-eq.36), and the
forward passes alone (evaluation, encoding, decoding). It runs with either
kernel set of :func:`kernel_set`:

- ``"reference"``: :mod:`scratchvae.reference`, each kernel written with the
  readable ops of :mod:`scratchvae.ops`, :mod:`scratchvae.distributions` and
  :mod:`scratchvae.optim`; no Numba;
- ``"numba"``: :mod:`scratchvae._fast.kernels`, the same kernels compiled.

Either way every matrix product goes through BLAS into a preallocated buffer
(``np.matmul(..., out=...)``), and the buffers of the activations and their
gradients are allocated on first use and reused, their views cached by shape.

:class:`FusedStep` adds the optimizer: parameters, gradients and the
optimizer's moments packed into flat arrays (``model.params`` become views),
so the update is one pass; the flat arrays are cut from one allocation backed
by huge pages where the kernel allows (:func:`scratchvae._fast.arena.arena`). With the numba kernels
and an OpenBLAS of more than one thread, that pass is cut into one piece per
thread and run by OpenBLAS' own threads (:class:`scratchvae._fast.blas.Pieces`).
Before it, the step makes sure every gradient is finite: at small batches by
a bound from the products' inputs (:meth:`Engine.gradients_surely_finite`),
else by a pass over the gradient, in pieces too.

The BLAS thread count is left as the environment sets it: OpenBLAS' sgemm
rounds differently with 1 and 2 threads at some of the step's shapes, and a
run resumed from a checkpoint must match an uninterrupted one bit for bit
(docs/performance.md).

Shape letters: N batch, L samples (K for the importance-weighted bound),
R = L·N decoder rows, J latent, D data.
"""
import math
import types

import numpy as np

from ._fast.arena import arena
from .ops import ACTIVATION_CODES

BACKENDS = ("numba", "reference")
ENV_VAR = "SCRATCHVAE_BACKEND"


def numba_available():
    """Whether numba can be imported (it is a dependency, but a new Python may have no wheel of it yet)."""
    import importlib.util

    return importlib.util.find_spec("numba") is not None


def default_backend():
    """$SCRATCHVAE_BACKEND if set, else "numba" where numba is installed, else "reference"."""
    import os

    backend = os.environ.get(ENV_VAR) or ("numba" if numba_available() else "reference")
    if backend not in BACKENDS:
        raise ValueError(f"${ENV_VAR}={backend!r} is not a backend; choose from {', '.join(BACKENDS)}")
    return backend


def kernel_set(backend):
    """The kernel set of a backend, as a namespace: "numba" (compiled) or "reference" (readable NumPy)."""
    if backend == "reference":
        from .reference import KERNELS
    elif backend == "numba":
        if not numba_available():
            raise ValueError("the numba backend needs numba, which is not installed; "
                             "--backend reference runs the same engine with the readable kernels")
        from ._fast.kernels import KERNELS
    else:
        raise ValueError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
    return types.SimpleNamespace(**KERNELS)


# The sizes (parameters) from which FusedStep runs a pass in pieces on OpenBLAS' threads: below them the
# hand-over costs more than the second core saves (measured in docs/performance.md).
PIECES_FROM = {"update": 1 << 17, "all_finite": 1 << 18}


class Engine:
    """The forward and backward passes of ``model`` with one kernel set, into buffers reused across calls.

    Parameters
    ----------
    model : VAE, read at every call (its ``params`` may be replaced or repacked between calls)
    backend : "numba" or "reference", see :data:`BACKENDS`
    grads : dict name -> array or None, where the gradients are written (views
        of one flat array in :class:`FusedStep`); default: arrays of its own

    Every method returns views of the engine's buffers, valid until its next
    call: copy what you keep (:class:`scratchvae.model.VAE` does).
    """

    def __init__(self, model, backend="reference", grads=None):
        self.model, self.backend = model, backend
        self.k = kernel_set(backend)
        self.dtype = model.dtype
        c = model.config
        self.J, self.D = c.latent_dim, c.data_dim
        self.act = ACTIVATION_CODES[c.activation]
        self.ident = ACTIVATION_CODES["identity"]
        self._fixed_logvar = np.full(self.D, c.fixed_logvar, self.dtype)  # read only with gaussian_variance="fixed"
        self.grads = grads if grads is not None else {k: np.zeros_like(p) for k, p in model.params.items()}
        self._buffers, self._views, self._consts, self._plans = {}, {}, {}, {}
        self._products = []  # (x, dout) of each dense layer's weight gradient xᵀ dout in the last backward
        self._product_inputs = 0  # the numbers those arrays hold
        info = np.finfo(self.dtype)
        self._float_limits = float(info.max) / 2, 1 / float(info.eps)  # half the largest float; rows with R·u ≤ 1/2

    # ---------------------------------------------------------------- buffers
    def _buf(self, name, shape):
        """A contiguous view of shape ``shape`` into a flat buffer sized for the largest call so far.

        Views are cached by (name, shape): a steady-state step only looks them up.
        """
        view = self._views.get((name, shape))
        if view is None:
            size = math.prod(shape)
            b = self._buffers.get(name)
            if b is None or b.size < size:
                b = self._buffers[name] = np.empty(max(size, 1), self.dtype)
                self._views = {key: v for key, v in self._views.items() if key[0] != name}  # views of the old one
                self._plans.clear()  # they may hold some
            view = self._views[(name, shape)] = b[:size].reshape(shape)
        return view

    def _const(self, shape, value):
        """A read-only array of ``shape`` filled with ``value`` (the ELBO's upstream gradient), filled once."""
        a = self._consts.get((shape, value))
        if a is None:
            a = self._consts[(shape, value)] = np.full(shape, value, self.dtype)
            a.flags.writeable = False
        return a

    # ------------------------------------------------------------ dense layers
    def _mlp_forward(self, prefix, layers, h, rows, head_bias=True):
        """Dense layers (ops.dense_forward then ops.activation_forward, the head linear): BLAS into a buffer,
        then bias + activation in one kernel. Returns the output and what the backward needs. Without
        ``head_bias`` the head's bias is left for the caller (the likelihood kernels add it as they read)."""
        P, k = self.model.params, self.k
        saved = []
        self._products.clear()  # a forward pass overwrites what a proof of the last backward would read
        self._product_inputs = 0
        plan = self._layer_plan(prefix, layers, rows)
        last = len(plan) - 1
        for i, layer in enumerate(plan):
            w, bias, a, out, _ = layer
            np.matmul(h, P[w], out=a)
            if i < last:
                k.bias_act_forward(out, a, P[bias], self.act)
            elif head_bias:  # the heads are linear: [μ | v], logits or [mean | logvar]
                k.bias_act_forward(a, a, P[bias], self.ident)
            saved.append((layer, h, a, out))
            h = out
        return h, saved

    def _layer_plan(self, prefix, layers, rows):
        """Per layer, for ``rows`` input rows: (weight key, bias key, product buffer a, activation buffer (a
        itself for the head), key of the input-gradient buffer); made once per (prefix, rows) and dropped
        when a buffer grows (:meth:`_buf`)."""
        plan = self._plans.get((prefix, rows))
        if plan is None:
            P, plan, last = self.model.params, [], len(layers) - 1
            for i, name in enumerate(layers):
                a = self._buf(f"{prefix}.a{i}", (rows, P[name + ".W"].shape[1]))
                out = self._buf(f"{prefix}.h{i}", a.shape) if i < last else a
                plan.append((name + ".W", name + ".b", a, out, f"{prefix}.d{i}"))
            self._plans[(prefix, rows)] = plan
        return plan

    def _mlp_backward(self, prefix, saved, dout, need_dx, head_db=False):
        """Backward of :meth:`_mlp_forward` (ops.dense_backward: dW = xᵀ dout, db = Σ_n dout, dx = dout Wᵀ)
        into :attr:`grads`; returns ∂loss/∂input (or None). ``dout`` is overwritten. With ``head_db`` the
        head's bias gradient is already in :attr:`grads` (the likelihood gradient kernels sum it)."""
        P, G, k = self.model.params, self.grads, self.k
        last = len(saved) - 1
        for i in range(last, -1, -1):
            (w, bias, _, _, d_key), h_in, a, out = saved[i]
            if i < last:  # in place: dout becomes ∂loss/∂a; the bias gradient in the same pass
                k.bias_act_backward(dout, G[bias], dout, a, out, self.act)
            elif not head_db:  # the heads are linear
                k.col_sum(G[bias], dout)
            np.matmul(h_in.T, dout, out=G[w])
            self._products.append((h_in, dout))
            self._product_inputs += h_in.size + dout.size
            if i > 0 or need_dx:
                W = P[w]
                dh = self._buf(d_key, (dout.shape[0], W.shape[0]))
                np.matmul(dout, W.T, out=dh)
                dout = dh
        return dout if need_dx else None

    # ------------------------------------------------------------------ pieces
    def encode(self, x):
        """The encoder's output [μ | v] (N, 2J) for data ``x`` (N, D) (eq.18)."""
        enc, self._enc_saved = self._mlp_forward("enc", self.model.enc_layers, x, x.shape[0])
        return enc

    def decode(self, z, head_bias=True):
        """The decoder's output for latents ``z`` (R, J): logits, mean, or [mean | logvar] (R, D or 2D);
        without ``head_bias``, less the head's bias (:meth:`_head_bias`)."""
        dec, self._dec_saved = self._mlp_forward("dec", self.model.dec_layers, z, z.shape[0], head_bias)
        return dec

    def _head_bias(self):
        return self.model.params[self.model.dec_layers[-1] + ".b"]

    def kl(self, enc):
        """The analytic KL( q(z|x) ‖ N(0, I) ) per data point (N,) from [μ | v] (eq.23)."""
        N = enc.shape[0]
        kl = self._buf("kl", (N,))
        self.k.kl_grad(kl, self._buf("denc", (N, 2 * self.J)), enc, 0.0)
        return kl

    def _sample_and_decode(self, enc, eps):
        """z = μ + σ ε (eq.27) and the decoder's output for every sample: z (L, N, J), σ (N, J), dec (R, ·)."""
        L, N, J = eps.shape
        z, std = self._buf("z", (L, N, J)), self._buf("std", (N, J))
        self.k.reparam_forward(z, std, enc, eps)
        return z, std, self.decode(z.reshape(L * N, J), head_bias=False)

    def _logvar_D(self):
        c = self.model.config
        return self.model.params["dec.logvar"] if c.gaussian_variance == "learned" else self._fixed_logvar

    def _loglik(self, ll, x, dec):
        """ll[l, n] = log p(x_n | z_l) from the decoder's output less its head's bias (eq.41 or eq.43);
        the kernel adds the bias as it reads, one pass over the output fewer."""
        c, k, b = self.model.config, self.k, self._head_bias()
        L, N = ll.shape
        if c.likelihood == "bernoulli":
            k.bernoulli_loglik(ll, x, dec.reshape(L, N, self.D), b)
        elif c.gaussian_variance == "predicted":
            k.gaussian_loglik(ll, x, dec.reshape(L, N, 2 * self.D), b)
        else:
            k.gaussian_loglik_shared(ll, x, dec.reshape(L, N, self.D), b, self._logvar_D())

    def _loglik_grad(self, ll, ddec, x, dec, dll):
        """:meth:`_loglik` and ddec = dll · ∂ll/∂dec (dec again less its head's bias); the head's bias
        gradient Σ ddec and the learned log-variance's gradient into :attr:`grads`."""
        c, k, b = self.model.config, self.k, self._head_bias()
        db = self.grads[self.model.dec_layers[-1] + ".b"]
        L, N = ll.shape
        if c.likelihood == "bernoulli":
            k.bernoulli_loglik_grad(ll, ddec.reshape(L, N, self.D), db, x, dec.reshape(L, N, self.D), b, dll)
        elif c.gaussian_variance == "predicted":
            k.gaussian_loglik_grad(ll, ddec.reshape(L, N, 2 * self.D), db, x, dec.reshape(L, N, 2 * self.D), b, dll)
        else:  # a fixed log-variance's gradient goes to a scratch buffer
            dlogvar = self.grads["dec.logvar"] if c.gaussian_variance == "learned" else self._buf("dlogvar", (self.D,))
            k.gaussian_loglik_shared_grad(ll, ddec.reshape(L, N, self.D), db, dlogvar, x, dec.reshape(L, N, self.D),
                                          b, self._logvar_D(), dll)

    # --------------------------------------------------------------- workloads
    def elbo(self, x, eps, beta=1.0, grads=True):
        """One Monte Carlo estimate of the ELBO (eq.20) and, with ``grads``, its gradient in :attr:`grads`.

        Parameters
        ----------
        x : (N, D) array of the model's dtype
        eps : (L, N, J) standard normal noise
        beta : float, the weight on the KL of the loss −mean_n(recon_n − beta·kl_n)

        Returns
        -------
        recon : (N,) array, (1/L) Σ_l log p(x|z_l), the 1/L of eq.20
        kl : (N,) array, the analytic KL (eq.23)
        """
        L, N, J = eps.shape
        enc = self.encode(x)
        enc_saved = self._enc_saved
        z, std, dec = self._sample_and_decode(enc, eps)
        ll, kl, denc = self._buf("ll", (L, N)), self._buf("kl", (N,)), self._buf("denc", (N, 2 * J))
        self.k.kl_grad(kl, denc, enc, float(beta) / N)  # writes denc = beta/N · ∂kl/∂[μ | v]
        if not grads:
            self._loglik(ll, x, dec)
            return self._sample_mean(ll), kl
        ddec = self._buf("ddec", dec.shape)
        self._loglik_grad(ll, ddec, x, dec, self._const((L, N), -1.0 / (L * N)))
        dz = self._mlp_backward("dec", self._dec_saved, ddec, need_dx=True, head_db=True).reshape(L, N, J)
        self.k.reparam_backward(denc, dz, eps, std)  # adds onto the KL gradient
        self._mlp_backward("enc", enc_saved, denc, need_dx=False)
        return self._sample_mean(ll), kl

    @staticmethod
    def _sample_mean(ll):
        """(1/L) Σ_l ll[l] as a new array: ll.mean(axis=0), which for L = 1 is ll[0] to the bit (a copy is cheaper)."""
        return ll[0].copy() if ll.shape[0] == 1 else ll.mean(axis=0)

    def gradients_surely_finite(self, max_reads=None):
        """True when the inputs of the last backward's products prove every gradient it wrote finite.

        Parameters
        ----------
        max_reads : int or None, give up (False) when those inputs hold more numbers than this

        Notes
        -----
        A weight gradient is xᵀ dout, a sum over the R rows of x (R, I) and
        dout (R, O): |∂W| ≤ R·max|x|·max|dout|, and the bias gradient
        |∂b| ≤ R·max|dout|, both under :func:`~scratchvae._fast.kernels.product_bound`.
        Rounding makes a sum of R terms at most (1 + u)^R times larger (u the
        unit roundoff), under 2 while R·u ≤ 1/2; so with the bound finite and
        under half the largest float, no gradient can be NaN or ±Inf. The
        learned log-variance's gradient is looked at directly. False means
        "not proven": look at the gradient itself. The proof reads the
        backward's inputs where they lie (the data ``x`` among them), so it
        holds until the next pass of this engine or a change to ``x``.
        """
        if max_reads is not None and self._product_inputs > max_reads:
            return False
        bound, (half_max, max_rows) = self.k.product_bound, self._float_limits
        logvar = self.grads.get("dec.logvar")
        if 2 * len(self._products) + (logvar is not None) != len(self.grads):
            return False  # no backward yet, or a gradient written elsewhere
        for x, dout in self._products:
            if not (x.shape[0] <= max_rows and bound(x, dout) < half_max):  # NaN: False
                return False
        return logvar is None or bool(self.k.all_finite(logvar))

    def log_weights(self, x, enc, eps):
        """log w_k = log p(x|z_k) + log p(z_k) − log q(z_k|x) (eq.29, eq.35, eq.36) for the encoder output ``enc``.

        Returns
        -------
        log_w, ll : (K, N) arrays
        """
        K, N, _ = eps.shape
        z, _, dec = self._sample_and_decode(enc, eps)
        ll, log_w = self._buf("ll", (K, N)), self._buf("log_w", (K, N))
        self._loglik(ll, x, dec)
        self.k.log_weights(log_w, ll, z, eps, enc)
        return log_w, ll

    def iwae(self, x, eps, grads=True):
        """The importance-weighted bound L_K (K = eps.shape[0]) and, with ``grads``, the gradient of −mean_n L_K.

        Notes
        -----
        L_K as in eq.29; ∇L_K = Σ_k w̃_k ∇ log w_k with the normalized weights w̃_k (MATH.md eq.34-eq.36):
        the decoder gets ∂loss/∂ll_k = −w̃_k/N, z_k also gets the prior's
        −z_k, and, with ε fixed, the log-variance gets ½ Σ_k of it from −log q.

        Returns
        -------
        log_w : (K, N) array;  recon : (N,) mean over k of log p(x|z_k);  kl : (N,) analytic KL
        """
        K, N, J = eps.shape
        enc = self.encode(x)
        enc_saved = self._enc_saved
        z, std, dec = self._sample_and_decode(enc, eps)
        ll, log_w = self._buf("ll", (K, N)), self._buf("log_w", (K, N))
        self._loglik(ll, x, dec)
        self.k.log_weights(log_w, ll, z, eps, enc)
        recon, kl = self._sample_mean(ll), self.kl(enc)  # from the log weights' own ll, before the backward
        if grads:
            bound, dlogw = self._buf("bound", (N,)), self._buf("dlogw", (K, N))
            self.k.iwae_weights(bound, dlogw, log_w, -1.0 / N)
            ddec = self._buf("ddec", dec.shape)
            # the gradient kernel sums ll again in its own loop (not always to the same bits): into a scratch
            self._loglik_grad(self._buf("ll_grad", (K, N)), ddec, x, dec, dlogw)
            dz = self._mlp_backward("dec", self._dec_saved, ddec, need_dx=True, head_db=True).reshape(K, N, J)
            denc = self._buf("denc", (N, 2 * J))
            self.k.iwae_latent_grad(denc, dz, z, dlogw)  # writes denc, adds the prior's part to dz
            self.k.reparam_backward(denc, dz, eps, std)
            self._mlp_backward("enc", enc_saved, denc, need_dx=False)
        return log_w, recon, kl


class FusedStep:
    """One training step of ``model`` with ``optimizer``: an :class:`Engine` plus a one-pass optimizer update.

    Parameters
    ----------
    model : VAE (its ``params`` are repacked into one flat array, as views; values unchanged)
    optimizer : SGD, Adagrad or Adam (its state is repacked the same way)
    backend : "numba" or "reference"
    objective : "elbo" (eq.20, L samples) or "iwae" (L_K, K samples)
    """

    def __init__(self, model, optimizer, backend="numba", objective="elbo"):
        if objective not in ("elbo", "iwae"):
            raise ValueError(f"unknown objective {objective!r}")
        self.model, self.opt, self.objective = model, optimizer, objective
        self._pack()
        self.engine = Engine(model, backend, grads=self.grads)
        self.k = self.engine.k
        self._pieces = self._find_pieces()

    def _pack(self):
        m, dt = self.model, self.model.dtype
        names = list(m.params)
        total = sum(m.params[k].size for k in names)
        slots = self.opt.slots
        flats = arena(2 + len(slots), total, dt)
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
        self.flat_state = []
        for slot, flat in zip(slots, flats[2:]):
            for k, (o, n, shape) in views.items():
                key = f"{slot}.{k}"
                if key in self.opt.state:
                    flat[o:o + n] = np.asarray(self.opt.state[key], dt).ravel()
                self.opt.state[key] = flat[o:o + n].reshape(shape)
            self.flat_state.append(flat)

    def _find_pieces(self):
        """What :meth:`_run_in_pieces` needs (the numba backend on an OpenBLAS of its kind), or None."""
        if self.engine.backend != "numba":
            return None
        from ._fast.blas import Pieces

        blas = Pieces.find()
        if blas is None:
            return None
        from ._fast.pieces import PIECE_HEADER, PIECE_OPS, piece_routine

        p, size = self.flat_p, self.flat_p.itemsize
        stride = (self.flat_g.ctypes.data - p.ctypes.data) // size
        rows = [p, self.flat_g, *self.flat_state]
        if any(a.ctypes.data != p.ctypes.data + i * stride * size for i, a in enumerate(rows)):
            return None  # not laid out as arena cuts them
        header = np.zeros(PIECE_HEADER)
        header[1:3] = len(rows), stride
        return types.SimpleNamespace(blas=blas, ops=PIECE_OPS, routine=piece_routine(p.dtype), header=header,
                                     header_address=header.ctypes.data, arena=p.ctypes.data)

    def _run_in_pieces(self, name, args=()):
        """Kernel ``name`` (an optimizer update or all_finite) over the flat arrays, cut into one piece per
        BLAS thread and run on OpenBLAS' threads (:class:`scratchvae._fast.blas.Pieces`): the same elementwise
        formulas, so the same bits as one pass. Returns None where it does not run so (one BLAS thread, another
        BLAS, the reference backend, fewer parameters than :data:`PIECES_FROM` names), else all_finite's
        answer (True for an update)."""
        pc = self._pieces
        if pc is None or self.flat_p.size < PIECES_FROM.get(name, PIECES_FROM["update"]):
            return None
        threads = pc.blas.threads()
        if threads < 2:
            return None
        pc.header[0] = pc.ops[name]
        pc.header[3:3 + len(args)] = args
        ok, missed = pc.blas.run(pc.routine, pc.arena, pc.header_address, self.flat_p.size, threads)
        for lo, hi in missed:  # pieces OpenBLAS did not run: here, and no pieces from now on
            self._pieces = None
            if name == "all_finite":
                ok = ok and bool(self.k.all_finite(self.flat_g[lo:hi]))
            else:
                getattr(self.k, name)(self.flat_p[lo:hi], *(s[lo:hi] for s in self.flat_state),
                                      self.flat_g[lo:hi], *args)
        return ok

    def forward_backward(self, x, eps, beta=1.0):
        """Forward and backward for one minibatch; the gradient left in :attr:`grads` (views of ``flat_g``).

        Returns fresh arrays: ``(recon, kl)`` for the ELBO (eq.17, eq.20), ``(log_w, recon, kl)`` for the IWAE bound.
        """
        if self.objective == "elbo":
            recon, kl = self.engine.elbo(x, eps, beta)
            return recon, kl.copy()
        log_w, recon, kl = self.engine.iwae(x, eps)
        return log_w.copy(), recon, kl.copy()

    def step(self, x, eps, beta=1.0):
        """:meth:`forward_backward` then :meth:`update`."""
        out = self.forward_backward(x, eps, beta)
        self.update()
        return out

    def compile(self, x):
        """Compile every kernel a step will call (Numba; from its cache after the first run), changing nothing.

        Runs the forward and backward once on ``x`` (a few data points) with
        zero noise, and the optimizer's kernel on a scratch copy of its arrays;
        the parameters, the optimizer state and every random generator stay as
        they were.
        """
        eps = np.zeros((1, x.shape[0], self.engine.J), self.model.dtype)
        with np.errstate(all="ignore"):  # the values are thrown away; a diverged model is the trainer's to report
            self.forward_backward(x, eps)
            self.engine.gradients_surely_finite()
        self.k.all_finite(self.flat_g[:1])
        o = self.opt
        scratch = [a[:1].copy() for a in (self.flat_p, *self.flat_state, self.flat_g)]
        t, o.t = o.t, o.t + 1
        try:
            getattr(self.k, o.kernel)(*scratch, *o.update_args())
        finally:
            o.t = t

    def gradients_finite(self):
        """Whether every gradient of the last step is finite: proven from the products' inputs where that reads
        under a quarter as many numbers as the gradient (small batches; :meth:`Engine.gradients_surely_finite`),
        else, or if not proven, one pass over the flat gradient (in pieces where it can)."""
        if self.engine.gradients_surely_finite(max_reads=self.flat_g.size // 4):
            return True
        ok = self._run_in_pieces("all_finite")
        return bool(self.k.all_finite(self.flat_g)) if ok is None else ok

    def update(self):
        """The optimizer's formula (or its kernel) on the flat arrays, one pass (in pieces where it can)."""
        o = self.opt
        o.t += 1
        args = o.update_args()
        if self._run_in_pieces(o.kernel, args) is None:
            getattr(self.k, o.kernel)(self.flat_p, *self.flat_state, self.flat_g, *args)
