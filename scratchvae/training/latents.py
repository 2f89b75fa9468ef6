"""A trained model's latent space, as arrays and figures: encode, reconstruct, interpolate.

Shape letters: N data points, D data dimensions, J latent dimensions, T steps.
The inputs are what the model saw in training (a split binarized as the run
binarized it, with a given seed) or the user's own array; the arrays are those
the figures show.
"""
import numpy as np

from . import plots

ENCODE_ROWS = 1024  # data points per encoder call: memory bounded at any split size


def encode(model, x):
    """μ and log σ² of q(z|x) (eq.18) for (N, D) inputs, ``ENCODE_ROWS`` at a time; each (N, J)."""
    mus, logvars = [], []
    for start in range(0, len(x), ENCODE_ROWS):
        mu, logvar = model.encode(x[start:start + ENCODE_ROWS])
        mus.append(mu)
        logvars.append(logvar)
    J = model.config.latent_dim
    if not mus:
        return np.zeros((0, J), model.dtype), np.zeros((0, J), model.dtype)
    return np.concatenate(mus), np.concatenate(logvars)


def interpolate(model, x_a, x_b, steps):
    """Decoded means along the straight line between the encoder means of two inputs.

    z_t = (1 − t) μ(x_a) + t μ(x_b) for t = 0, 1/(T−1), ..., 1, and E[x | z_t].

    Returns
    -------
    t : (T,), z : (T, J), x : (T, D)
    """
    mu, _ = model.encode(np.stack([x_a, x_b]))  # (2, J)
    t = np.linspace(0.0, 1.0, steps).astype(model.dtype)  # (T,)
    z = (1 - t)[:, None] * mu[0] + t[:, None] * mu[1]  # (T, J)
    return t, z, model.mean_image(z)


def rows_figure(path, rows, image_shape, title):
    """Rows of images, each ``(images (M, D) in [0, 1], label)``, one under the other; written to ``path``."""
    plt = plots._pyplot()
    ncols = max(len(images) for images, _ in rows)
    fig, axes = plt.subplots(len(rows), 1, figsize=(max(3.0, 0.9 * ncols), 1.2 * len(rows) + 0.4), squeeze=False)
    for ax, (images, label) in zip(axes[:, 0], rows):
        ax.imshow(plots.image_grid(np.clip(images, 0, 1), image_shape, ncols), cmap="gray", vmin=0, vmax=1)
        ax.set_title(label, fontsize=8)
        ax.axis("off")
    fig.suptitle(title, fontsize=9)
    return plots._save(fig, path)


def latent_scatter(path, mu, labels=None, class_names=None, title=None):
    """The encoder means as points (:func:`scratchvae.training.plots.latent_figure`), written to ``path``."""
    fig = plots.latent_figure(mu, labels, class_names)
    if title:
        fig.axes[0].set_title(title, fontsize=9)
    return plots._save(fig, path)
