"""The PyTorch peer: training-step time of the VAE, GMVAE and SSVAE written in plain PyTorch.

    pip install -r benchmarks/requirements-peer.txt     # once; torch is no dependency of tfp_vae
    python benchmarks/peer_torch.py                      # all three models, a few minutes
    python benchmarks/peer_torch.py --models=vae,gmvae --steps=200 --json=/tmp/peer.json

What it measures: milliseconds per training step (and steps per second) of the models of the
CS236 HW2 reference, as the independent PyTorch implementation a user could pick instead of
tfp_vae, on the same data stream and the same CPU, to set beside our own numbers
(``benchmarks/bench.py``, ``benchmarks/settings.py``). Each model is timed

* ``eager``: plain PyTorch, ``loss.backward(); optimizer.step()`` with ``torch.optim.Adam``'s
  defaults (as the reference);
* ``compile``: the same with the model wrapped in ``torch.compile`` (its loss, forward and
  backward, compiled by TorchInductor; ``dynamic=False``: one graph per batch shape);
* ``eager_fused``: eager with ``Adam(fused=True)`` (one fused kernel for the update);
* ``compile_opt``: ``compile`` plus ``torch.compile(optimizer.step)``.

The first two are what most users would write, the last two the fastest a PyTorch user would
reach for. A failure of ``torch.compile`` is caught and reported (``compile_error``); the compile
time (the first step of each batch shape, less two ordinary steps) is reported apart from the step
time, cold by default (a fresh Inductor cache; ``--warm_cache`` keeps the usual one). With both
compiled variants the second one reuses the model's graphs from the first one's cache.

A step is everything a training loop does per minibatch: gather the batch from the epoch's random
permutation (batch 97, the last partial batch of 54 kept, a new permutation each epoch), binarise
it afresh with ``torch.bernoulli`` (dynamic binarisation; the SSVAE's 100 labelled images too),
the loss, its gradients and one Adam step (lr 1e-3, PyTorch defaults). ``--warmup`` steps first,
then ``--windows`` windows of ``--steps`` steps; the table gives the median window and the spread
(fastest and slowest window), and the lowest CPU/wall ratio of a window: about the thread count
when the process had the cores to itself, less when another process took CPU (this benchmark
means nothing on a busy machine; ``--max_seconds`` bounds the timed part of each variant there).
``torch.set_num_threads`` is set (2 by default, the machine's
cores) and reported. The loss is recorded every step to check that the timed step is real work:
the VAE's NELBO must fall below 200 within 500 steps, every model's loss must fall.

The models are written from the description of the reference in ``docs/reference.md``
(sections 1, 2, 4, 5: networks, priors, objectives, training loop), not copied from the
reference code:

* encoder 784(+10)-300-300-2z with ELU, mean = first half, variance = softplus(second half) + 1e-8;
  decoder z(+10)-300-300-784 with ELU, Bernoulli logits; ``nn.Linear``'s default initialisation;
* VAE (z=10): one reparameterised sample, analytic KL to N(0, I);
* GMVAE (z=10, k=500): the prior a uniform mixture of k learned Gaussians kept in one (1, 2k, z)
  parameter initialised randn / sqrt(k z) (means = first k rows, variances = softplus(last k) +
  1e-8), Monte-Carlo KL with the same z as the reconstruction;
* SSVAE (M2, z=64): classifier 784-300-300-10 with ReLU; every unlabelled image enumerated with
  all 10 labels (label-major, the images tiled), weighted by q(y|x); loss = gw * NELBO + cw *
  cross-entropy on the 100 labelled images (gw=1, cw=100), all 100 in every step.

MNIST comes from ``tfp_vae.data.load_mnist()`` (uint8 arrays, converted once to a float tensor);
the SSVAE's 100 labelled images are the reference's, from ``tfp_vae.data.labelled_subset``.
Nothing else of tfp_vae is used.

JSON (``--json``): ``{model: {"eager_ms", "compile_ms" (or null), "compile_error" (or null),
"threads", "torch", ...}}``, ms per step as the median window, and per variant V: ``V_ms``,
``V_windows_ms``, ``V_best_ms``, ``V_worst_ms``, ``V_cpu_per_wall``, ``V_s`` (compile seconds),
``V_error`` and ``V_losses`` (first and last losses, the sanity checks). The exit status is 1 when
a loss did not fall (or the VAE's NELBO was not below 200 by step 500).
"""

