"""One training step of our RDT against the original code, same weights and inputs, in one run.

Builds the original ``RDTRunner`` (from a checkout of thu-ml/RoboticsDiffusionTransformer, which this repository
does not contain) and ours (``rdt.model.runner.RDTRunner``) with the same configuration and the same weights (our
``state_dict`` loaded strictly into theirs: the key names are the released ones), then measures, each in a fresh
subprocess and interleaved (theirs, ours, theirs, ours, ...), ``--steps`` training steps:
forward of the loss as each computes it (ours: ``compute_loss`` with the noise and timesteps passed in; theirs: its
``compute_loss``, which draws the same noise and timesteps from the same seeded generator), backward, AdamW step
(torch.optim.AdamW, lr 1e-4, betas 0.9/0.999, weight decay 1e-2, eps 1e-8: RDT's defaults; no clipping, no EMA).
The first step allocates the AdamW state and the gradients (kept between steps, zeroed in place) and is not
measured; on every later step it records

- the wall time (median over the steps of one process, then over ``--repeats`` processes; the processes get
  ``OMP_WAIT_POLICY=PASSIVE`` unless the environment sets it, as ``rdt train`` does),
- the peak memory growth within the step = the activations saved for backward plus the backward's transients:
  CPU = peak resident set size during the step (the kernel's high-water mark, reset before the step through
  /proc/self/clear_refs) minus the resident size before it; the processes run with glibc's mmap threshold at
  64 KiB and trim threshold 0, so freed tensors leave the resident set at once. CUDA = torch.cuda.max_memory_allocated
  during the step minus memory_allocated before it,

and after the last step the parameters, so that the table also shows the loss difference and the largest absolute
parameter difference from the original after ``--steps`` AdamW steps from the same start. ``--rev REV`` adds our
code as committed at git revision REV as a third column (exported with ``git archive`` into a temporary folder),
so that a change can be measured before/after in the same run. Final-layer weights are randomised (the released
initialisation zeroes them, which would leave every other gradient zero in the first step).

Getting the original code (not part of this repository; its model needs timm 1.0.3, which this project does not
depend on - install it into a separate folder, e.g. ``pip install --no-deps --target /tmp/timm103 timm==1.0.3``,
and pass ``--timm``; a torchvision that cannot be imported next to a CPU-only torch is replaced by an empty stand-in
in the original's processes, as timm imports it but the RDT model does not use it):

    git clone https://github.com/thu-ml/RoboticsDiffusionTransformer /tmp/RoboticsDiffusionTransformer
    python bench/train_step_original.py --original /tmp/RoboticsDiffusionTransformer --timm /tmp/timm103
    python bench/train_step_original.py --original ... --timm ... --rev HEAD        # + ours as committed
    python bench/train_step_original.py --original ... --device cuda --dtype bf16 --batch 8
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LANG_TOKENS = 32
ADAMW = dict(lr=1e-4, betas=(0.9, 0.999), weight_decay=1e-2, eps=1e-8)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--original", type=Path, help="checkout of thu-ml/RoboticsDiffusionTransformer (required)")
    p.add_argument("--timm", type=Path, help="folder holding timm 1.0.3 (pip --target), if not installed")
    p.add_argument("--preset", default="rdt-170m", help="tiny, rdt-170m or rdt-1b (default: %(default)s)")
    p.add_argument("--batch", type=int, default=1, help="batch size (default: %(default)s)")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="(default: %(default)s)")
    p.add_argument(
        "--dtype", default="fp32", choices=("fp32", "bf16"), help="fp32, or bf16 autocast over fp32 parameters"
    )
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (default: %(default)s)")
    p.add_argument("--repeats", type=int, default=3, help="processes per implementation (default: %(default)s)")
    p.add_argument("--steps", type=int, default=4, help="AdamW steps per process, the first unmeasured (default: 4)")
    p.add_argument("--rev", help="also measure our code as committed at this git revision (e.g. HEAD)")
    p.add_argument("--child", nargs=4, metavar=("IMPL", "CODE", "STATE", "OUT"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child is None and args.original is None:
        p.error("--original (a checkout of thu-ml/RoboticsDiffusionTransformer) is required")
    if args.steps < 2:
        p.error("--steps must be at least 2 (the first step is not measured)")
    return args


# ------------------------------------------------------------------------------------------------ child process
def _hide_unloadable_torchvision() -> None:
    """timm imports torchvision at import time; a CUDA torchvision wheel beside a CPU-only torch raises on import
    (and the project's set-up uninstalls it). The RDT model uses no torchvision code: give timm an empty stand-in."""
    import importlib.abc
    import importlib.machinery
    import types

    try:
        import torchvision  # noqa: F401

        return
    except Exception:
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]

    class Anything:
        def __init__(self, *args, **kwargs) -> None:
            pass

        def __call__(self, *args, **kwargs):
            return Anything()

        def __getattr__(self, name):
            return Anything()

        def __mro_entries__(self, bases):
            return (object,)

    class Stub(types.ModuleType):
        __path__: list[str] = []

        def __getattr__(self, name):
            if name.startswith("__"):
                raise AttributeError(name)
            return Anything()

    class Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
        def find_spec(self, name, path=None, target=None):
            if name == "torchvision" or name.startswith("torchvision."):
                return importlib.machinery.ModuleSpec(name, self, is_package=True)
            return None

        def create_module(self, spec):
            return Stub(spec.name)

        def exec_module(self, module) -> None:
            pass

    sys.meta_path.insert(0, Finder())


