"""``scratchvae lab``: the ELBO lab served on 127.0.0.1."""
import argparse

from .common import UsageError, checking_input


def _port(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number in [0, 65535], got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number in [0, 65535], got {text!r}")
    return value


def _lab_parser(sub):
    lb = sub.add_parser("lab", help="the ELBO, its gap and its estimators, live in the browser",
                        description="Serves a page on 127.0.0.1 (nothing leaves the machine) that draws the "
                                    "decomposition log p(x) = ELBO + KL (eq.13) as q moves, the bound L_K (eq.29) "
                                    "against K, the reparameterization and score-function estimators, and, with "
                                    "RUN_DIR, a trained model's latent plane and decoder. Every number is computed "
                                    "by the package on the server. Stop it with Ctrl-C.")
    lb.add_argument("run", nargs="?", default=None, metavar="RUN_DIR",
                    help="a run folder written by scratchvae train (or its model.npz): adds the trained-model view")
    lb.add_argument("--port", type=_port, default=8765, help="port on 127.0.0.1; 0 takes any free port (default: 8765)")
    lb.add_argument("--data-dir", default=None, metavar="DIR", help="a folder to search first for data files")


def cmd_lab(args):
    import errno

    from .._fast import blas
    from ..lab import server

    if blas.get_threads() is not None:  # the lab's products are tiny: on a busy machine BLAS threads only wait
        blas.set_threads(1)
    trained = None
    if args.run is not None:
        from ..lab.views import Trained

        with checking_input():  # not a run folder or checkpoint, or a model that does not fit its data set
            trained = Trained.from_run(args.run, args.data_dir)
    try:
        httpd = server.make_server(server.Lab(trained), args.port)
    except OSError as e:
        if e.errno in (errno.EADDRINUSE, errno.EACCES):
            why = "is in use" if e.errno == errno.EADDRINUSE else "is not open to this user"
            raise UsageError(f"scratchvae lab: error: port {args.port} {why}; choose another with --port "
                             "(0 takes any free port)") from None
        raise
    print(f"scratchvae lab: {server.url_of(httpd)} (Ctrl-C to stop)", flush=True)
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        print("scratchvae lab: stopped", flush=True)
    finally:
        httpd.server_close()
    return 0
