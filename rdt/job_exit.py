"""Why a workflow job died, in words: the rules run ``python -m rdt ... > LOG 2>&1 || python -m rdt.job_exit $? ...``.

A process that the kernel's out-of-memory killer (or a Slurm node's cgroup limit) stops dies by SIGKILL without a
word: its log just ends, and Snakemake reports exit status 137 or "died with <Signals.SIGKILL: 9>". This command
runs only when the job's command failed. It names the likely cause from the exit status and the log's last lines
(SIGKILL, SIGTERM, a memory error or CUDA out of memory), says what the job asked for and what to change, appends
that to the job's log, prints it to stderr (Snakemake's output, or the Slurm job's log), and exits with the same
status, so that Snakemake still sees the failure and its retries still happen. Any other failure passes through
silently: the command's own error is already the last thing in its log.

    python -m rdt.job_exit STATUS --rule RULE --log LOG [--mem-mb MB]
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

#: the log's last bytes searched for a memory error
TAIL_BYTES = 20_000
#: what a job's log says when memory ran out inside the process, as (substring, what it means)
MEMORY_ERRORS = (
    ("CUDA out of memory", "gpu"),
    ("OutOfMemoryError", "gpu"),
    ("DefaultCPUAllocator: can't allocate memory", "host"),
    ("MemoryError", "host"),
)
#: what to change per rule when host memory ran out
MEMORY_ADVICE = {
    "train": "lower train.dataloader_num_workers (each loader worker holds decoded images) or ask for more mem_mb",
    "evaluate": "lower the simulators per job (set-threads evaluate: N) or ask for more mem_mb",
    "encode": "the T5-XXL text encoder needs about 29 GB resident",
    "encode_tasks": "the T5-XXL text encoder needs about 29 GB resident",
}
#: what to change per rule when GPU memory ran out (more mem_mb does not help)
GPU_ADVICE = {
    "train": "lower train.per_device_batch_size (gradient accumulation keeps the effective batch) or use "
    "train.deepspeed: zero2",
    "evaluate": "fewer simulators per job share the GPU policy's batch (set-threads evaluate: N)",
}
LAUNCHER_SIGNALS = ("SIGKILL", "SIGTERM", "SIGINT")
RETRY_LINE = (
    "On Slurm the profile's retries ask for more memory each attempt (slurm/config.yaml set-resources: "
    "mem_mb = base x attempt); to start higher: --set-resources {rule}:mem_mb=N. Locally memory is not enforced per "
    "job: run fewer jobs at once (--jobs 1, or --resources mem_mb=N to cap what runs together)."
)


def _signal_name(status: int) -> str | None:
    """The signal a shell exit status (128 + n) or a negative Python return code (-n) stands for."""
    n = status - 128 if status > 128 else -status if status < 0 else None
    if n is None:
        return None
    try:
        return signal.Signals(n).name
    except ValueError:
        return f"signal {n}"


def _log_tail(log: Path) -> str:
    try:
        with open(log, "rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - TAIL_BYTES))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def cgroup_oom_kills() -> int | None:
    """OOM kills recorded by this process's cgroup (v2 memory.events; on Slurm, the job's cgroup); None when not
    readable."""
    try:
        rel = Path("/proc/self/cgroup").read_text().strip().split("::", 1)[1]
        events = Path("/sys/fs/cgroup", rel.lstrip("/"), "memory.events").read_text()
    except (OSError, IndexError):
        return None
    for line in events.splitlines():
        name, _, value = line.partition(" ")
        if name == "oom_kill":
            return int(value)
    return None


def explain(status: int, rule: str, log: Path, mem_mb: int | None = None) -> str | None:
    """The paragraph that says why job ``rule`` ended with ``status``, or None when its log already does."""
    asked = f"it asked for {mem_mb:,} MB (resources.mem_mb)" if mem_mb else "it set no mem_mb"
    advice = MEMORY_ADVICE.get(rule, "")
    retry = RETRY_LINE.format(rule=rule)
    advice = f"{advice}. " if advice else ""
    tail = _log_tail(log)
    # a launcher (accelerate launch) reports its killed child as "died with <Signals.SIGKILL: 9>" and exits 1
    sig = _signal_name(status) or next((s for s in LAUNCHER_SIGNALS if f"<Signals.{s}:" in tail), None)
    if sig == "SIGKILL":
        kills = cgroup_oom_kills()
        evidence = f" The job's cgroup records {kills} OOM kill(s)." if kills else ""
        return (
            f"{rule}: killed by SIGKILL (exit status {status}) with no error of its own: most likely out of memory "
            f"(the kernel's OOM killer, or the node's memory limit on Slurm: `sacct -j JOBID -o State,MaxRSS` then "
            f"says OUT_OF_MEMORY); {asked}.{evidence} {advice}{retry} Log: {log}"
        )
    if sig in ("SIGTERM", "SIGINT", "SIGHUP", "SIGUSR1"):
        resume = (
            " Training saved a resumable checkpoint and continues from it when the job runs again."
            if rule == "train"
            else ""
        )
        return (
            f"{rule}: stopped by {sig} (exit status {status}): preempted, cancelled (scancel, Ctrl-C) or past its "
            f"runtime (Slurm: state TIMEOUT; raise set-resources {rule}: runtime).{resume} Log: {log}"
        )
    for needle, kind in MEMORY_ERRORS:
        if needle not in tail:
            continue
        if kind == "gpu":
            gpu = GPU_ADVICE.get(rule, "use a GPU with more memory")
            return (
                f"{rule}: the GPU ran out of memory (exit status {status}); mem_mb is not the limit: {gpu}. Log: {log}"
            )
        return f"{rule}: host memory ran out (exit status {status}); {asked}. {advice}{retry} Log: {log}"
    return None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m rdt.job_exit", description=__doc__.split("\n\n")[0])
    p.add_argument("status", type=int, help="the failed command's exit status ($?)")
    p.add_argument("--rule", required=True, help="the workflow rule")
    p.add_argument("--log", required=True, type=Path, help="the job's log file")
    p.add_argument("--mem-mb", type=int, help="the memory the job asked for (resources.mem_mb)")
    args = p.parse_args(argv)
    message = explain(args.status, args.rule, args.log, args.mem_mb)
    if message:
        print(message, file=sys.stderr, flush=True)
        try:
            with open(args.log, "a") as f:
                f.write(f"\n{message}\n")
        except OSError:
            pass
    return args.status if args.status != 0 else 1


if __name__ == "__main__":
    sys.exit(main())
