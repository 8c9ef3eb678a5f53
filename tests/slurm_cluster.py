"""A real single-node Slurm cluster on localhost for the tests (pytest fixture ``slurm_cluster``, session scope).

Starts munged (own key and socket), slurmctld and slurmd as root with a minimal configuration written into a
temporary folder: CPUs only, ``ProctrackType=proctrack/linuxproc``, ``TaskPlugin=task/none``,
``SelectType=select/cons_tres``, two partitions on the one node (``debug``, the default, and ``gpu``, the name
README's walk-through exports), and 8 GPUs as a GRES without devices (``gres.conf`` with empty files
as devices), so that jobs asking for GPUs are accepted and their request can be inspected. There is no slurmdbd (it
needs MySQL): accounting storage is ``accounting_storage/none`` and ``JobAcctGatherType=jobacct_gather/none``.
``sacct`` therefore has no job records ("Slurm accounting storage is disabled"); what works without a database is
``squeue`` (jobs stay visible for ``MinJobAge`` seconds after they end, set to 600), the completion log
``JobCompType=jobcomp/filetxt`` (one line per finished job with its state and exit code) and slurmctld's log. The
Snakemake executor plugin is therefore run with ``slurm-status-command: squeue`` (it keeps squeue when MinJobAge >=
120 s). Client commands find the cluster through the ``SLURM_CONF`` environment variable, which the fixture sets for
the test session, and through ``/etc/slurm/slurm.conf``: the plugin's job step (snakemake-executor-plugin-slurm-
jobstep) starts ``srun`` with every ``SLURM_*`` variable but the job's identity removed, so ``srun`` inside a job
reads the default path. The fixture links that path to its configuration for the session, only when no other file is
there (a link it left behind earlier, pointing into a folder named ``rdt-slurm-*``, is replaced), and removes the
link at the end.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from train_helpers import free_port

PARTITION = "debug"
# a second partition on the same node, named as in README's cluster walk-through (export SLURM_PARTITION=gpu)
SECOND_PARTITION = "gpu"
DEFAULT_CONF = Path("/etc/slurm/slurm.conf")
ROOT_PREFIX = "rdt-slurm-"
DAEMONS = ("munged", "slurmctld", "slurmd")
FAKE_GPUS = 8


@dataclass
class LocalSlurm:
    root: Path
    node: str
    cpus: int
    memory_mb: int

    @property
    def conf(self) -> Path:
        return self.root / "slurm.conf"

    @property
    def jobcomp(self) -> Path:
        return self.root / "jobcomp.txt"

    @property
    def ctld_log(self) -> Path:
        return self.root / "slurmctld.log"

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def write_config(self) -> None:
        for sub in ("state", "spool", "munge"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        (self.root / "munge").chmod(0o700)
        key = self.root / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o600)
        ctld_port, d_port = free_port(), free_port()
        r = self.root
        self.conf.write_text(f"""\