import argparse
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
import traceback

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

BATCH = 97          # the reference's MNIST batch (2019)
LABELLED = 100      # the SSVAE's labelled images, all used every step
LR = 1e-3
MODELS = ("vae", "gmvae", "ssvae")


# ----------------------------------------------------------------------------------- networks
def mlp(sizes, activation):
    layers = []
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(fan_in, fan_out))  # PyTorch's default init, as the reference
        if i < len(sizes) - 2:
            layers.append(activation())
    return nn.Sequential(*layers)


def gaussian_parameters(h, dim=-1):
    """Splits h in halves along ``dim``: (mean, softplus(second half) + 1e-8 as variance)."""
    m, h = torch.chunk(h, 2, dim=dim)
    return m, F.softplus(h) + 1e-8


class Encoder(nn.Module):
    def __init__(self, z_dim, y_dim=0):
        super().__init__()
        self.net = mlp([784 + y_dim, 300, 300, 2 * z_dim], nn.ELU)

    def forward(self, x, y=None):
        return gaussian_parameters(self.net(x if y is None else torch.cat([x, y], dim=1)))


class Decoder(nn.Module):
    def __init__(self, z_dim, y_dim=0):
        super().__init__()
        self.net = mlp([z_dim + y_dim, 300, 300, 784], nn.ELU)

    def forward(self, z, y=None):  # Bernoulli logits
        return self.net(z if y is None else torch.cat([z, y], dim=1))


# -------------------------------------------------------------------------------- densities
LOG_2PI = math.log(2 * math.pi)


def sample_gaussian(m, v):
    return m + torch.sqrt(v) * torch.randn_like(m)


def log_normal(x, m, v):
    """log N(x; m, diag(v)), summed over the last axis."""
    return -0.5 * torch.sum(LOG_2PI + torch.log(v) + (x - m) ** 2 / v, dim=-1)


def log_normal_mixture(z, m, v):
    """log of the uniform mixture of the k Gaussians (m, v) of shape (1, k, dim) at z (B, dim)."""
    log_p = log_normal(z.unsqueeze(1), m, v)  # (B, k)
    return torch.logsumexp(log_p, dim=1) - math.log(log_p.shape[1])


def log_bernoulli_with_logits(x, logits):
    return -F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1)


def kl_standard_normal(m, v):
    """KL(N(m, v) || N(0, I)), summed over the last axis."""
    return 0.5 * torch.sum(-torch.log(v) + v + m * m - 1, dim=-1)


# ----------------------------------------------------------------------------------- models
class VAE(nn.Module):
    def __init__(self, z_dim=10):
        super().__init__()
        self.enc, self.dec = Encoder(z_dim), Decoder(z_dim)

    def forward(self, x):
        m, v = self.enc(x)
        z = sample_gaussian(m, v)
        rec = -log_bernoulli_with_logits(x, self.dec(z))
        kl = kl_standard_normal(m, v)
        nelbo = (kl + rec).mean()
        return nelbo, torch.stack([nelbo.detach(), kl.mean().detach(), rec.mean().detach()])


class GMVAE(nn.Module):
    def __init__(self, z_dim=10, k=500):
        super().__init__()
        self.k = k
        self.enc, self.dec = Encoder(z_dim), Decoder(z_dim)
        self.z_pre = nn.Parameter(torch.randn(1, 2 * k, z_dim) / math.sqrt(k * z_dim))

    def forward(self, x):
        prior_m, prior_v = gaussian_parameters(self.z_pre, dim=1)  # (1, k, z) each
        m, v = self.enc(x)
        z = sample_gaussian(m, v)
        rec = -log_bernoulli_with_logits(x, self.dec(z))
        kl = log_normal(z, m, v) - log_normal_mixture(z, prior_m, prior_v)  # one-sample MC
        nelbo = (kl + rec).mean()
        return nelbo, torch.stack([nelbo.detach(), kl.mean().detach(), rec.mean().detach()])


