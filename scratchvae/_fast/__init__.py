"""The fast path, a corner a student may skip: the Numba kernels (:mod:`.kernels`) and their float32 math
(:mod:`.f32math`), the OpenBLAS thread count and the pieces run on its threads (:mod:`.blas`), and the
huge-page arena of the training step's flat arrays (:mod:`.arena`).

Every kernel has a readable twin in :mod:`scratchvae.reference`, built from the ops of the package's top
level; the tests hold each kernel to its twin. Nothing outside :mod:`scratchvae.engine`,
:mod:`scratchvae.training.evaluate` and the command line's ``--threads`` reaches in here.
"""
