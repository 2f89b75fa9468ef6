"""Figures of a run, as PNG files (matplotlib, Agg backend, no screen needed)."""
import os

import numpy as np

PLOT_SEED = 7  # which test images and prior samples the figures show


def available():
    """Whether matplotlib can be imported (figures are optional: without it a run writes none)."""
    import importlib.util

    return importlib.util.find_spec("matplotlib") is not None


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def image_grid(images, image_shape, ncols, gap=1):
    """Tile (M, D) images into one 2-D array, ``gap`` white pixels between tiles."""
    h, w = image_shape
    m = len(images)
    nrows = -(-m // ncols)
    grid = np.ones((nrows * (h + gap) - gap, ncols * (w + gap) - gap))
    for i, img in enumerate(images):
        r, c = divmod(i, ncols)
        grid[r * (h + gap):r * (h + gap) + h, c * (w + gap):c * (w + gap) + w] = img.reshape(h, w)
    return grid


def _save(fig, path):
    """Write ``fig`` to the PNG ``path`` atomically (a full disk never leaves a truncated figure); close it."""
    from ..io.files import atomic_file

    try:
        with atomic_file(path, suffix=".png") as f:
            fig.savefig(f, format="png", dpi=110, bbox_inches="tight")
    finally:
        _pyplot().close(fig)
    return path


def reconstructions(path, model, source, image_shape, n=10, split="test"):
    """Images of ``split``: grey levels, the (binarized) input the model sees, and E[x|z=μ(x)]."""
    plt = _pyplot()
    rng = np.random.default_rng(PLOT_SEED)
    idx = np.sort(rng.choice(len(source), size=min(n, len(source)), replace=False))
    x = source.batch(idx, rng)
    rows = [(x, f"input x ({split} images)"), (model.reconstruct(x), "reconstruction E[x|z=μ(x)]")]
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


def traversal(path, model, image_shape, n=9, span=2.5, max_rows=20):
    """E[x|z] along each latent axis: row j varies z_j over [−span, span], the other coordinates 0 (the prior mean).

    Rows are ordered by the spread of the decoded images along the axis, largest
    first, so the axes the decoder uses come first; at most ``max_rows`` rows.
    """
    plt = _pyplot()
    J = model.config.latent_dim
    values = np.linspace(-span, span, n)
    z = np.zeros((J, n, J), model.dtype)  # (row j, column, J)
    for j in range(J):
        z[j, :, j] = values
    imgs = model.mean_image(z.reshape(J * n, J)).reshape(J, n, -1)
    spread = imgs.std(axis=1).mean(axis=1)  # how much each axis changes the image
    order = np.argsort(-spread, kind="stable")[:max_rows]
    fig, ax = plt.subplots(figsize=(0.7 * n + 1.0, 0.7 * len(order) + 0.6))
    ax.imshow(image_grid(imgs[order].reshape(len(order) * n, -1), image_shape, n), cmap="gray", vmin=0, vmax=1)
    h, w = image_shape
    ax.set_yticks([(h + 1) * i + (h - 1) / 2 for i in range(len(order))], [f"z{j + 1}" for j in order], fontsize=7)
    ax.set_xticks([(w + 1) * i + (w - 1) / 2 for i in range(n)], [f"{v:+.1f}" for v in values], fontsize=7)
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.set_title(f"latent traversal: E[x|z] with z_j from {-span:g} to {span:g}, the rest 0 "
                 f"(rows by how much they change the image)", fontsize=8)
    return _save(fig, path)


def sample_grid(path, images, image_shape, title):
    """A grid of (M, D) images in [0, 1] (a roughly square layout) with a title."""
    plt = _pyplot()
    ncols = int(np.ceil(np.sqrt(len(images))))
    fig, ax = plt.subplots(figsize=(5, 5 * (-(-len(images) // ncols)) / ncols + 0.3))
    ax.imshow(image_grid(np.clip(images, 0, 1), image_shape, ncols), cmap="gray", vmin=0, vmax=1)
    ax.set_title(title, fontsize=9)
    ax.axis("off")
    return _save(fig, path)


def _legend_below(ax, ncol=2):
    """A legend under the axes, where it cannot cover the data."""
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=ncol, fontsize=8, frameon=False)


def curves_figure(history):
    """Two panels over integer epochs: ELBO and reconstruction term; KL term (each on the training split and on
    the held-out split the rows carry: ``valid_*``, or ``test_*`` in runs from before the validation split).

    The KL is a few nats where the reconstruction term is hundreds, so it gets
    an axis of its own.
    """
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    ep = [r["epoch"] for r in history]
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    mark = dict(markersize=4, markevery=max(1, len(ep) // 25))  # about 25 markers whatever the epoch count

    def line(ax, key, style, color, label, **kw):
        ax.plot(ep, [r[key] for r in history], style, color=color, label=label, **mark, **kw)
    held = [(k, name) for k, name in (("valid", "validation"), ("test", "test"))
            if history and all(f"{k}_elbo" in r for r in history)]
    line(a, "train_elbo", "o-", "C0", "train ELBO")
    for k, name in held:
        line(a, f"{k}_elbo", "s-", "C1", f"{name} ELBO")
    line(a, "train_recon", "o--", "C0", "train E_q[log p(x|z)]", alpha=0.6)
    for k, name in held:
        line(a, f"{k}_recon", "s--", "C1", f"{name} E_q[log p(x|z)]", alpha=0.6)
    a.set_title("ELBO and reconstruction term", fontsize=10)
    line(b, "train_kl", "o-", "C0", "train KL(q(z|x) ‖ p(z))")
    for k, name in held:
        line(b, f"{k}_kl", "s-", "C1", f"{name} KL(q(z|x) ‖ p(z))")
    b.set_title("KL term", fontsize=10)
    for ax in (a, b):
        ax.set_xlabel("epoch")
        ax.set_ylabel("nats per data point")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        _legend_below(ax)
    fig.suptitle("eq.17: ELBO = reconstruction − KL", fontsize=11)
    fig.tight_layout()
    return fig


def curves(path, history):
    """Write :func:`curves_figure` to ``path``."""
    return _save(curves_figure(history), path)


def manifold_figure(model, image_shape, n=15, span=2.5):
    """Decoded means on an n×n grid of the 2-D latent space, z in [−span, span]²."""
    plt = _pyplot()
    ticks = np.linspace(-span, span, n)
    z = np.array([[zx, zy] for zy in ticks[::-1] for zx in ticks], dtype=model.dtype)
    imgs = model.mean_image(z)
    fig, ax = plt.subplots(figsize=(6, 6))
    half = span / (n - 1)  # half a tile in z units: each tile's centre sits at the z it decodes
    ax.imshow(image_grid(imgs, image_shape, n, gap=0), cmap="gray", vmin=0, vmax=1,
              extent=(-span - half, span + half, -span - half, span + half))
    ax.set_xlabel("z₁")
    ax.set_ylabel("z₂")
    ax.set_title("learned 2-D latent manifold: E[x|z] with each image centred on its z", fontsize=9)
    return fig


def manifold(path, model, image_shape, n=15, span=2.5):
    """Write :func:`manifold_figure` to ``path``."""
    return _save(manifold_figure(model, image_shape, n, span), path)


def latent_figure(mu, labels=None, class_names=None, split="test"):
    """Encoder means (N, J) as points: the plane itself for J = 2, else their first two principal axes.

    With labels, each class has its own colour and a legend entry outside the
    axes, named by ``class_names[label]`` when given, else by the label.
    """
    plt = _pyplot()
    mu = np.asarray(mu)
    axes_label = ("μ₁", "μ₂")
    if mu.shape[1] > 2:
        centred = mu - mu.mean(axis=0)
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        mu = centred @ vt[:2].T
        axes_label = ("principal axis 1 of μ", "principal axis 2 of μ")
    elif mu.shape[1] == 1:
        mu = np.column_stack([mu[:, 0], np.zeros(len(mu))])
        axes_label = ("μ₁", "")
    fig, ax = plt.subplots(figsize=(7.5, 5.5))
    size = 12 if len(mu) < 1000 else 4  # points stay visible for 300 digits and distinct for 10,000 images
    if labels is None:
        ax.scatter(mu[:, 0], mu[:, 1], s=size, alpha=0.6)
    else:
        labels = np.asarray(labels)
        classes = np.unique(labels)
        cmap = plt.get_cmap("tab10" if len(classes) <= 10 else "tab20")
        for i, k in enumerate(classes):
            sel = labels == k
            name = class_names[int(k)] if class_names is not None else str(k)
            ax.scatter(mu[sel, 0], mu[sel, 1], s=size, alpha=0.6, color=cmap(i % cmap.N), label=name)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, markerscale=12 / size, frameon=False,
                  title="class", title_fontsize=8)
    ax.set_xlabel(axes_label[0])
    ax.set_ylabel(axes_label[1])
    ax.set_title(f"{split} images in latent space: encoder means μ(x)", fontsize=9)
    ax.grid(alpha=0.2)
    return fig


def latent_scatter(path, model, source, max_points=5000, class_names=None, split="test"):
    """Encoder means μ(x) of the images of ``split`` coloured by class (first two principal axes if J > 2)."""
    rng = np.random.default_rng(PLOT_SEED)
    idx = np.arange(min(len(source), max_points))
    mu, _ = model.encode(source.batch(idx, rng))
    labels = None if source.labels is None else source.labels[idx]
    return _save(latent_figure(mu, labels, class_names, split), path)


def write_run_figures(out_dir, model, dataset, test_source, history, split="test"):
    """All figures of a run folder, the images from ``test_source``, the split named ``split``; returns the paths
    written."""
    p = lambda name: os.path.join(out_dir, name)  # noqa: E731
    shape = dataset.image_shape
    written = [
        reconstructions(p("reconstructions.png"), model, test_source, shape, split=split),
        samples(p("samples.png"), model, shape),
        curves(p("curves.png"), history),
        latent_scatter(p("latent.png"), model, test_source, class_names=getattr(dataset, "class_names", None),
                       split=split),
    ]
    if model.config.latent_dim == 2:
        written.append(manifold(p("manifold.png"), model, shape))
    return written
