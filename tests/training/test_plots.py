"""The figures say what they claim: KL on its own axis, whole epochs, named classes, legends off the data."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.image
import numpy as np
import pytest

from scratchvae import VAE, VAEConfig
from scratchvae.training import plots
from scratchvae.data.datasets import FASHION_NAMES, BatchSource, Dataset, load_digits

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def history(epochs):
    """Metrics rows shaped like a real run: recon near −270 nats, KL near 6, the scale gap of issue 11."""
    rows = []
    for e in range(1, epochs + 1):
        recon, kl = -280.0 + 3 * e, 5.0 + 0.3 * e
        rows.append({"epoch": e, "train_elbo": recon - kl - 1, "train_recon": recon - 1, "train_kl": kl,
                     "test_elbo": recon - kl, "test_recon": recon, "test_kl": kl + 0.1})
    return rows


def visible_ticks(ax):
    lo, hi = sorted(ax.get_xlim())
    return [t for t in ax.get_xticks() if lo <= t <= hi]


def legend_clear_of_axes(fig, ax):
    """True when the legend's box does not overlap the data area of ``ax``."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    legend = ax.get_legend().get_window_extent(renderer)
    return not legend.overlaps(ax.get_window_extent(renderer))


@pytest.mark.parametrize("epochs", [3, 7])
def test_curves_put_the_kl_on_its_own_axis_over_whole_epochs(epochs):
    rows = history(epochs)
    fig = plots.curves_figure(rows)
    try:
        elbo_ax, kl_ax = fig.axes
        fig.canvas.draw()
        for ax in (elbo_ax, kl_ax):
            ticks = visible_ticks(ax)
            assert len(ticks) >= 2 and all(float(t).is_integer() for t in ticks), ticks  # no epoch 1.5
            assert legend_clear_of_axes(fig, ax)
        kl_lines = {tuple(line.get_ydata()) for line in kl_ax.get_lines()}
        assert kl_lines == {tuple(r["train_kl"] for r in rows), tuple(r["test_kl"] for r in rows)}
        # the KL axis spans the KL, not the hundreds of nats of the reconstruction term
        lo, hi = kl_ax.get_ylim()
        assert lo > 0 and hi - lo < 10
        elbo_lines = {tuple(line.get_ydata()) for line in elbo_ax.get_lines()}
        for key in ("train_elbo", "test_elbo", "train_recon", "test_recon"):
            assert tuple(r[key] for r in rows) in elbo_lines
        assert not elbo_lines & kl_lines
    finally:
        matplotlib.pyplot.close(fig)


def test_latent_legend_names_every_class_outside_the_points():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(10), 20)  # (200,)
    mu = rng.standard_normal((200, 2)) + labels[:, None]  # (200, 2)
    fig = plots.latent_figure(mu, labels, FASHION_NAMES)
    try:
        ax = fig.axes[0]
        assert len(fig.axes) == 1  # a categorical legend, not a colour bar
        assert [t.get_text() for t in ax.get_legend().get_texts()] == list(FASHION_NAMES)
        colours = {tuple(np.round(c.get_facecolor()[0], 6)) for c in ax.collections}
        assert len(colours) == 10
        assert legend_clear_of_axes(fig, ax)
    finally:
        matplotlib.pyplot.close(fig)


def test_latent_legend_falls_back_to_labels_and_projects_wide_latents():
    rng = np.random.default_rng(1)
    labels = np.array([3, 7, 3, 7, 7, 3])
    fig = plots.latent_figure(rng.standard_normal((6, 5)), labels)  # J = 5: first two principal axes
    try:
        ax = fig.axes[0]
        assert [t.get_text() for t in ax.get_legend().get_texts()] == ["3", "7"]
        assert "principal axis 1" in ax.get_xlabel()
        assert sum(len(c.get_offsets()) for c in ax.collections) == 6
    finally:
        matplotlib.pyplot.close(fig)
    fig = plots.latent_figure(rng.standard_normal((6, 2)))  # no labels (binarized MNIST): no legend
    try:
        assert fig.axes[0].get_legend() is None
    finally:
        matplotlib.pyplot.close(fig)


def test_manifold_tiles_are_centred_on_the_z_they_decode():
    model = VAE(VAEConfig(data_dim=64, latent_dim=2, hidden=(8,)), np.random.default_rng(0))
    n, span = 5, 2.0
    fig = plots.manifold_figure(model, (8, 8), n=n, span=span)
    try:
        image = fig.axes[0].images[0]
        x0, x1, y0, y1 = image.get_extent()
        tile = (x1 - x0) / n  # the grid has no gaps: n tiles of equal width
        centres = x0 + tile * (np.arange(n) + 0.5)
        np.testing.assert_allclose(centres, np.linspace(-span, span, n), atol=1e-12)
        assert image.get_array().shape == (8 * n, 8 * n)
    finally:
        matplotlib.pyplot.close(fig)


def test_write_run_figures_writes_readable_pngs(tmp_path):
    d = load_digits()
    dataset = Dataset("digits", d.train_x[:50], d.train_y[:50], d.test_x[:40], d.test_y[:40],
                      d.image_shape, d.max_value, d.class_names)
    model = VAE(VAEConfig(data_dim=64, latent_dim=2, hidden=(16,)), np.random.default_rng(0))
    source = BatchSource(dataset, "test", "dynamic", model.dtype)
    paths = plots.write_run_figures(str(tmp_path), model, dataset, source, history(2))
    names = sorted(p.rsplit("/", 1)[-1] for p in paths)
    assert names == ["curves.png", "latent.png", "manifold.png", "reconstructions.png", "samples.png"]
    for p in paths:
        with open(p, "rb") as f:
            assert f.read(8) == PNG_MAGIC, p
        pixels = matplotlib.image.imread(p)  # (H, W, 4)
        assert pixels.ndim == 3 and min(pixels.shape[:2]) > 100, p
        assert pixels[..., :3].std() > 0.05, p  # not a blank canvas


def test_traversal_puts_the_axes_the_decoder_uses_first(tmp_path, monkeypatch):
    from scratchvae.training import plots
    from scratchvae.model import VAE, VAEConfig

    model = VAE(VAEConfig(data_dim=64, latent_dim=3, hidden=(), dtype="float64"), np.random.default_rng(0))
    model.params["dec.0.W"][[0, 2]] = 0.0  # only z2 reaches the images
    assert plots.traversal(str(tmp_path / "t.png"), model, (8, 8), n=5) == str(tmp_path / "t.png")
    assert (tmp_path / "t.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = []
    real_save = plots._save

    def spy(fig, path):  # the labels the figure gives its rows
        rows.extend(t.get_text() for t in fig.axes[0].get_yticklabels())
        return real_save(fig, path)
    monkeypatch.setattr(plots, "_save", spy)
    plots.traversal(str(tmp_path / "u.png"), model, (8, 8), n=5)
    assert rows[0] == "z2" and sorted(rows) == ["z1", "z2", "z3"]
