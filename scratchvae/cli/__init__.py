"""The ``scratchvae`` command: each subcommand a ``cmd_*`` function and a ``_*_parser`` for its options, in a
module by topic: :mod:`.train`; :mod:`.evaluate` (``evaluate``, ``gradcheck``, ``datasets``); :mod:`.weights`
(``export``, ``import``); :mod:`.latents` (``sample``, ``plot``, ``encode``, ``reconstruct``, ``interpolate``);
:mod:`.proptest`; :mod:`.lab`; what they share in :mod:`.common`. This module builds the parser and runs a command.

Every error is one line on stderr, never a traceback. Exit codes say whose
fault it is:

- 2, the user's own input: a usage error, a value out of range, a refused
  size, a file the user named that is missing, damaged or untrustworthy, a
  data set not found, an --out that is a file or holds another run;
- 1, a failure while running: divergence, disk full, a folder the OS refuses,
  a run folder in use by another process, a failed download, not enough
  memory; and a bug, "internal error", whose traceback goes to the run's
  ``train.log`` (or, without a run folder, to a file in the temp folder) for
  a bug report, never to the terminal;
- 130, Ctrl-C.

How the user's input is told from a bug: it is refused either by an error
class that only validators raise (:func:`_input_errors`), or inside a
:func:`checking_input` block around the validators this module calls. Any
other exception, a plain ``ValueError`` included, is a bug. A broken pipe on
stdout ends the printing quietly; training goes on, its log is in the run
folder.
"""
import os
import sys

from .common import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_INTERRUPTED, BadInput, Parser, UsageError, _one_line
from .evaluate import _datasets_parser, _evaluate_parser, _gradcheck_parser, cmd_datasets, cmd_evaluate, cmd_gradcheck
from .lab import _lab_parser, cmd_lab
from .latents import (_encode_parser, _interpolate_parser, _plot_parser, _reconstruct_parser, _sample_parser,
                      cmd_encode, cmd_interpolate, cmd_plot, cmd_reconstruct, cmd_sample)
from .proptest import _proptest_parser, cmd_proptest
from .train import _size_defaults, _train_parser, _train_summary, cmd_train, train_options  # noqa: F401 (API)
from .weights import _export_parser, _import_parser, cmd_export, cmd_import


def build_parser():
    """The ``scratchvae`` parser: one function below per subcommand's options."""
    p = Parser(prog="scratchvae", description="A variational autoencoder with hand-written gradients.")
    p.add_argument("--version", action="version", version=f"%(prog)s {sys.modules['scratchvae'].__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True
    for add in (_train_parser, _gradcheck_parser, _evaluate_parser, _export_parser, _import_parser,
                _proptest_parser, _sample_parser, _plot_parser, _encode_parser, _reconstruct_parser,
                _interpolate_parser, _datasets_parser, _lab_parser):
        add(sub)
    return p


COMMANDS = {"train": cmd_train, "gradcheck": cmd_gradcheck, "evaluate": cmd_evaluate, "datasets": cmd_datasets,
            "export": cmd_export, "import": cmd_import, "proptest": cmd_proptest, "sample": cmd_sample,
            "lab": cmd_lab,
            "plot": cmd_plot, "encode": cmd_encode, "reconstruct": cmd_reconstruct, "interpolate": cmd_interpolate}


def _input_errors():
    """The error classes only validators of the user's input raise (a file, a data set, a folder named)."""
    from ..data.datasets import DataNotFound
    from ..data.idx import DataFileError
    from ..io.interop import InteropError
    from ..io.safetensors import SafetensorsError
    from ..training.checkpoint import CheckpointError
    from ..training.runs import RunFolderRefused

    return BadInput, CheckpointError, DataFileError, DataNotFound, InteropError, SafetensorsError, RunFolderRefused


def main(argv=None):
    """Run one command; return its exit code (see the module docstring). Never a traceback on the terminal."""
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    parsed = []  # the parsed arguments, once there are some: a train command names its run folder there
    try:
        return _run(argv, parsed)
    except Exception as e:  # none of the errors _run reports: a bug
        return report_internal_error(e, argv, getattr(parsed[0], "run_dir", None) if parsed else None)


def _run(argv, parsed):
    from ..training.loop import TrainingDiverged, TrainingFailed, TrainingInterrupted
    from ..training.runs import RunFolderError

    input_errors = _input_errors()
    try:
        args = build_parser().parse_args(argv)
        parsed.append(args)
        return COMMANDS[args.command](args)
    except UsageError as e:
        print(e, file=sys.stderr)
        return EXIT_BAD_INPUT
    except input_errors as e:
        print(f"scratchvae: error: {getattr(e, 'cli_message', None) or _one_line(e)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except TrainingDiverged as e:
        print(f"scratchvae: training stopped: {_one_line(e)}", file=sys.stderr)
        return EXIT_FAILED
    except (TrainingFailed, RunFolderError) as e:
        print(f"scratchvae: failed: {_one_line(e)}", file=sys.stderr)
        return EXIT_FAILED
    except TrainingInterrupted as e:
        print(f"scratchvae: {e}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        print("scratchvae: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except MemoryError:
        print("scratchvae: failed: not enough memory", file=sys.stderr)
        return EXIT_FAILED
    except OSError as e:
        where = f"{e.filename}: " if e.filename else ""
        print(f"scratchvae: failed: {where}{e.strerror or _one_line(e)}", file=sys.stderr)
        return EXIT_FAILED
    except Exception as e:
        download = sys.modules.get("scratchvae.data.download")  # imported only by a download, and slow to import
        if download is None or not isinstance(e, download.DownloadError):
            raise
        print(f"scratchvae: failed: {_one_line(e)}", file=sys.stderr)  # the network or the server, not an argument
        return EXIT_FAILED


def report_internal_error(exc, argv, run_dir=None):
    """A bug: one line on stderr, the traceback in the run's ``train.log`` (when ``run_dir`` has one) or in a new
    file of the temp folder, for a bug report. Returns exit code 1."""
    import datetime
    import platform
    import shlex
    import traceback

    from .. import __version__

    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    text = (f"\nscratchvae {__version__}: internal error, {when}\n"
            f"command: scratchvae {shlex.join(argv)}\n"
            f"Python {platform.python_version()} on {platform.platform()}\n"
            + "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
    where = _write_report(text, run_dir)
    what = f"{type(exc).__name__}: {_one_line(exc)}" if str(exc) else type(exc).__name__
    report = f"please report it with {where}" if where else "please report it (no file could take the traceback)"
    try:
        print(f"scratchvae: internal error: {what}; {report}", file=sys.stderr)
    except OSError:
        pass
    return EXIT_FAILED


def _write_report(text, run_dir):
    """Append ``text`` to ``run_dir``/train.log if there is one, else write it to a new file in the temp folder;
    return the path written, or None."""
    import tempfile

    if run_dir and os.path.isfile(os.path.join(run_dir, "train.log")):
        path = os.path.join(run_dir, "train.log")
        try:
            with open(path, "a", encoding="utf-8") as f:
                f.write(text)
            return path
        except OSError:
            pass
    try:
        fd, path = tempfile.mkstemp(prefix="scratchvae-internal-error-", suffix=".log")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text.lstrip("\n"))
        return path
    except OSError:
        return None
