"""The pusht-96 world model: a small recurrent U-Net that predicts the next Push-T frame.

One step maps (current frame, previous frame, recurrent state, action) to the next
frame. It works at 24×24 after a ×4 pixel-unshuffle, and it paints the next frame as a
gated composite over the current one:

    next = current + g ⊙ (content − current)          g = sigmoid(gate logits), per pixel

At inference gates at or below `PushTConfig.gate_threshold` are set to 0, so pixels the
model does not mean to change are copied bit for bit: the static background cannot
drift over a long rollout (the failure of the first feasibility model). Each step's
frame is rounded to uint8 levels (straight-through in training), so the model always
sees exactly what it will be fed at inference.

Stages (numbered the same in ``__init__`` and ``forward``):
  1. inputs: unshuffled current frame and frame difference (velocity), action features
     (target offset field and two Gaussian heatmaps on the 24×24 grid), recurrent state
  2. encoder: 1×1 stem at 24² (+ a learned positional map, which learns the fixed goal zone
     and walls), residual blocks at 24², 12², 6²
  3. decoder: upsample + skip + residual block at 12² and 24²
  4. heads: content (RGB, unshuffled), gate logits (one per 96² pixel), state update
     (GRU-style: state ← (1 − z)·state + z·tanh(c))

The module opens no files; `dream.engine.models.pusht.loader` fills it from safetensors.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["PushTConfig", "PushTWorldModel", "RolloutState"]


@dataclass(frozen=True)
class PushTConfig:
    """Dimensions and inference knobs of `PushTWorldModel`.

    Every field is stored in the safetensors metadata of the shipped weights.
    """

    image_size: int = 96  # frames are image_size² RGB
    patch: int = 4  # pixel-unshuffle factor: the network runs at (image_size / patch)²
    workspace_size: float = 512.0  # actions are agent targets in [0, workspace_size]²
    widths: tuple[int, int, int] = (48, 96, 128)  # channels at 24², 12², 6² (CPU cost ∝ width²)
    blocks: tuple[int, int, int] = (1, 2, 2)  # encoder residual blocks at 24², 12², 6²
    state_channels: int = 32  # recurrent state at 24²: carries sub-pixel position/velocity
    # σ of the two target heatmaps, in workspace px: a sharp one to place the agent and
    # a wide one so that cells far from the target still see it.
    heatmap_sigmas: tuple[float, float] = (16.0, 64.0)
    offset_scale: float = 64.0  # target-offset channels are (target − cell centre) / offset_scale
    use_actions: bool = True  # False: the action-ignoring baseline (same network, actions zeroed)
    # Gates ≤ this are closed at inference (exact copy of the current pixel). Chosen on
    # the validation split after training (training/train.py --choose-threshold).
    gate_threshold: float = 0.5

    @property
    def grid(self) -> int:
        return self.image_size // self.patch

    def to_metadata(self) -> dict[str, str]:
        """Flat str → str form for safetensors metadata (`from_metadata` reads it back)."""
        return {f"config.{k}": repr(v) for k, v in asdict(self).items()}

    @classmethod
    def from_metadata(cls, metadata: dict[str, str]) -> PushTConfig:
        import ast

        known = {f.name for f in fields(cls)}
        values: dict[str, Any] = {}
        for key, text in metadata.items():
            if not key.startswith("config."):
                continue
            name = key[len("config.") :]
            if name not in known:
                raise ValueError(f"unknown config field {name!r} in weights metadata; known: {sorted(known)}")
            value = ast.literal_eval(text)
            values[name] = tuple(value) if isinstance(value, list) else value
        return cls(**values)


@dataclass
class RolloutState:
    """What one autoregressive step carries to the next (all float32, NCHW).

    frame:      (B, 3, 96, 96) current frame in [0, 1], on uint8 levels
    prev_frame: (B, 3, 96, 96) the frame before it (the start frame at step 0: at rest)
    hidden:     (B, state_channels, 24, 24)
    """

    frame: torch.Tensor
    prev_frame: torch.Tensor
    hidden: torch.Tensor


class ResBlock(nn.Module):
    """Pre-norm residual block: x + conv(silu(conv(silu(norm(x)))))."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        # GroupNorm keeps multi-step training stable (without it a 4-step open-loop
        # phase blew up); at batch 1 it costs ~1% of a step.
        self.norm = nn.GroupNorm(8, channels)
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        # Start as the identity.
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.silu(self.conv1(F.silu(self.norm(x)))))


