"""Weights across to PyTorch and back: the round trip of ``scratchvae export`` and ``scratchvae import``.

    python benchmarks/torch_roundtrip.py [--dataset auto] [--scratch-epochs 2] [--torch-epochs 2]
                                         [--iw-samples 1000] [--limit 1000] [--out runs/roundtrip]

Needs PyTorch (not a dependency of scratchvae; without it this script says so
and exits 2). The data set is Fashion-MNIST when its files are found (784-400-20,
the PyTorch example's layout), else the shipped digits (64-400-20).

(a) scratchvae -> PyTorch. ``scratchvae train --preset pytorch-example`` for a
    few epochs, ``scratchvae export``, then the PyTorch examples VAE (the class
    below, as in pytorch/examples ``vae/main.py``) loads the file with
    ``load_state_dict(strict=True)``: through the ``safetensors`` package when it
    is installed, else through scratchvae's own reader and ``torch.from_numpy``
    (the output says which). On a batch of test images it prints the largest
    absolute differences between PyTorch's and scratchvae's encoder outputs
    (μ, log σ²) and decoder outputs (logits and sigmoid means at z = μ).
(b) PyTorch -> scratchvae. The example VAE is trained in PyTorch for a few
    epochs (Adam 1e-3, batch 128, dynamically binarized pixels, Bernoulli on
    fc4's logits, analytic KL), its state dict saved to safetensors (by the
    ``safetensors`` package when installed, else by scratchvae's writer from
    ``.numpy()`` arrays, without scratchvae metadata either way), then
    ``scratchvae import`` and ``scratchvae evaluate`` (the importance-weighted
    bound with ``--iw-samples`` K on the first ``--limit`` test images).
(c) With the ``safetensors`` package installed: the reference library reads
    scratchvae's file and scratchvae reads the reference library's file; both
    are compared bit for bit.

Each scratchvae command runs as a subprocess and is printed as it is run.
"""
import argparse
import json
import os
import shlex
import subprocess
import sys

import numpy as np

try:
    import torch
    from torch import nn
    from torch.nn import functional as F
except ImportError:
    print("torch_roundtrip: PyTorch is not installed (pip install torch); it is an optional peer of scratchvae",
          file=sys.stderr)
    sys.exit(2)

try:
    import safetensors.numpy as st_numpy
    import safetensors.torch as st_torch
except ImportError:
    st_numpy = st_torch = None

from scratchvae.io import safetensors as scratch_st


class VAE(nn.Module):
    """The PyTorch examples VAE (pytorch/examples ``vae/main.py``), with its sizes as arguments."""

    def __init__(self, data_dim=784, hidden=400, latent=20):
        super().__init__()
        self.data_dim = data_dim
        self.fc1 = nn.Linear(data_dim, hidden)
        self.fc21 = nn.Linear(hidden, latent)
        self.fc22 = nn.Linear(hidden, latent)
        self.fc3 = nn.Linear(latent, hidden)
        self.fc4 = nn.Linear(hidden, data_dim)

    def encode(self, x):
        h1 = F.relu(self.fc1(x))
        return self.fc21(h1), self.fc22(h1)

    def logits(self, z):
        return self.fc4(F.relu(self.fc3(z)))

    def decode(self, z):
        return torch.sigmoid(self.logits(z))

    def loss(self, x, eps):
        """Negative ELBO per data point, averaged over the batch: BCE on fc4's logits plus the analytic KL."""
        mu, logvar = self.encode(x)
        z = mu + eps * torch.exp(0.5 * logvar)
        recon = F.binary_cross_entropy_with_logits(self.logits(z), x, reduction="none").sum(1)
        kl = 0.5 * (mu * mu + torch.exp(logvar) - 1.0 - logvar).sum(1)
        return (recon + kl).mean()


def float64_forward(sd, x):
    """The example's encode, and decode at z = μ, in float64 NumPy from the state dict: the exact reference."""
    def linear(name, h):
        return h @ sd[f"{name}.weight"].T + sd[f"{name}.bias"]

    h1 = np.maximum(linear("fc1", x), 0)
    mu, logvar = linear("fc21", h1), linear("fc22", h1)
    logits = linear("fc4", np.maximum(linear("fc3", mu), 0))
    return {"mu": mu, "logvar": logvar, "decoder logits": logits, "decoder means (sigmoid)": 1 / (1 + np.exp(-logits))}


def scratchvae(*args):
    """Run ``scratchvae ARGS`` in a subprocess, printing the command and its output; return its stdout."""
    print("$ scratchvae " + " ".join(shlex.quote(str(a)) for a in args), flush=True)
    run = subprocess.run([sys.executable, "-m", "scratchvae", *map(str, args)], capture_output=True, text=True)
    out = run.stdout.strip()
    if out:
        print("\n".join("  " + line for line in out.splitlines()[-6:]), flush=True)
    if run.returncode != 0:
        raise SystemExit(f"torch_roundtrip: scratchvae {args[0]} failed ({run.returncode}): {run.stderr.strip()}")
    return out


