"""Strict, loud loading of DreamDojo DiT checkpoints in NVIDIA's ``net.*`` key layout.

Three on-disk formats are read, all into the same flat state dict:

- a converted PyTorch file (``model_ema_bf16.pt`` / ``model_ema_fp32.pt`` / any ``.pt``
  or ``.pth`` holding a flat ``{"net.<name>": tensor}`` dict, possibly wrapped in
  ``{"model": ...}`` or ``{"state_dict": ...}``), read with ``weights_only=True``;
- a PyTorch Distributed Checkpoint folder (``.metadata`` + ``*.distcp``, as released on
  the Hub under ``<folder>/iter_*/model/``), read on one process without a process group;
  when both ``net.*`` and ``net_ema.*`` are present the EMA weights are used;
- safetensors written by ``dream convert`` (one file, or several shards in one folder).

Keys that carry no model weights are ignored and listed in a debug log: ``pos_embedder.*``
(RoPE tables we recompute), ``accum_*`` (training counters) and ``*._extra_state``
(Transformer Engine metadata). Every other difference from the model — missing keys,
unexpected keys, tensors of the wrong shape — is collected and raised as one
:class:`~dream.errors.EngineError` naming all of them. Model classes never open files;
this module does. Discovery (:func:`find_dit_checkpoint`, :func:`find_vae_folder`) reads no
tensors and imports no torch, so ``weights_status`` stays cheap.
"""

from __future__ import annotations

import logging
import pickle
import re
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from dream.errors import EngineError, WeightsNotFoundError

if TYPE_CHECKING:
    import torch

__all__ = [
    "CheckpointRef",
    "LoadReport",
    "find_dit_checkpoint",
    "find_vae_folder",
    "is_ignored_key",
    "load_dit_state_dict",
    "read_checkpoint",
    "validate_state_dict",
]

logger = logging.getLogger(__name__)

CheckpointFormat = Literal["pt", "dcp", "safetensors"]
PREFIX = "net."
EMA_PREFIX = "net_ema."
_PT_SUFFIXES = (".pt", ".pth")
_ITER_RE = re.compile(r"iter_(\d+)")
# Files that live in a weights folder next to the DiT checkpoint but are not part of it.
AUXILIARY_FILES = frozenset({"empty_prompt_embedding.safetensors", "empty_prompt_embedding.pt"})


@dataclass(frozen=True)
class CheckpointRef:
    """Where a DiT checkpoint is and in which format (no bytes read yet)."""

    path: Path
    format: CheckpointFormat

    def __str__(self) -> str:
        return f"{self.path} ({self.format})"


@dataclass
class LoadReport:
    """What a load did: the file, the source prefix used and the keys it ignored."""

    checkpoint: CheckpointRef
    prefix: str = PREFIX
    num_tensors: int = 0
    ignored_keys: list[str] = field(default_factory=list)
    dtypes: dict[str, int] = field(default_factory=dict)  # dtype name -> tensor count


def is_ignored_key(key: str) -> bool:
    """True for checkpoint keys that hold no model weights (RoPE buffers, counters, TE state)."""
    name = key
    for prefix in (EMA_PREFIX, PREFIX):
        if name.startswith(prefix):
            name = name[len(prefix) :]
            break
    return name.startswith("pos_embedder.") or name.startswith("accum_") or name.endswith("_extra_state")


# ----------------------------------------------------------------------------- discovery


def _classify(path: Path) -> CheckpointRef | None:
    if path.name in AUXILIARY_FILES:
        return None
    if path.is_file():
        if path.suffix == ".safetensors":
            return CheckpointRef(path, "safetensors")
        if path.suffix in _PT_SUFFIXES:
            return CheckpointRef(path, "pt")
        return None
    if path.is_dir():
        if (path / ".metadata").is_file():
            return CheckpointRef(path, "dcp")
        files = sorted(
            p
            for p in path.iterdir()
            if p.is_file() and p.suffix == ".safetensors" and p.name not in AUXILIARY_FILES
        )
        singles = [p for p in files if _is_single_safetensors(p)]
        if len(singles) == 1:
            return CheckpointRef(singles[0], "safetensors")
        if files:
            return CheckpointRef(path, "safetensors")  # shards (or several files) read together
    return None


def _iteration(path: Path) -> int:
    hits = _ITER_RE.findall(str(path))
    return int(hits[-1]) if hits else -1


def _latest_named(root: Path) -> set[Path]:
    """Iteration folders named by ``latest_checkpoint.txt`` files under root (NVIDIA's layout)."""
    named: set[Path] = set()
    for marker in list(root.glob("latest_checkpoint.txt")) + list(root.glob("*/latest_checkpoint.txt")):
        try:
            name = marker.read_text().strip()
        except OSError:
            continue
        if name:
            named.add((marker.parent / name).resolve())
    return named