ClusterName=rdttest
SlurmctldHost={self.node}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={r}/munge/munge.socket
StateSaveLocation={r}/state
SlurmdSpoolDir={r}/spool
SlurmctldPidFile={r}/slurmctld.pid
SlurmdPidFile={r}/slurmd.pid
SlurmctldLogFile={self.ctld_log}
SlurmdLogFile={r}/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc={self.jobcomp}
MpiDefault=none
ReturnToService=2
MinJobAge=600
SchedulerParameters=sched_interval=2
GresTypes=gpu
NodeName={self.node} NodeAddr=127.0.0.1 CPUs={self.cpus} RealMemory={self.memory_mb} Gres=gpu:{FAKE_GPUS} State=UNKNOWN
PartitionName={PARTITION} Nodes={self.node} Default=YES MaxTime=INFINITE State=UP
PartitionName={SECOND_PARTITION} Nodes={self.node} Default=NO MaxTime=INFINITE State=UP
""")
        # GPUs that exist only for the scheduler (empty files as "devices"): jobs can request them, nothing uses them
        (self.root / "dev").mkdir(exist_ok=True)
        for i in range(FAKE_GPUS):
            (self.root / "dev" / f"gpu{i}").touch()
        (self.root / "gres.conf").write_text(
            f"AutoDetect=off\nNodeName={self.node} Name=gpu File={self.root}/dev/gpu[0-{FAKE_GPUS - 1}]\n"
        )
        (self.root / "cgroup.conf").write_text("CgroupAutomount=no\nConstrainCores=no\nConstrainRAMSpace=no\n")

    def link_default_conf(self) -> None:
        if DEFAULT_CONF.is_symlink() and ROOT_PREFIX in str(os.readlink(DEFAULT_CONF)):
            DEFAULT_CONF.unlink()
        if DEFAULT_CONF.exists() or DEFAULT_CONF.is_symlink():
            raise RuntimeError(
                f"{DEFAULT_CONF} exists (a real Slurm configuration?); the local test cluster needs "
                "that path for job steps and does not overwrite it"
            )
        DEFAULT_CONF.parent.mkdir(parents=True, exist_ok=True)
        DEFAULT_CONF.symlink_to(self.conf)

    def unlink_default_conf(self) -> None:
        if DEFAULT_CONF.is_symlink() and Path(os.readlink(DEFAULT_CONF)) == self.conf:
            DEFAULT_CONF.unlink()

    def start(self) -> None:
        self.write_config()
        self.link_default_conf()
        r = self.root
        env = self.env
        subprocess.run(
            [
                "munged",
                "--force",
                f"--key-file={r}/munge/munge.key",
                f"--socket={r}/munge/munge.socket",
                f"--pid-file={r}/munge/munged.pid",
                f"--log-file={r}/munge/munged.log",
                f"--seed-file={r}/munge/munged.seed",
            ],
            check=True,
            env=env,
        )
        subprocess.run(["slurmctld", "-i"], check=True, env=env)  # both daemons read SLURM_CONF
        subprocess.run(["slurmd", "-N", self.node], check=True, env=env)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            out = subprocess.run(["sinfo", "-h", "-N", "-o", "%T"], capture_output=True, text=True, env=env)
            if out.returncode == 0 and set(out.stdout.split()) == {"idle"}:  # one line per partition
                return
            time.sleep(1)
        raise RuntimeError(
            f"the local Slurm node did not become idle within 60 s; sinfo said {out.stdout!r} "
            f"{out.stderr!r}; see {self.ctld_log} and {r}/slurmd.log"
        )

    def stop(self) -> None:
        self.unlink_default_conf()
        for pid_file in (self.root / "slurmd.pid", self.root / "slurmctld.pid", self.root / "munge" / "munged.pid"):
            try:
                pid = int(pid_file.read_text().split()[0])
            except (OSError, ValueError, IndexError):
                continue
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            for _ in range(100):
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.1)

    def squeue(self) -> str:
        """One line per job known to slurmctld: id, name, state, TRES per job (GPUs), CPUs."""
        fields = "JobID:12,Name:40,State:12,tres-per-job:24,NumCPUs:6"
        return subprocess.run(
            ["squeue", "-h", "-t", "all", "-O", fields], capture_output=True, text=True, env=self.env, check=True
        ).stdout

    def completed_jobs(self) -> list[dict[str, str]]:
        """Records of the completion log: one dict per finished job (JobId, JobName, JobState, ExitCode, ...)."""
        if not self.jobcomp.is_file():
            return []
        jobs = []
        for line in self.jobcomp.read_text().splitlines():
            fields = dict(part.split("=", 1) for part in line.split() if "=" in part)
            if fields:
                jobs.append(fields)
        return jobs


def slurm_available() -> list[str]:
    return [d for d in (*DAEMONS, "sbatch", "squeue", "sinfo") if shutil.which(d) is None]


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    """A running single-node Slurm; SLURM_CONF points at it for the whole session."""
    missing = slurm_available()
    if missing:
        pytest.fail(f"Slurm test needs {missing} (Debian packages slurm-wlm and munge; `make sysdeps`)")
    if os.geteuid() != 0:
        pytest.fail("the local Slurm cluster must be started as root (slurmd runs jobs as their users)")
    mem = int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20 * 0.8)
    root = Path(tempfile.mkdtemp(prefix=ROOT_PREFIX, dir=tmp_path_factory.getbasetemp()))
    cluster = LocalSlurm(root, socket.gethostname().split(".")[0], os.cpu_count() or 1, mem)
    old = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(cluster.conf)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        if old is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = old
