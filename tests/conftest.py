"""Test-wide settings: offline model hubs, software EGL rendering, few threads (CI has 2 cores); the shared
fixtures: the helper modules registered as plugins, and the trainer tests' dataset made once per session."""

import contextlib
import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# Helper modules whose fixtures several test modules use (each session fixture is made once per session):
# expert_demo_dir (libero_helpers), tiny_run and workdir (workflow_helpers), slurm_cluster (slurm_cluster).
pytest_plugins = ["libero_helpers", "workflow_helpers", "slurm_cluster"]


@contextlib.contextmanager
def _torch_threads(n: int):
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture
def one_torch_thread():
    """Tiny-model ops are too small to gain from threads; one thread is also robust on a busy CI host."""
    with _torch_threads(1):
        yield


@pytest.fixture(scope="module")
def module_torch_thread():
    """One torch thread for a whole test module (2-core CI: one compute thread per training process)."""
    with _torch_threads(1):
        yield


@pytest.fixture(scope="session")
def train_data(tmp_path_factory) -> dict[str, str]:
    """The trainer tests' dataset (train_helpers.make_data: demos -> convert -> stats -> tiny-T5 language), made
    once per session with one torch thread; the paths for RUN.yaml (data, lang, stats). Tests only read it."""
    from train_helpers import make_data

    with _torch_threads(1):
        return make_data(tmp_path_factory.mktemp("train_data"))