def load_state_dict_file(path):
    """The tensors of a safetensors file as torch tensors, and which reader read them."""
    if st_torch is not None:
        return st_torch.load_file(path), "the safetensors package (safetensors.torch.load_file)"
    tensors = scratch_st.load_file(path)
    return {k: torch.from_numpy(v) for k, v in tensors.items()}, "scratchvae's reader and torch.from_numpy"


def part_a(args, dataset, out):
    from scratchvae.data.datasets import load_dataset
    from scratchvae.training.loop import load_checkpoint

    print("\n(a) scratchvae -> PyTorch")
    run = os.path.join(out, "scratch")
    scratchvae("train", "--dataset", dataset, "--preset", "pytorch-example", "--epochs", args.scratch_epochs,
               "--no-progress", "--out", run)
    path = os.path.join(out, "scratch.safetensors")
    scratchvae("export", os.path.join(run, "model.npz"), "--out", path)
    model, _, _ = load_checkpoint(os.path.join(run, "model.npz"))
    c = model.config
    tensors, how = load_state_dict_file(path)
    net = VAE(c.data_dim, c.hidden[0], c.latent_dim)
    net.load_state_dict(tensors, strict=True)
    print(f"loaded into the PyTorch examples VAE with load_state_dict(strict=True), read by {how}")
    d = load_dataset(dataset, args.data_dir)
    x = d.test_x[:args.batch].astype(np.float32) / d.max_value  # grey levels in [0, 1]
    with torch.no_grad():
        mu, logvar = net.encode(torch.from_numpy(x))
        logits = net.logits(mu)
        means = net.decode(mu)
    want_mu, want_logvar = model.encode(x)
    want_logits, _ = model.decoder_outputs(want_mu)
    want_means = model.mean_image(want_mu)
    ref = float64_forward({k: v.double().numpy() for k, v in tensors.items()}, x.astype(np.float64))
    rows = {"mu": (mu, want_mu), "logvar": (logvar, want_logvar), "decoder logits": (logits, want_logits),
            "decoder means (sigmoid)": (means, want_means)}
    print("  output                    max |PyTorch - scratchvae|   max |PyTorch - float64|   max |scratchvae - float64|")
    result = {}
    for name, (got, want) in rows.items():
        got = got.numpy().astype(np.float64)
        diff = float(np.abs(got - want).max())
        result[name] = {"torch_vs_scratchvae": diff, "torch_vs_float64": float(np.abs(got - ref[name]).max()),
                        "scratchvae_vs_float64": float(np.abs(want - ref[name]).max())}
        print(f"  {name:24s}  {diff:26.3g}   {result[name]['torch_vs_float64']:23.3g}   "
              f"{result[name]['scratchvae_vs_float64']:25.3g}")
    return path, result


def part_b(args, dataset, out):
    from scratchvae.data.datasets import load_dataset

    print("\n(b) PyTorch -> scratchvae")
    d = load_dataset(dataset, args.data_dir)
    torch.manual_seed(args.seed)  # nn.Linear's initialization draws from the global generator
    net = VAE(d.data_dim, 400, 20)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(args.seed + 1)
    train = torch.from_numpy(d.train_x.astype(np.float32) / d.max_value)
    for epoch in range(1, args.torch_epochs + 1):
        order = torch.randperm(len(train), generator=gen)
        total = 0.0
        for start in range(0, len(train), 128):
            x = torch.bernoulli(train[order[start:start + 128]], generator=gen)
            loss = net.loss(x, torch.randn(len(x), 20, generator=gen))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(x)
        print(f"  PyTorch epoch {epoch}: train ELBO {-total / len(train):.3f} nats per data point", flush=True)
    test = torch.from_numpy(d.test_x[:args.limit].astype(np.float32) / d.max_value)
    with torch.no_grad():
        g = torch.Generator().manual_seed(7)
        x = torch.bernoulli(test, generator=g)
        torch_elbo = -float(net.loss(x, torch.randn(len(x), 20, generator=g)))
    print(f"  PyTorch's own test ELBO on the first {len(x)} test images (one binarization, one z each): "
          f"{torch_elbo:.3f}")
    path = os.path.join(out, "torch.safetensors")
    state = {k: v.detach().contiguous() for k, v in net.state_dict().items()}
    if st_torch is not None:
        st_torch.save_file(state, path, metadata={"format": "pt"})
        how = "the safetensors package (safetensors.torch.save_file)"
    else:
        scratch_st.save_file({k: v.numpy() for k, v in state.items()}, path, {"format": "pt"})
        how = "scratchvae's writer from .numpy() arrays"
    print(f"  saved the state dict with {how}")
    model_path = os.path.join(out, "imported", "model.npz")  # import creates the folder
    scratchvae("import", path, "--out", model_path, "--dataset", dataset)
    result = json.loads(scratchvae("evaluate", model_path, "--iw-samples", args.iw_samples, "--limit", args.limit,
                                   "--no-progress"))
    return path, state, {"torch_test_elbo": torch_elbo, **{k: result[k] for k in ("elbo", "iwae", "iw_samples", "n")}}