def find_dit_checkpoint(location: Path | str) -> CheckpointRef:
    """Find the DiT checkpoint at `location`: a file, a DCP folder, or a weights folder.

    In a weights folder (searched three levels deep, ``vae/`` excluded) the preference is
    safetensors, then ``.pt``/``.pth`` (``model_ema_bf16.pt`` first), then a DCP folder;
    among DCP folders, the iteration named by ``latest_checkpoint.txt``, else the highest
    ``iter_N``. Raises WeightsNotFoundError naming the location and what was expected.
    """
    root = Path(location).expanduser()
    if not root.exists():
        raise WeightsNotFoundError(
            f"DreamDojo weights path {str(root)!r} does not exist; expected a checkpoint file "
            "(.safetensors, .pt/.pth), a DCP folder (.metadata + *.distcp) or a weights folder holding one"
        )
    direct = _classify(root)
    if direct is not None:
        return direct
    if root.is_file():
        raise EngineError(
            f"{str(root)!r} is not a DreamDojo checkpoint: expected a .safetensors, .pt or .pth file, "
            "or a DCP folder containing .metadata"
        )

    candidates: list[tuple[int, CheckpointRef]] = []
    latest = _latest_named(root)
    for depth_glob in ("*", "*/*", "*/*/*", "*/*/*/*"):
        for p in sorted(root.glob(depth_glob)):
            rel_parts = p.relative_to(root).parts
            if (
                "vae" in rel_parts
                or any(part.startswith(".") for part in rel_parts[:-1])
                or p.name in AUXILIARY_FILES
            ):
                continue
            if p.name == ".metadata" and p.is_file():
                candidates.append((len(rel_parts), CheckpointRef(p.parent, "dcp")))
            elif p.is_file() and p.suffix == ".safetensors" and len(rel_parts) <= 3:
                candidates.append(
                    (
                        len(rel_parts),
                        CheckpointRef(p if _is_single_safetensors(p) else p.parent, "safetensors"),
                    )
                )
            elif p.is_file() and p.suffix in _PT_SUFFIXES and len(rel_parts) <= 3:
                candidates.append((len(rel_parts), CheckpointRef(p, "pt")))
    if not candidates:
        raise WeightsNotFoundError(
            f"no DreamDojo DiT checkpoint in {str(root)!r}: expected model.safetensors (from `dream convert`), "
            "model_ema_bf16.pt, or a DCP folder (<folder>/iter_*/model/ with .metadata and *.distcp files)"
        )

    def rank(item: tuple[int, CheckpointRef]) -> tuple:
        depth, ref = item
        fmt_rank = {"safetensors": 0, "pt": 1, "dcp": 2}[ref.format]
        in_latest = any(parent in latest for parent in [ref.path.resolve(), *ref.path.resolve().parents])
        preferred_name = {"model_ema_bf16.pt": 0, "model_ema_fp32.pt": 1}.get(ref.path.name, 2)
        return (fmt_rank, not in_latest, -_iteration(ref.path), preferred_name, depth, str(ref.path))

    unique = {str(ref.path): (d, ref) for d, ref in candidates}
    return sorted(unique.values(), key=rank)[0][1]


def find_vae_folder(root: Path) -> Path | None:
    """A diffusers-format VAE folder (config.json + weights) at `root/vae` or `root` itself."""
    for candidate in (root / "vae", root):
        if (candidate / "config.json").is_file() and any(
            (candidate / name).is_file()
            for name in ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")
        ):
            return candidate
    return None


def _is_single_safetensors(path: Path) -> bool:
    """A shard (model-00001-of-00003.safetensors) belongs to its folder; anything else stands alone."""
    return re.search(r"-\d{5}-of-\d{5}\.safetensors$", path.name) is None


# ----------------------------------------------------------------------------- reading


def _unwrap(obj: object, path: Path) -> dict[str, object]:
    if not isinstance(obj, Mapping):
        raise EngineError(f"{str(path)!r} does not hold a state dict (got {type(obj).__name__})")
    for wrapper in ("model", "state_dict", "module"):
        inner = obj.get(wrapper)
        if isinstance(inner, Mapping) and not any(str(k).startswith(PREFIX) for k in obj):
            return _unwrap(inner, path)
    return dict(obj)


def _read_pt(path: Path, allow_pickle: bool) -> dict[str, object]:
    import torch

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except (pickle.UnpicklingError, RuntimeError, AttributeError, ValueError) as exc:
        if not allow_pickle:
            raise EngineError(
                f"could not read {str(path)!r} as a weights-only PyTorch checkpoint ({exc}). If you trust the file, "
                "load it with allow_pickle=True (env DREAM_TRUST_PICKLE=1), or convert it once with "
                "`dream convert --allow-pickle SRC DST.safetensors`"
            ) from exc
        try:
            obj = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as exc2:
            raise EngineError(f"could not read {str(path)!r} as a PyTorch checkpoint: {exc2}") from exc2
    return _unwrap(obj, path)


