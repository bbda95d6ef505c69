"""Export a trained run to the package's safetensors weights.

Reads `<run>/last.pt` and the gate threshold chosen on validation
(`<run>/threshold.json`, written by `train.py --choose-threshold`), and writes
`src/dream/engine/models/pusht/weights/<slug>.safetensors`: float32 tensors named as the
module's state dict, with every `PushTConfig` field in the metadata (``config.*``) plus
provenance. The file is then reloaded through the package's strict loader.

    python training/export.py --run training/runs/pusht-96 --slug pusht-96
    python training/export.py --run training/runs/pusht-96-noaction --slug pusht-96-noaction
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from pathlib import Path

import torch
from safetensors.torch import save_file

from dream.engine.models.pusht.loader import load_pusht_model
from dream.engine.models.pusht.model import PushTConfig, PushTWorldModel
from dream.engine.models.pusht.runner import WEIGHTS_DIR


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--slug", required=True, help="pusht-96 or pusht-96-noaction")
    parser.add_argument("--out-dir", type=Path, default=WEIGHTS_DIR)
    args = parser.parse_args()

    ckpt = torch.load(args.run / "last.pt", map_location="cpu", weights_only=False)
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in ckpt["config"].items()}
    threshold_file = args.run / "threshold.json"
    if not threshold_file.exists():
        raise SystemExit(
            f"{threshold_file} is missing: run train.py --run {args.run} --choose-threshold first"
        )
    chosen = json.loads(threshold_file.read_text())
    config = dataclasses.replace(PushTConfig(**values), gate_threshold=float(chosen["gate_threshold"]))

    model = PushTWorldModel(config)
    model.load_state_dict(ckpt["model"], strict=True)
    tensors = {name: t.detach().to(torch.float32).contiguous() for name, t in model.state_dict().items()}
    metadata = config.to_metadata()
    metadata.update(
        {
            "format": "pt",
            "slug": args.slug,
            "trained_iterations": str(ckpt["iteration"]),
            "threshold_criterion": chosen.get("criterion", ""),
            "threshold_val_episodes": str(chosen.get("episodes", "")),
            "training": "training/train.py on gym-pusht 0.1.8 episodes, train seeds 0..3999 (see training/README.md)",
        }
    )
    args.out_dir.mkdir(parents=True, exist_ok=True)
    out = args.out_dir / f"{args.slug}.safetensors"
    tmp = out.with_suffix(".tmp")
    save_file(tensors, str(tmp), metadata=metadata)
    os.replace(tmp, out)
    os.chmod(out, 0o644)  # package data: readable by everyone who installs it
    load_pusht_model(out)  # the strict loader accepts what we wrote
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB), gate_threshold={config.gate_threshold}")


if __name__ == "__main__":
    main()