def part_c(scratch_path, torch_path, torch_state):
    print("\n(c) scratchvae's files and the safetensors package")
    if st_numpy is None:
        print("  the safetensors package is not used (not installed, or --without-package): no cross-check")
        return None
    ours = scratch_st.load_file(scratch_path)
    theirs = st_numpy.load_file(scratch_path)
    same_a = set(ours) == set(theirs) and all(
        ours[k].dtype == theirs[k].dtype and ours[k].shape == theirs[k].shape and ours[k].tobytes() ==
        theirs[k].tobytes() for k in ours)
    print(f"  safetensors.numpy.load_file reads scratchvae's file: {len(theirs)} tensors, "
          f"{'bit for bit the same as scratchvae reads them' if same_a else 'DIFFERENT'}")
    read, meta = scratch_st.load_file(torch_path), scratch_st.read_metadata(torch_path)
    same_b = set(read) == set(torch_state) and all(
        read[k].tobytes() == torch_state[k].numpy().tobytes() and read[k].shape == tuple(torch_state[k].shape)
        for k in read)
    print(f"  scratchvae's reader reads the safetensors package's file: {len(read)} tensors, metadata {meta}, "
          f"{'bit for bit the state dict' if same_b else 'DIFFERENT'}")
    return {"reference_reads_scratchvae": same_a, "scratchvae_reads_reference": same_b}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--dataset", default="auto", choices=["auto", "fashion-mnist", "digits"],
                   help="auto: fashion-mnist when its files are found, else digits")
    p.add_argument("--data-dir", default=None, metavar="DIR", help="where to look first for the data files")
    p.add_argument("--scratch-epochs", type=int, default=2, help="epochs of scratchvae training in (a)")
    p.add_argument("--torch-epochs", type=int, default=2, help="epochs of PyTorch training in (b)")
    p.add_argument("--batch", type=int, default=500, help="test images compared in (a)")
    p.add_argument("--iw-samples", type=int, default=1000, help="K of the importance-weighted bound in (b)")
    p.add_argument("--limit", type=int, default=1000, help="test images evaluated in (b)")
    p.add_argument("--seed", type=int, default=0, help="seed of PyTorch's initialization, order and noise")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    p.add_argument("--out", default=os.path.join("runs", "roundtrip"), help="folder for the files")
    p.add_argument("--without-package", action="store_true",
                   help="do not use the safetensors package even when it is installed: PyTorch reads and writes "
                        "through scratchvae's reader and writer, and (c) is left out")
    p.add_argument("--json", default=None, metavar="FILE", help="write the numbers here")
    args = p.parse_args(argv)
    if args.without_package:
        global st_numpy, st_torch
        st_numpy = st_torch = None
    from scratchvae.data.datasets import DataNotFound, load_dataset

    dataset = args.dataset
    if dataset == "auto":
        try:
            load_dataset("fashion-mnist", args.data_dir)
            dataset = "fashion-mnist"
        except DataNotFound:
            dataset = "digits"
    torch.set_num_threads(args.threads)
    os.makedirs(args.out, exist_ok=True)
    print(f"PyTorch {torch.__version__}; safetensors package: "
          f"{'installed' if st_torch is not None else 'not installed'}; data set: {dataset}")
    scratch_path, a = part_a(args, dataset, args.out)
    torch_path, state, b = part_b(args, dataset, args.out)
    c = part_c(scratch_path, torch_path, state)
    print(f"\nsummary: (a) largest |PyTorch - scratchvae| over mu, logvar, logits, means: "
          f"{max(r['torch_vs_scratchvae'] for r in a.values()):.3g}; "
          f"(b) PyTorch-trained model in scratchvae evaluate on {b['n']} {dataset} test images: "
          f"ELBO {b['elbo']:.3f}, IWAE (K={b['iw_samples']}) {b['iwae']:.3f} nats per data point "
          f"(PyTorch's own one-sample test ELBO {b['torch_test_elbo']:.3f})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"dataset": dataset, "torch": torch.__version__, "a_max_abs_diff": a, "b": b, "c": c}, f,
                      indent=1)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