def _read_safetensors(path: Path) -> dict[str, object]:
    try:
        from safetensors.torch import load_file
    except ImportError as exc:  # pragma: no cover - safetensors is a dependency of the [torch] extra
        raise EngineError(
            "reading .safetensors needs safetensors: pip install 'dream-engine[torch]'"
        ) from exc
    files = (
        [path]
        if path.is_file()
        else sorted(p for p in path.glob("*.safetensors") if p.is_file() and p.name not in AUXILIARY_FILES)
    )
    if not files:
        raise WeightsNotFoundError(f"no .safetensors files in {str(path)!r}")
    out: dict[str, object] = {}
    for f in files:
        try:
            part = load_file(str(f), device="cpu")
        except Exception as exc:
            raise EngineError(f"could not read {str(f)!r} as safetensors: {exc}") from exc
        dup = set(part) & set(out)
        if dup:
            raise EngineError(f"keys present in more than one shard of {str(path)!r}: {sorted(dup)}")
        out.update(part)
    return out


def _read_dcp(path: Path, prefer_ema: bool) -> tuple[dict[str, object], list[str], str]:
    """Read the model tensors of a DCP folder. Returns (tensors, all_keys, prefix_used)."""
    import torch
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.metadata import TensorStorageMetadata

    reader = dcp.FileSystemReader(str(path))
    try:
        metadata = reader.read_metadata()
    except FileNotFoundError as exc:
        raise WeightsNotFoundError(f"DCP folder {str(path)!r} has no .metadata file") from exc
    except Exception as exc:
        raise EngineError(f"could not read the DCP metadata of {str(path)!r}: {exc}") from exc

    storage = getattr(metadata, "storage_data", None) or {}
    referenced = sorted({info.relative_path for info in storage.values() if hasattr(info, "relative_path")})
    missing_files = [name for name in referenced if not (path / name).is_file()]
    if missing_files:
        raise WeightsNotFoundError(
            f"DCP folder {str(path)!r} is incomplete: missing {', '.join(missing_files)} "
            f"(its .metadata references {len(referenced)} data files); re-run `dream pull` or copy the missing files"
        )

    all_keys = list(metadata.state_dict_metadata)
    if not any(k.startswith((PREFIX, EMA_PREFIX)) for k in all_keys):
        roots = sorted({k.split(".")[0] for k in all_keys})
        raise EngineError(
            f"DCP folder {str(path)!r} has no net.* or net_ema.* entries (a DreamDojo model folder is "
            f"<checkpoint>/iter_*/model/); its keys start with: {', '.join(roots[:20]) or '(none)'}"
        )
    has_ema = any(k.startswith(EMA_PREFIX) for k in all_keys)
    src_prefix = EMA_PREFIX if (prefer_ema and has_ema) else PREFIX
    wanted: dict[str, torch.Tensor] = {}
    for key, meta in metadata.state_dict_metadata.items():
        if not key.startswith(src_prefix) or is_ignored_key(key):
            continue
        if not isinstance(meta, TensorStorageMetadata):
            continue  # non-tensor entries (bytes) of a model prefix: reported by validation as missing
        wanted[key] = torch.empty(tuple(meta.size), dtype=meta.properties.dtype)
    try:
        with warnings.catch_warnings():
            # Reading on one process without a process group is exactly what we want.
            warnings.filterwarnings("ignore", message="torch.distributed is disabled")
            dcp.load(wanted, storage_reader=reader, no_dist=True)
    except Exception as exc:
        raise EngineError(f"could not read the tensors of DCP folder {str(path)!r}: {exc}") from exc
    renamed: dict[str, object] = {PREFIX + k[len(src_prefix) :]: v for k, v in wanted.items()}
    # Keys of the other prefix (e.g. the non-EMA `net.*` weights) are not part of the model
    # we load; keep their names so the report can list them as ignored.
    others = [k for k in all_keys if not k.startswith(src_prefix) or is_ignored_key(k)]
    for k in all_keys:
        if k.startswith(src_prefix) and k not in wanted and not is_ignored_key(k):
            renamed.setdefault(PREFIX + k[len(src_prefix) :], None)  # non-tensor: fails validation
    return renamed, others, src_prefix


def _select_prefix(raw: dict[str, object], prefer_ema: bool) -> tuple[dict[str, object], list[str], str]:
    """Use the ``net_ema.*`` weights of a full checkpoint (regular + EMA) when asked to."""
    if not (prefer_ema and any(k.startswith(EMA_PREFIX) for k in raw)):
        return raw, [], PREFIX
    selected = {PREFIX + k[len(EMA_PREFIX) :]: v for k, v in raw.items() if k.startswith(EMA_PREFIX)}
    others = [k for k in raw if not k.startswith(EMA_PREFIX)]
    return selected, others, EMA_PREFIX