class SSVAE(nn.Module):
    def __init__(self, z_dim=64, y_dim=10, gw=1.0, cw=100.0):
        super().__init__()
        self.y_dim, self.gw, self.cw = y_dim, gw, cw
        self.enc, self.dec = Encoder(z_dim, y_dim), Decoder(z_dim, y_dim)
        self.cls = mlp([784, 300, 300, y_dim], nn.ReLU)

    def forward(self, xu, yu, xl, yl):
        b = xu.shape[0]
        logits = self.cls(xu)
        log_q = F.log_softmax(logits, dim=1)
        q = torch.exp(log_q)  # gradients flow through q(y|x)
        # Every image with every label: rows r*b + i are (image i, label r).
        y = F.one_hot(torch.arange(self.y_dim, device=xu.device).repeat_interleave(b),
                      self.y_dim).to(xu.dtype)
        x = xu.repeat(self.y_dim, 1)
        m, v = self.enc(x, y)
        z = sample_gaussian(m, v)
        rec = -log_bernoulli_with_logits(x, self.dec(z, y)).reshape(self.y_dim, b)
        kl_z = kl_standard_normal(m, v).reshape(self.y_dim, b)
        kl_y = torch.sum(q * (log_q - math.log(1.0 / self.y_dim)), dim=1)
        kl_z = torch.sum(q.t() * kl_z, dim=0)
        rec = torch.sum(q.t() * rec, dim=0)
        nelbo = (kl_y + kl_z + rec).mean()
        ce = F.cross_entropy(self.cls(xl), yl)
        loss = self.gw * nelbo + self.cw * ce
        acc = (logits.detach().argmax(1) == yu).to(xu.dtype).mean()  # the progress bar's
        return loss, torch.stack([loss.detach(), nelbo.detach(), ce.detach(), acc])


METRICS = {"vae": ("nelbo", "kl", "rec"), "gmvae": ("nelbo", "kl", "rec"),
           "ssvae": ("loss", "nelbo", "ce", "acc")}