def _proc_status_bytes(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak_rss() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def build_theirs(cfg, dtype):
    import contextlib
    import io

    from models.rdt_runner import RDTRunner as Original

    flat = cfg.to_flat()
    with contextlib.redirect_stdout(io.StringIO()):  # it prints its parameter count
        return Original(
            action_dim=flat["action_dim"],
            pred_horizon=flat["pred_horizon"],
            config={k: flat[k] for k in ("rdt", "lang_adaptor", "img_adaptor", "state_adaptor", "noise_scheduler")},
            lang_token_dim=flat["lang_token_dim"],
            img_token_dim=flat["img_token_dim"],
            state_token_dim=flat["state_token_dim"],
            max_lang_cond_len=flat["max_lang_cond_len"],
            img_cond_len=flat["img_cond_len"],
            lang_pos_embed_config=flat["lang_pos_embed_config"],
            img_pos_embed_config=flat["img_pos_embed_config"],
            dtype=dtype,
        )


def child(args: argparse.Namespace) -> int:
    impl, code, state_file, out_file = args.child
    sys.path.insert(0, code)  # the original checkout, our code as committed at --rev, or the working tree
    if impl == "theirs":
        sys.path.append(str(REPO))  # our config class only
        if args.timm:
            sys.path.insert(0, str(args.timm))
        _hide_unloadable_torchvision()
    import contextlib

    import torch
    from safetensors.torch import load_file, save_file

    from rdt.model.config import RDTConfig

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cfg = RDTConfig.preset(args.preset)
    if impl == "theirs":
        runner = build_theirs(cfg, torch.float32)
    else:
        from rdt.model.runner import RDTRunner

        runner = RDTRunner(cfg)
        assert Path(sys.modules["rdt.model.runner"].__file__).is_relative_to(code), "wrong rdt imported"
    runner.load_state_dict(load_file(state_file), strict=True)
    runner = runner.to(device).train()
    opt = torch.optim.AdamW(runner.parameters(), **ADAMW)

    b, gen = args.batch, torch.Generator().manual_seed(0)
    inputs = {
        "lang_tokens": torch.randn(b, LANG_TOKENS, cfg.lang_token_dim, generator=gen),
        "lang_attn_mask": torch.ones(b, LANG_TOKENS, dtype=torch.bool),
        "img_tokens": torch.randn(b, cfg.img_cond_len, cfg.img_token_dim, generator=gen),
        "state_tokens": torch.randn(b, 1, cfg.state_token_dim, generator=gen),
        "action_gt": torch.randn(b, cfg.pred_horizon, cfg.action_dim, generator=gen),
        "action_mask": (torch.rand(b, 1, cfg.action_dim, generator=gen) > 0.3).float(),
        "ctrl_freqs": torch.full((b,), 20),
    }
    inputs["lang_attn_mask"][:, LANG_TOKENS - 5 :] = False  # some padding: the masked cross-attention path
    inputs = {k: v.to(device) for k, v in inputs.items()}
    amp = torch.autocast(device.type, dtype=torch.bfloat16) if args.dtype == "bf16" else contextlib.nullcontext()

    def loss_of(i: int) -> torch.Tensor:
        torch.manual_seed(1000 + i)  # theirs draws randn(action shape) then randint(B) from the global generator
        with amp:
            if impl == "theirs":
                return runner.compute_loss(**inputs)
            noise = torch.randn(inputs["action_gt"].shape, dtype=inputs["action_gt"].dtype, device=device)
            timesteps = torch.randint(0, cfg.num_train_timesteps, (b,), device=device).long()
            kw = dict(inputs)
            kw["lang_mask"] = kw.pop("lang_attn_mask")
            return runner.compute_loss(**kw, noise=noise, timesteps=timesteps)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    times, growth, losses = [], [], []
    for i in range(args.steps):
        sync()
        if i > 0:
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
                before = torch.cuda.memory_allocated()
            else:
                _reset_peak_rss()
                before = _proc_status_bytes("VmRSS")
        t0 = time.perf_counter()
        loss = loss_of(i)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=False)
        sync()
        seconds = time.perf_counter() - t0
        losses.append(loss.item())
        if i > 0:
            peak = torch.cuda.max_memory_allocated() if device.type == "cuda" else _proc_status_bytes("VmHWM")
            times.append(seconds)
            growth.append(peak - before)
        del loss
    params_file = out_file + ".params.safetensors"
    save_file({k: v.detach().float().cpu().contiguous() for k, v in runner.state_dict().items()}, params_file)
    result = {
        "impl": impl,
        "step_s": statistics.median(times),
        "growth": statistics.median(growth),
        "losses": losses,
        "params": params_file,
        "device_name": torch.cuda.get_device_name() if device.type == "cuda" else "",
    }
    Path(out_file).write_text(json.dumps(result))
    return 0


