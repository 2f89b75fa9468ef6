"""``scratchvae lab``: the ELBO, its gap and its estimators drawn in the browser, computed by the package.

- :mod:`.views`: the numbers of each view (the decomposition of eq.13, the bound L_K of eq.29,
  the estimators, a trained model's latent plane) from the package's own functions;
- :mod:`.estimators`: the reparameterization and score-function estimators (eq.25-eq.28), their
  one home (``examples/reparameterization.py`` prints their table);
- :mod:`.server`: the standard library's HTTP server on 127.0.0.1, serving ``static/`` and JSON;
- :mod:`.webdriver`: a small W3C WebDriver client (urllib only) that the browser tests and the
  screenshot script drive Chromium with.

The page (``static/``) only draws; it loads nothing from outside the server.
"""
