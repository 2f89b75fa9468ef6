"""Reference configurations, by the names ``scratchvae train --preset NAME`` takes, and the default for
the 784-pixel data sets.

Values are keyed like the command-line options (``--batch-size`` is
``batch_size``); options given explicitly override a preset's values. Each
preset trains what its paper trained (objective, K, schedule), with the epoch
count scaled to what a laptop does in minutes to an hour, as its comment says.
"""

PRESETS = {
    # the PyTorch examples VAE (examples/vae/main.py): 784-400-20, ReLU, Bernoulli, Adam 1e-3, batch 128, 10 epochs
    "pytorch-example": dict(hidden=(400,), latent=20, activation="relu", likelihood="bernoulli",
                            optimizer="adam", lr=1e-3, batch_size=128, samples=1, epochs=10),
    # Kingma & Welling 2013, MNIST: one tanh hidden layer of 500, J = 20, Adagrad, minibatch 100, L = 1; the paper
    # trains for 10^8 training samples seen (about 1,700 epochs of 60,000): scaled by 1/17 to 100 epochs
    "kingma2013": dict(hidden=(500,), latent=20, activation="tanh", likelihood="bernoulli",
                       optimizer="adagrad", lr=0.02, batch_size=100, samples=1, epochs=100),
    # Burda, Grosse & Salakhutdinov 2015, one stochastic layer: two tanh layers of 200, J = 50, Adam, batch 20,
    # the IWAE objective with K = 5 (the paper reports K = 1, 5 and 50; 5 is ten times cheaper than 50), and its
    # schedule: 3^i passes at 0.001·10^(−i/7), i = 0..7, 3,280 passes in all, scaled by 1/41 to 80 epochs
    # (the same eight stages in the same proportions)
    "burda2015": dict(hidden=(200, 200), latent=50, activation="tanh", likelihood="bernoulli",
                      optimizer="adam", lr=1e-3, batch_size=20, objective="iwae", k=5, lr_schedule="burda2015",
                      epochs=80),
}

# Without a preset, the 784-pixel data sets (MNIST, Fashion-MNIST, binarized MNIST) get the PyTorch example's
# 784-400-20 for 20 epochs instead of the digits demo's 64-256-8 for 200 epochs; explicit options still win.
LARGE_IMAGE_DEFAULTS = dict(hidden=(400,), latent=20, epochs=20, batch_size=128)
LARGE_IMAGE_DIM = 784


def defaults_for(data_dim):
    """The options that replace the digits demo's defaults for data of ``data_dim`` dimensions without a preset."""
    return dict(LARGE_IMAGE_DEFAULTS) if data_dim >= LARGE_IMAGE_DIM else {}