# ------------------------------------------------------------------------------------------------ main process
def _initial_state(preset: str, state_file: Path) -> None:
    import torch
    from safetensors.torch import save_file

    from rdt.model.runner import build_runner

    runner = build_runner(preset, seed=0)
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(1)
        fc2 = runner.model.final_layer.ffn_final.fc2
        fc2.weight.normal_(std=0.02)
        fc2.bias.normal_(std=0.02)
    save_file({k: v.contiguous() for k, v in runner.state_dict().items()}, str(state_file))


def _max_param_diff(a_file: str, b_file: str) -> float:
    from safetensors.torch import load_file

    a, b = load_file(a_file), load_file(b_file)
    assert a.keys() == b.keys(), sorted(set(a) ^ set(b))
    return max((a[k] - b[k]).abs().max().item() for k in a)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        return child(args)
    original = args.original.resolve()
    if not (original / "models" / "rdt_runner.py").is_file():
        print(f"{original}: no models/rdt_runner.py; clone thu-ml/RoboticsDiffusionTransformer there", file=sys.stderr)
        return 2
    sys.path.insert(0, str(REPO))
    import torch

    with tempfile.TemporaryDirectory(prefix="rdt_bench_") as tmp_name:
        tmp = Path(tmp_name)
        state_file = tmp / "initial.safetensors"
        _initial_state(args.preset, state_file)
        impls = {"theirs": str(original), "ours": str(REPO)}
        if args.rev:
            rev_dir = tmp / "rev"
            rev_dir.mkdir()
            archive = subprocess.run(["git", "-C", str(REPO), "archive", args.rev, "rdt"], capture_output=True)
            if archive.returncode != 0:
                print(archive.stderr.decode(), file=sys.stderr)
                return 2
            subprocess.run(["tar", "-x", "-C", str(rev_dir)], input=archive.stdout, check=True)
            impls[f"ours@{args.rev}"] = str(rev_dir)
        env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", MALLOC_TRIM_THRESHOLD_="0")
        env.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as `rdt train` sets it: no spinning beside busy processes
        env.pop("PYTHONPATH", None)
        common = ["--preset", args.preset, "--batch", str(args.batch), "--device", args.device]
        common += ["--dtype", args.dtype, "--threads", str(args.threads), "--steps", str(args.steps)]
        if args.timm:
            common += ["--timm", str(args.timm.resolve())]
        results: dict[str, list[dict]] = {name: [] for name in impls}
        for r in range(args.repeats):
            for name, code in impls.items():
                out = tmp / f"{name}.{r}.json"
                impl = "theirs" if name == "theirs" else "ours"
                cmd = [sys.executable, __file__, *common, "--child", impl, code, str(state_file), str(out)]
                proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp)
                if proc.returncode != 0:
                    print(f"{name} (repeat {r + 1}) failed:\n{proc.stderr[-3000:]}", file=sys.stderr)
                    return 1
                res = json.loads(out.read_text())
                if r > 0:
                    os.unlink(res["params"])
                results[name].append(res)
                gib = res["growth"] / 2**30
                print(f"  {name:<12} repeat {r + 1}: {res['step_s']:.3f} s, {gib:.3f} GiB", flush=True)

        rows = {}
        for name, res in results.items():
            rows[name] = {
                "step_s": statistics.median(x["step_s"] for x in res),
                "growth": statistics.median(x["growth"] for x in res),
                "losses": res[0]["losses"],
                "dparam": _max_param_diff(res[0]["params"], results["theirs"][0]["params"]),
            }
    base = rows["theirs"]
    where = results["theirs"][0]["device_name"] or f"cpu, {args.threads} threads"
    print(
        f"\nRDT training step, ours vs the original ({original.name}): preset {args.preset}, batch {args.batch}, "
        f"{args.dtype}, {where}, torch {torch.__version__}; median of {args.repeats} processes x "
        f"{args.steps - 1} steps, interleaved; step = loss forward + backward + AdamW; "
        f"OMP_WAIT_POLICY={env['OMP_WAIT_POLICY']}"
    )
    print(f"| {'':<34} | {'theirs':>10} |" + "".join(f" {n:>10} | {'/ theirs':>8} |" for n in rows if n != "theirs"))
    print(f"|{'-' * 36}|{'-' * 12}|" + f"{'-' * 12}|{'-' * 10}|" * (len(rows) - 1))

    def line(label: str, key: str, fmt: str, scale: float = 1.0, ratio: bool = True) -> None:
        cells = ""
        for n, row in rows.items():
            if n == "theirs":
                continue
            r = f"{row[key] / base[key]:.3f}" if ratio and base[key] else "-"
            cells += f" {format(row[key] * scale, fmt):>10} | {r:>8} |"
        print(f"| {label:<34} | {format(base[key] * scale, fmt):>10} |" + cells)

    line("step wall time, s", "step_s", ".3f")
    line("peak memory growth in a step, GiB", "growth", ".3f", 1 / 2**30)
    for row in rows.values():
        row["dloss"] = max(abs(a - b) for a, b in zip(row["losses"], base["losses"], strict=True))
    line(f"max |loss - theirs|, {args.steps} steps", "dloss", ".2e", ratio=False)
    line(f"max |param - theirs| after {args.steps} steps", "dparam", ".2e", ratio=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