def _quantize(x: torch.Tensor) -> torch.Tensor:
    """Round to uint8 levels; the gradient passes straight through."""
    return x + (torch.round(x * 255.0) / 255.0 - x).detach()


class PushTWorldModel(nn.Module):
    """Next-frame predictor for Push-T; see the module docstring for the design."""

    NUM_ACTION_FEATURES = 4  # offset x, offset y, sharp heatmap, wide heatmap

    def __init__(self, config: PushTConfig) -> None:
        super().__init__()
        self.config = config
        c1, c2, c3 = config.widths
        n1, n2, n3 = config.blocks
        p2 = config.patch * config.patch
        ch = config.state_channels
        grid = config.grid

        # 2. encoder
        in_channels = 3 * p2 * 2 + self.NUM_ACTION_FEATURES + ch
        # 1×1: each input cell already holds a 4×4 pixel patch, and enc1 mixes neighbours.
        self.stem = nn.Conv2d(in_channels, c1, 1)
        self.pos = nn.Parameter(torch.zeros(1, c1, grid, grid))
        self.enc1 = nn.Sequential(*[ResBlock(c1) for _ in range(n1)])
        self.down2 = nn.Conv2d(c1, c2, 3, stride=2, padding=1)
        self.enc2 = nn.Sequential(*[ResBlock(c2) for _ in range(n2)])
        self.down3 = nn.Conv2d(c2, c3, 3, stride=2, padding=1)
        self.enc3 = nn.Sequential(*[ResBlock(c3) for _ in range(n3)])
        # 3. decoder
        self.merge2 = nn.Conv2d(c3 + c2, c2, 1)
        self.dec2 = ResBlock(c2)
        self.merge1 = nn.Conv2d(c2 + c1, c1, 1)
        self.dec1 = ResBlock(c1)
        # 4. heads: content (3·p²), gate (p²), state update z and candidate (2·ch)
        self.head = nn.Conv2d(c1, 3 * p2 + p2 + 2 * ch, 3, padding=1)
        with torch.no_grad():
            self.head.weight.mul_(0.1)
            self.head.bias.zero_()
            # Gates start closed (sigmoid(-1) = 0.27, below the thresholds in use): the
            # model starts as "copy the frame" and the gate loss opens what must change.
            self.head.bias[3 * p2 : 4 * p2] = -1.0

        # Cell centres of the grid in workspace px, (2, grid, grid): x then y.
        centres = (torch.arange(grid, dtype=torch.float32) + 0.5) * (config.workspace_size / grid)
        ys, xs = torch.meshgrid(centres, centres, indexing="ij")
        self.register_buffer("cell_centres", torch.stack([xs, ys]), persistent=False)

    # -- inputs ---------------------------------------------------------------------------

    def action_features(self, actions: torch.Tensor) -> torch.Tensor:
        """(B, 2) agent targets in workspace px → (B, 4, grid, grid); clipped to the workspace."""
        cfg = self.config
        target = actions.clamp(0.0, cfg.workspace_size)[:, :, None, None]  # (B, 2, 1, 1)
        offset = target - self.cell_centres  # (B, 2, g, g), px
        dist2 = (offset * offset).sum(1, keepdim=True)  # (B, 1, g, g)
        s1, s2 = cfg.heatmap_sigmas
        feats = torch.cat(
            [
                offset / cfg.offset_scale,
                torch.exp(dist2 * (-0.5 / (s1 * s1))),
                torch.exp(dist2 * (-0.5 / (s2 * s2))),
            ],
            dim=1,
        )
        if not cfg.use_actions:
            feats = torch.zeros_like(feats)
        return feats

    def initial_state(self, start: torch.Tensor) -> RolloutState:
        """State at step 0 from start frames (B, 3, 96, 96) in [0, 1]: agent at rest, zero memory."""
        b = start.shape[0]
        g = self.config.grid
        hidden = start.new_zeros(b, self.config.state_channels, g, g)
        return RolloutState(frame=start, prev_frame=start, hidden=hidden)

    # -- one step --------------------------------------------------------------------------

    def forward(
        self, state: RolloutState, actions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One step's raw outputs.

        state:   the current `RolloutState`
        actions: (B, 2) this step's agent targets, workspace px
        Returns (content (B, 3, 96, 96), gate logits (B, 1, 96, 96), new hidden (B, ch, 24, 24)).
        """
        cfg = self.config
        p = cfg.patch
        p2 = p * p
        frame, prev, hidden = state.frame, state.prev_frame, state.hidden

        # 1. inputs at grid² (frames centred on 0.5 so the zero-padded border is neutral)
        x = torch.cat(
            [
                F.pixel_unshuffle(frame - 0.5, p),  # (B, 3p², g, g)
                F.pixel_unshuffle(frame - prev, p),  # (B, 3p², g, g)
                self.action_features(actions),  # (B, 4, g, g)
                hidden,  # (B, ch, g, g)
            ],
            dim=1,
        )
        # 2. encoder
        e1 = self.enc1(F.silu(self.stem(x) + self.pos))  # (B, c1, g, g)
        e2 = self.enc2(self.down2(F.silu(e1)))  # (B, c2, g/2, g/2)
        e3 = self.enc3(self.down3(F.silu(e2)))  # (B, c3, g/4, g/4)
        # 3. decoder
        d2 = self.dec2(self.merge2(torch.cat([F.interpolate(e3, scale_factor=2.0, mode="nearest"), e2], 1)))
        d1 = self.dec1(self.merge1(torch.cat([F.interpolate(d2, scale_factor=2.0, mode="nearest"), e1], 1)))
        # 4. heads
        out = self.head(F.silu(d1))
        content = F.pixel_shuffle(out[:, : 3 * p2], p) + frame  # (B, 3, 96, 96), a residual on the frame
        gate_logits = F.pixel_shuffle(out[:, 3 * p2 : 4 * p2], p)  # (B, 1, 96, 96)
        z, cand = out[:, 4 * p2 :].chunk(2, dim=1)
        z = torch.sigmoid(z)
        new_hidden = (1.0 - z) * hidden + z * torch.tanh(cand)
        return content, gate_logits, new_hidden

    def step(
        self,
        state: RolloutState,
        actions: torch.Tensor,
        *,
        gate_threshold: float | None = None,
        soft_backward: bool = False,
    ) -> tuple[RolloutState, torch.Tensor]:
        """Advance one frame; returns (next state, gate logits (B, 1, 96, 96)).

        gate_threshold: gates at or below it are closed (the pixel is copied exactly);
            None means `config.gate_threshold`.
        soft_backward: training only. The forward pass stays the hard-gated composite
            (exactly what inference computes), but gradients are those of the soft
            composite, so closed gates and the content under them still learn — a gated
            model trained on the hard composite alone starts stuck at "copy".
        """
        content, gate_logits, hidden = self(state, actions)
        gate = torch.sigmoid(gate_logits)
        threshold = self.config.gate_threshold if gate_threshold is None else gate_threshold
        change = content - state.frame
        nxt = state.frame + (gate * (gate > threshold)) * change
        if soft_backward:
            soft = state.frame + gate * change
            nxt = soft + (nxt - soft).detach()
        nxt = _quantize(nxt.clamp(0.0, 1.0))
        return RolloutState(frame=nxt, prev_frame=state.frame, hidden=hidden), gate_logits

    @torch.no_grad()
    def rollout(self, start: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Open-loop inference rollout.

        start:   (B, 3, 96, 96) float in [0, 1] on uint8 levels
        actions: (B, T, 2) agent targets, workspace px
        Returns (B, T + 1, 3, 96, 96) frames in [0, 1] on uint8 levels; index 0 is `start`.
        """
        state = self.initial_state(start)
        frames = [start]
        for t in range(actions.shape[1]):
            state, _ = self.step(state, actions[:, t])
            frames.append(state.frame)
        return torch.stack(frames, dim=1)