def read_checkpoint(
    ref: CheckpointRef, *, allow_pickle: bool = False, prefer_ema: bool = True
) -> tuple[dict[str, object], list[str], str]:
    """Read every tensor of a checkpoint. Returns (``net.*``-keyed dict, extra ignored keys, source prefix).

    A checkpoint holding both ``net.*`` and ``net_ema.*`` weights gives its EMA weights
    (the ones NVIDIA recommends for inference) unless ``prefer_ema`` is False; the other
    set is reported as ignored.
    """
    if ref.format == "pt":
        return _select_prefix(_read_pt(ref.path, allow_pickle), prefer_ema)
    if ref.format == "safetensors":
        return _select_prefix(_read_safetensors(ref.path), prefer_ema)
    if ref.format == "dcp":
        return _read_dcp(ref.path, prefer_ema)
    raise EngineError(f"unknown checkpoint format {ref.format!r} for {str(ref.path)!r}")


# ----------------------------------------------------------------------------- validation


def _fmt(keys: Iterable[str]) -> str:
    return ", ".join(sorted(keys))


def validate_state_dict(
    raw: Mapping[str, object], expected: Mapping[str, torch.Size], *, source: str
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Map ``net.*`` keys to module keys and check them against the model's.

    Returns (state dict without the prefix, ignored keys). Raises one EngineError listing
    every missing, unexpected and mis-shaped key.
    """
    import torch

    state: dict[str, torch.Tensor] = {}
    ignored: list[str] = []
    unexpected: list[str] = []
    not_tensors: list[str] = []
    for key, value in raw.items():
        if is_ignored_key(key):
            ignored.append(key)
            continue
        if not key.startswith(PREFIX):
            unexpected.append(key)
            continue
        name = key[len(PREFIX) :]
        if name not in expected:
            unexpected.append(key)
            continue
        if not isinstance(value, torch.Tensor):
            not_tensors.append(key)
            continue
        state[name] = value
    missing = [PREFIX + k for k in expected if k not in state and PREFIX + k not in not_tensors]
    misshaped = [
        f"{PREFIX}{k} (checkpoint {tuple(v.shape)}, model {tuple(expected[k])})"
        for k, v in state.items()
        if tuple(v.shape) != tuple(expected[k])
    ]
    problems = []
    if missing:
        problems.append(f"missing keys ({len(missing)}): {_fmt(missing)}")
    if unexpected:
        problems.append(f"unexpected keys ({len(unexpected)}): {_fmt(unexpected)}")
    if misshaped:
        problems.append(f"mis-shaped keys ({len(misshaped)}): {_fmt(misshaped)}")
    if not_tensors:
        problems.append(f"keys that are not tensors ({len(not_tensors)}): {_fmt(not_tensors)}")
    if problems:
        raise EngineError(
            f"DreamDojo checkpoint {source} does not match the model config: " + "; ".join(problems)
        )
    return state, ignored


def load_dit_state_dict(
    location: Path | str | CheckpointRef,
    expected: Mapping[str, torch.Size],
    *,
    allow_pickle: bool = False,
    prefer_ema: bool = True,
) -> tuple[dict[str, torch.Tensor], LoadReport]:
    """Find, read and validate a DiT checkpoint against `expected` (module key → shape).

    Returns the state dict keyed like the model (``net.`` stripped) and a report.
    """
    ref = location if isinstance(location, CheckpointRef) else find_dit_checkpoint(location)
    raw, extra_ignored, prefix = read_checkpoint(ref, allow_pickle=allow_pickle, prefer_ema=prefer_ema)
    state, ignored = validate_state_dict(raw, expected, source=str(ref))
    report = LoadReport(
        checkpoint=ref, prefix=prefix, num_tensors=len(state), ignored_keys=sorted(ignored + extra_ignored)
    )
    for t in state.values():
        report.dtypes[str(t.dtype).replace("torch.", "")] = (
            report.dtypes.get(str(t.dtype).replace("torch.", ""), 0) + 1
        )
    logger.info("read %d DiT tensors from %s (prefix %s, dtypes %s)", len(state), ref, prefix, report.dtypes)
    if report.ignored_keys:
        logger.debug(
            "ignored %d checkpoint keys: %s", len(report.ignored_keys), ", ".join(report.ignored_keys)
        )
    return state, report


def expected_shapes(model: torch.nn.Module) -> dict[str, torch.Size]:
    """Module key → shape for every entry of a model's state dict (works on the meta device)."""
    return {k: v.shape for k, v in model.state_dict().items()}