# ------------------------------------------------------------------------------------- data
class Stream:
    """The reference's training stream: a new random permutation each epoch, batches of
    ``batch`` with the last partial batch kept, dynamic binarisation with torch.bernoulli."""

    def __init__(self, images, labels, batch, labelled=None):
        self.images, self.labels, self.batch = images, labels, batch
        self.labelled = labelled  # (x continuous, y) for the SSVAE
        self.perm, self.pos = None, len(images)

    def __next__(self, size=None):
        n = len(self.images)
        if self.pos >= n:
            self.perm, self.pos = torch.randperm(n), 0
        idx = self.perm[self.pos:self.pos + (size or self.batch)]
        self.pos += len(idx)
        x = torch.bernoulli(self.images[idx])
        if self.labelled is None:
            return (x,)
        xl, yl = self.labelled
        return x, self.labels[idx], torch.bernoulli(xl), yl

    def partial(self):
        """The epoch's last (partial) batch shape, drawn now (to compile that shape too)."""
        n = len(self.images)
        last = n - (n // self.batch) * self.batch
        return self.__next__(size=last) if last else None


def load_data():
    from tfp_vae import data  # imports TensorFlow; only the arrays are used
    mnist = data.load_mnist()
    images = np.asarray(mnist.train_images).reshape(len(mnist.train_images), -1)
    xl, yl = data.labelled_subset(mnist)
    return {"images": torch.from_numpy(images.astype(np.float32) / 255.0),
            "labels": torch.from_numpy(np.asarray(mnist.train_labels, np.int64)),
            "xl": torch.from_numpy(np.asarray(xl, np.float32)),
            "yl": torch.from_numpy(np.asarray(yl, np.int64))}


def make(kind, mnist):
    model = {"vae": VAE, "gmvae": GMVAE, "ssvae": SSVAE}[kind]()
    labelled = (mnist["xl"], mnist["yl"]) if kind == "ssvae" else None
    return model, Stream(mnist["images"], mnist["labels"], BATCH, labelled)


# ----------------------------------------------------------------------------------- timing
# name: (compile the model's loss with torch.compile, Adam(fused=True), compile optimizer.step).
# "eager" and "compile" are the plain uses (torch.optim.Adam's defaults, as the reference); the
# other two are the fastest settings a PyTorch user could reach for.
VARIANTS = {"eager": (False, False, False), "compile": (True, False, False),
            "eager_fused": (False, True, False), "compile_opt": (True, False, True)}
DEFAULT_VARIANTS = "eager,compile,eager_fused,compile_opt"


def setup(kind, mnist, variant, seed):
    """A fresh model of ``kind`` set up as ``variant`` says: ``(optimizer, loss function,
    optimiser step, stream)``."""
    compile_model, fused, compile_opt = VARIANTS[variant]
    torch.manual_seed(seed)
    model, stream = make(kind, mnist)
    optimizer = torch.optim.Adam(model.parameters(), lr=LR, **({"fused": True} if fused else {}))
    loss_fn = torch.compile(model, dynamic=False) if compile_model else model
    opt_step = torch.compile(optimizer.step) if compile_opt else optimizer.step
    return optimizer, loss_fn, opt_step, stream


def run(kind, mnist, variant, warmup, windows, steps, max_seconds=math.inf, seed=0):
    """Trains a fresh model for 2 + warmup + windows * steps steps; returns timings and losses.
    After ``max_seconds`` (compilation not counted) the windows left are skipped: on a busy
    machine a step can take 100 times as long."""
    optimizer, loss_fn, opt_step, stream = setup(kind, mnist, variant, seed)
    history = []

    def step(batch):
        optimizer.zero_grad(set_to_none=True)
        loss, metrics = loss_fn(*batch)
        loss.backward()
        opt_step()
        history.append(metrics)

    out = {}
    t0 = time.perf_counter()
    step(next(stream))  # the first step: compiles the full-batch shape
    out["first_step_s"] = time.perf_counter() - t0
    partial = stream.partial()
    if partial is not None:  # the epoch's last batch has its own shape: compile it now too
        t0 = time.perf_counter()
        step(partial)
        out["partial_step_s"] = time.perf_counter() - t0
    deadline = time.perf_counter() + max_seconds
    for _ in range(warmup):
        step(next(stream))
    times, cpu = [], []
    for _ in range(windows):
        t0, c0 = time.perf_counter(), time.process_time()
        done = 0
        while done < steps and not (times and time.perf_counter() > deadline):
            step(next(stream))
            done += 1
        if done < steps and times:  # out of time: drop the unfinished window
            break
        wall = time.perf_counter() - t0
        times.append(wall / done * 1e3)
        cpu.append((time.process_time() - c0) / wall)
        if time.perf_counter() > deadline:
            break
    out["ms"] = statistics.median(times)
    out["windows_ms"] = [round(t, 3) for t in times]
    # CPU seconds of this process per wall second in each window: about the thread count when it
    # had the cores to itself, less when another process took CPU from it.
    out["cpu_per_wall"] = [round(c, 2) for c in cpu]
    out["history"] = torch.stack(history).numpy()
    return out


def train_only(kind, mnist, steps, variant="eager", seed=0):
    """Trains a fresh model for ``steps`` steps and nothing else, as a user's training script
    does (``--train_steps``): the whole process is what benchmarks/speed.py times."""
    optimizer, loss_fn, opt_step, stream = setup(kind, mnist, variant, seed)
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=True)
        loss, _ = loss_fn(*next(stream))
        loss.backward()
        opt_step()
    return float(loss)


