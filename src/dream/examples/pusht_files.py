"""Write the bundled Push-T episodes as a `frames_from_dir` folder (the bulk demo's input)."""

from __future__ import annotations

from pathlib import Path

from dream.inputs import encode_npy, encode_png


def write_pusht_dir(path: str | Path, *, repeat: int = 1) -> Path:
    """Write each bundled episode as ``<id>.png`` (start frame) + ``<id>.npy`` (actions).

    `repeat` > 1 writes each episode that many times under distinct ids
    (``ep03_r01``…), for a bigger bulk run. Returns the folder.
    """
    from dream.examples.pusht import pusht_episodes

    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    for ep in pusht_episodes():
        for r in range(repeat):
            stem = f"ep{ep.index:02d}" if repeat == 1 else f"ep{ep.index:02d}_r{r:02d}"
            (out / f"{stem}.png").write_bytes(encode_png(ep.start_frame))
            (out / f"{stem}.npy").write_bytes(encode_npy(ep.actions))
    return out
