"""Reference configurations, by the names ``scratchvae train --preset NAME`` takes.

Values are keyed like the command-line options (``--batch-size`` is
``batch_size``); options given explicitly override a preset's values.
"""

PRESETS = {
    # the PyTorch examples VAE (examples/vae/main.py): 784-400-20, ReLU, Bernoulli, Adam 1e-3, batch 128, 10 epochs
    "pytorch-example": dict(hidden=(400,), latent=20, activation="relu", likelihood="bernoulli",
                            optimizer="adam", lr=1e-3, batch_size=128, samples=1, epochs=10),
    # Kingma & Welling 2013, MNIST: one tanh hidden layer of 500, J = 20, Adagrad, minibatch 100, L = 1
    "kingma2013": dict(hidden=(500,), latent=20, activation="tanh", likelihood="bernoulli",
                       optimizer="adagrad", lr=0.02, batch_size=100, samples=1),
    # Burda, Grosse & Salakhutdinov 2015, one stochastic layer: two tanh layers of 200, J = 50, Adam, batch 20
    "burda2015": dict(hidden=(200, 200), latent=50, activation="tanh", likelihood="bernoulli",
                      optimizer="adam", lr=1e-3, batch_size=20, samples=1),
}
