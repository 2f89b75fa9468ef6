"""Figures of a run, as PNG files (matplotlib, Agg backend, no screen needed)."""
import os

import numpy as np

PLOT_SEED = 7  # which test images and prior samples the figures show


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def image_grid(images, image_shape, ncols):
    """Tile (M, D) images into one 2-D array with a one-pixel gap."""
    h, w = image_shape
    m = len(images)
    nrows = -(-m // ncols)
    grid = np.ones((nrows * (h + 1) - 1, ncols * (w + 1) - 1))
    for i, img in enumerate(images):
        r, c = divmod(i, ncols)
        grid[r * (h + 1):r * (h + 1) + h, c * (w + 1):c * (w + 1) + w] = img.reshape(h, w)
    return grid


def _save(fig, path):
    fig.savefig(path, dpi=110, bbox_inches="tight")
    _pyplot().close(fig)
    return path


def reconstructions(path, model, source, image_shape, n=10):
    """Test images: grey levels, the (binarized) input the model sees, and E[x|z=μ(x)]."""
    plt = _pyplot()
    rng = np.random.default_rng(PLOT_SEED)
    idx = np.sort(rng.choice(len(source), size=min(n, len(source)), replace=False))
    x = source.batch(idx, rng)
    rows = [(x, "input x"), (model.reconstruct(x), "reconstruction E[x|z=μ(x)]")]
    if source.binarize != "none":
        rows.insert(0, (source.grey(idx), f"grey levels (the model sees {source.binarize} binary samples of them)"))
    fig, axes = plt.subplots(len(rows), 1, figsize=(1.0 * len(idx), 1.2 * len(rows)))
    for ax, (imgs, title) in zip(axes, rows):
        ax.imshow(image_grid(imgs, image_shape, len(idx)), cmap="gray", vmin=0, vmax=1)
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    return _save(fig, path)


def samples(path, model, image_shape, n=64):
    """E[x|z] for z drawn from the prior N(0, I) (eq.19)."""
    plt = _pyplot()
    imgs = model.sample(n, np.random.default_rng(PLOT_SEED))
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.imshow(image_grid(imgs, image_shape, int(np.ceil(np.sqrt(n)))), cmap="gray", vmin=0, vmax=1)
    ax.set_title("samples from the prior: E[x|z], z ~ N(0, I)", fontsize=9)
    ax.axis("off")
    return _save(fig, path)


def curves(path, history):
    """Train and test ELBO per epoch, and the test reconstruction and KL terms."""
    plt = _pyplot()
    ep = [r["epoch"] for r in history]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
    a.plot(ep, [r["train_elbo"] for r in history], "o-", label="train ELBO")
    a.plot(ep, [r["test_elbo"] for r in history], "s-", label="test ELBO")
    a.set_xlabel("epoch")
    a.set_ylabel("nats per data point")
    a.legend()
    a.grid(alpha=0.3)
    b.plot(ep, [r["test_recon"] for r in history], "o-", label="test E_q[log p(x|z)]")
    b.plot(ep, [-r["test_kl"] for r in history], "s-", label="test −KL(q‖p(z))")
    b.set_xlabel("epoch")
    b.legend()
    b.grid(alpha=0.3)
    fig.suptitle("eq.17: ELBO = reconstruction − KL", fontsize=10)
    return _save(fig, path)


def manifold(path, model, image_shape, n=15, span=2.5):
    """Decoded means on an n×n grid of the 2-D latent space, z in [−span, span]²."""
    plt = _pyplot()
    ticks = np.linspace(-span, span, n)
    z = np.array([[zx, zy] for zy in ticks[::-1] for zx in ticks], dtype=model.dtype)
    imgs = model.mean_image(z)
    fig, ax = plt.subplots(figsize=(6, 6))
    ax.imshow(image_grid(imgs, image_shape, n), cmap="gray", vmin=0, vmax=1,
              extent=(-span, span, -span, span))
    ax.set_xlabel("z₁")
    ax.set_ylabel("z₂")
    ax.set_title("learned 2-D latent manifold", fontsize=9)
    return _save(fig, path)


def latent_scatter(path, model, source, max_points=5000):
    """Encoder means μ(x) of test images coloured by label (first two principal axes if J > 2)."""
    plt = _pyplot()
    rng = np.random.default_rng(PLOT_SEED)
    idx = np.arange(min(len(source), max_points))
    mu, _ = model.encode(source.batch(idx, rng))
    axes_label = ("μ₁", "μ₂")
    if mu.shape[1] > 2:
        centred = mu - mu.mean(axis=0)
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        mu = centred @ vt[:2].T
        axes_label = ("principal axis 1 of μ", "principal axis 2 of μ")
    elif mu.shape[1] == 1:
        mu = np.column_stack([mu[:, 0], np.zeros(len(mu))])
    fig, ax = plt.subplots(figsize=(6, 5))
    if source.labels is None:
        ax.scatter(mu[:, 0], mu[:, 1], s=6)
    else:
        sc = ax.scatter(mu[:, 0], mu[:, 1], c=source.labels[idx], cmap="tab10", s=6)
        fig.colorbar(sc, ax=ax, label="label")
    ax.set_xlabel(axes_label[0])
    ax.set_ylabel(axes_label[1])
    ax.set_title("test images in latent space", fontsize=9)
    return _save(fig, path)


def write_run_figures(out_dir, model, dataset, test_source, history):
    """All figures of a run folder; returns the paths written."""
    p = lambda name: os.path.join(out_dir, name)  # noqa: E731
    shape = dataset.image_shape
    written = [
        reconstructions(p("reconstructions.png"), model, test_source, shape),
        samples(p("samples.png"), model, shape),
        curves(p("curves.png"), history),
        latent_scatter(p("latent.png"), model, test_source),
    ]
    if model.config.latent_dim == 2:
        written.append(manifold(p("manifold.png"), model, shape))
    return written
