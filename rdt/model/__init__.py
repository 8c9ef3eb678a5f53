"""The RDT model: configuration (``config``), transformer (``transformer``, ``blocks``, ``posemb``), diffusion
runner (``runner``), checkpoint folders (``checkpoint``) and the ``verify-checkpoint`` command (``verify``).

Submodules are imported on use (``from rdt.model.runner import RDTRunner``) so that light commands stay fast."""
