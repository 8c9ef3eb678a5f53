"""Test-wide settings: offline model hubs, software EGL rendering, few threads (CI has 2 cores)."""
import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# Session fixtures shared by several test modules live here, so each is made once per session.
from libero_helpers import expert_demo_dir  # noqa: E402,F401
from workflow_helpers import tiny_run, workdir  # noqa: E402,F401


@pytest.fixture
def one_torch_thread():
    """Tiny-model ops are too small to gain from threads; one thread is also robust on a busy CI host."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