def loss_summary(kind, history):
    """First and last optimised loss (means of 20 steps), the VAE's NELBO around step 500."""
    names = METRICS[kind]
    k = min(20, len(history) // 4)
    summary = {f"first_{n}": float(history[:k, i].mean()) for i, n in enumerate(names)}
    summary.update({f"last_{n}": float(history[-k:, i].mean()) for i, n in enumerate(names)})
    summary["steps_trained"] = len(history)
    # names[0] is the optimised quantity: the NELBO (VAE, GMVAE) or gw NELBO + cw CE (SSVAE)
    summary["loss_decreased"] = summary[f"last_{names[0]}"] < summary[f"first_{names[0]}"]
    if len(history) >= 500:
        summary["nelbo_steps_480_500"] = float(history[480:500, names.index("nelbo")].mean())
        if kind == "vae":
            summary["sanity_nelbo_below_200_by_500"] = summary["nelbo_steps_480_500"] < 200
    return summary


def sane(summary):
    return summary["loss_decreased"] and summary.get("sanity_nelbo_below_200_by_500", True)


def time_model(kind, mnist, variants, warmup, windows, steps, max_seconds=math.inf):
    result = {"threads": torch.get_num_threads(), "torch": torch.__version__, "batch": BATCH,
              "labelled_batch": LABELLED if kind == "ssvae" else None, "warmup": warmup,
              "windows": windows, "steps_per_window": steps,
              "params": sum(p.numel() for p in make(kind, mnist)[0].parameters()),
              "compile_ms": None, "compile_error": None, "loadavg_before": os.getloadavg()[0]}
    t_model = time.perf_counter()
    for variant in variants:
        compiles = VARIANTS[variant][0] or VARIANTS[variant][2]
        try:
            r = run(kind, mnist, variant, warmup, windows, steps, max_seconds)
        except Exception as e:  # noqa: BLE001 -- report any failure of torch.compile
            if not compiles:
                raise
            result[f"{variant}_ms"] = None
            result[f"{variant}_error"] = f"{type(e).__name__}: {e}".strip()[:2000]
            result[f"{variant}_traceback"] = traceback.format_exc()[-4000:]
            continue
        result[f"{variant}_ms"] = r["ms"]
        result[f"{variant}_windows_ms"] = r["windows_ms"]
        result[f"{variant}_best_ms"] = min(r["windows_ms"])
        result[f"{variant}_worst_ms"] = max(r["windows_ms"])
        result[f"{variant}_cpu_per_wall"] = r["cpu_per_wall"]
        if compiles:
            result[f"{variant}_error"] = None
            # compile time: the first step of each batch shape, less two ordinary steps
            result[f"{variant}_s"] = (r["first_step_s"] + r.get("partial_step_s", 0.0)
                                      - 2e-3 * r["ms"])
        result[f"{variant}_losses"] = loss_summary(kind, r["history"])
    result["loadavg_after"] = os.getloadavg()[0]
    result["model_seconds"] = time.perf_counter() - t_model
    return result


def row(r, variant):
    ms = r.get(f"{variant}_ms")
    if ms is None:
        error = r.get(f"{variant}_error")
        return f"FAILED: {error.splitlines()[0][:100]}" if error else "not run"
    text = (f"{ms:7.2f} ms ({1e3 / ms:4.0f}/s)  [{r[f'{variant}_best_ms']:.2f}-"
            f"{r[f'{variant}_worst_ms']:.2f}]  cpu/wall {min(r[f'{variant}_cpu_per_wall']):.2f}")
    if len(r[f"{variant}_windows_ms"]) < r["windows"]:
        text += f"  ({len(r[f'{variant}_windows_ms'])} windows: out of time)"
    if f"{variant}_s" in r:
        text += f"  compile {r[f'{variant}_s']:.1f} s"
    return text


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default=",".join(MODELS),
                        help="comma-separated subset of vae, gmvae, ssvae")
    parser.add_argument("--steps", type=int, default=None,
                        help="steps per timed window (default 200; 50 for the SSVAE)")
    parser.add_argument("--windows", type=int, default=4, help="timed windows")
    parser.add_argument("--warmup", type=int, default=50, help="untimed steps before timing "
                        "(after the first step of each batch shape)")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--max_seconds", type=float, default=30.0,
                        help="per model and variant, after compiling: the timed windows not "
                        "started by then are skipped (a busy machine can slow a step 100x)")
    parser.add_argument("--variants", default=DEFAULT_VARIANTS,
                        help="comma-separated subset of " + ",".join(VARIANTS) + ": eager and "
                        "compile use Adam's defaults; eager_fused is Adam(fused=True); "
                        "compile_opt also compiles optimizer.step")
    parser.add_argument("--no_compile", action="store_true", help="only the eager variants")
    parser.add_argument("--warm_cache", action="store_true",
                        help="use Inductor's usual cache folder (compile times then depend on "
                        "earlier runs); by default a fresh one, so they are cold")
    parser.add_argument("--json", default="", help="write the results here")
    parser.add_argument("--train_steps", type=int, default=0,
                        help="only train the first of --models for this many steps with the "
                        "first of --variants, then exit (a whole process, as "
                        "benchmarks/speed.py times it)")
    args = parser.parse_args()
    kinds = [k.strip().lower() for k in args.models.split(",") if k.strip()]
    if not kinds or any(k not in MODELS for k in kinds):
        parser.error(f"--models takes a comma-separated subset of {','.join(MODELS)}, got "
                     f"{args.models!r}")
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    if not variants or any(v not in VARIANTS for v in variants):
        parser.error(f"--variants takes a comma-separated subset of {','.join(VARIANTS)}, got "
                     f"{args.variants!r}")
    if args.no_compile:
        variants = [v for v in variants if not (VARIANTS[v][0] or VARIANTS[v][2])]
    cache = None
    if not args.warm_cache and "TORCHINDUCTOR_CACHE_DIR" not in os.environ:
        cache = tempfile.TemporaryDirectory(prefix="peer_torch_inductor_")
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache.name  # read when Inductor first compiles
    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    mnist = load_data()
    if args.train_steps:
        loss = train_only(kinds[0], mnist, args.train_steps, variants[0])
        print(f"{kinds[0]} {variants[0]}: {args.train_steps} steps, last loss {loss:.2f}")
        return 0
    print(f"PyTorch {torch.__version__}, torch.get_num_threads() = {torch.get_num_threads()}, "
          f"Python {platform.python_version()}, {os.cpu_count()} cores; batch {BATCH} (SSVAE: "
          f"{BATCH} unlabelled + {LABELLED} labelled), Adam lr {LR}", flush=True)
    print("ms per step: median window (steps/s) [fastest-slowest window], lowest CPU/wall "
          "(about the thread count when no other process took CPU)", flush=True)
    results = {}
    for kind in kinds:
        steps = args.steps or (50 if kind == "ssvae" else 200)
        r = results[kind] = time_model(kind, mnist, variants, args.warmup, args.windows, steps,
                                       args.max_seconds)
        print(f"{kind.upper()} ({r['params']:,} parameters; {args.windows} x {steps} steps "
              f"after {args.warmup} warm-up; load {r['loadavg_before']:.1f} before, "
              f"{r['loadavg_after']:.1f} after; {r['model_seconds']:.0f} s)", flush=True)
        for variant in variants:
            print(f"  {variant:12s} {row(r, variant)}", flush=True)
        ratios = [c for v in variants for c in r.get(f"{v}_cpu_per_wall", [])]
        r["contended"] = bool(ratios) and min(ratios) < 0.75 * torch.get_num_threads()
        if r["contended"]:
            print(f"  WARNING: a window had CPU/wall {min(ratios):.2f} < 0.75 x "
                  f"{torch.get_num_threads()} threads: another process took CPU and these times "
                  f"are not this machine's (with 2 OpenMP threads on 2 busy cores PyTorch can "
                  f"slow down by 10-100x); run again on an idle machine", flush=True)
        losses = r.get("eager_losses") or next(
            (r[f"{v}_losses"] for v in variants if f"{v}_losses" in r), None)
        if losses:
            name = METRICS[kind][0]
            check = (f"; NELBO at step 500 {losses['nelbo_steps_480_500']:.1f}"
                     if "nelbo_steps_480_500" in losses else "")
            print(f"  {name} {losses[f'first_{name}']:.1f} -> {losses[f'last_{name}']:.1f} over "
                  f"{losses['steps_trained']} steps{check}", flush=True)
    total = time.perf_counter() - t_start
    print(f"total {total:.0f} s", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
        print(f"wrote {args.json}")
    failed = [f"{k}/{v}" for k, r in results.items() for v in variants
              if f"{v}_losses" in r and not sane(r[f"{v}_losses"])]
    if failed:
        print(f"sanity check failed (the loss did not fall as it should): {', '.join(failed)}",
              flush=True)
    if cache is not None:
        cache.cleanup()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
