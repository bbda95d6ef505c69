"""Runner for the built-in pusht-96 world model: structured, deterministic, CPU-only.

A rollout has three stages, each computed per rollout (no batch neighbour or thread
count can change a row's bytes):

1. read the scene off the start frame: the agent's position and the block's pose, by
   render-and-compare (`posefit.fit_start_pose`);
2. roll the poses forward with the actions: the agent follows the simulator's PD law
   (`physics.agent_path`, the documented meaning of an action), the block moves as a
   small network learned from simulated episodes predicts (`dynamics.BlockDynamics`);
3. draw each frame: pixels that no object touches, now or at the start, are the start
   frame's, byte for byte (the floor, the goal, the walls); where the block has not
   moved, its start pixels are kept too; the rest is drawn by `render.SceneRenderer`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from dream.engine.runner import Runner, WeightsStatus
from dream.engine.specs import EngineSpec
from dream.errors import EngineError, WeightsNotFoundError

if TYPE_CHECKING:
    import numpy as np

    from dream.engine.models.pusht.dynamics import BlockDynamics
    from dream.engine.models.pusht.physics import PhysicsParams
    from dream.engine.models.pusht.render import SceneRenderer

__all__ = ["WEIGHTS_DIR", "PushTRunner"]

# Shipped weights of the block's dynamics network: <slug>.safetensors.
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


class PushTRunner(Runner):
    """Rolls out the structured Push-T model (see the module docstring).

    Inputs (validated by the engine): start frames uint8 (1 or K, 96, 96, 3) and actions
    float32 (K, T, 2), each action being the agent's target (x, y) in gym-pusht's
    512×512 workspace. Actions outside [0, 512] are clipped to the workspace (the
    simulator's action space) before the model sees them.

    Deterministic: `seeds`, `num_steps` and `guidance` do not change its output, and
    each rollout is computed on its own in float64 Python/numpy, so a row of a fused
    batch is byte-identical to the same rollout alone, whatever the thread count
    (``batch_invariant``). `dtype` and `device` are ignored: it runs on the CPU.
    """

    batch_invariant = True
    uses_torch = False  # numpy only

    def __init__(
        self,
        spec: EngineSpec,
        *,
        device: str = "cpu",
        dtype: str | None = None,
        weights: str | None = None,
    ) -> None:
        super().__init__(spec, device=device, dtype=dtype, weights=weights)
        self.params: PhysicsParams | None = None
        self.dynamics: BlockDynamics | None = None
        self.renderer: SceneRenderer | None = None

    @classmethod
    def weights_path(cls, spec: EngineSpec, weights: str | None = None) -> Path:
        return Path(weights) if weights else WEIGHTS_DIR / f"{spec.slug}.safetensors"

    @classmethod
    def weights_status(cls, spec: EngineSpec, weights: str | None = None) -> WeightsStatus:
        path = cls.weights_path(spec, weights)
        if path.is_file():
            return WeightsStatus(available=True, location=str(path))
        if weights:
            message = f"weights file {str(path)!r} given for {spec.slug!r} does not exist"
        else:
            message = (
                f"weights for {spec.slug!r} are missing: expected {path}, which ships inside the dream-engine "
                "package; reinstall it, or rebuild the file with training/learn_pusht.py"
            )
        return WeightsStatus(available=False, message=message)

    def load(self) -> None:
        from dream.engine.models.pusht.dynamics import BlockDynamics
        from dream.engine.models.pusht.physics import PhysicsParams
        from dream.engine.models.pusht.render import SceneRenderer

        status = self.weights_status(self.spec, self.weights)
        if not status.available:
            raise WeightsNotFoundError(status.message)
        if self.spec.resolution != (96, 96) or self.spec.action_dim != 2:
            raise EngineError(
                f"pusht-96 draws 96×96 frames from 2-d actions; spec {self.spec.slug!r} expects "
                f"{self.spec.resolution} frames and {self.spec.action_dim}-d actions"
            )
        self.dynamics = BlockDynamics.load(status.location)
        self.params = PhysicsParams()
        self.renderer = SceneRenderer(96, self.params)

    def fit_start(self, frame: np.ndarray) -> tuple[tuple[float, float], tuple[float, float, float]]:
        """The agent's position and the block's pose (cog x, y, angle) read off a start frame."""
        from dream.engine.models.pusht.posefit import fit_start_pose

        if self.renderer is None:
            raise EngineError(f"{self.spec.slug}: fit_start() before load()")
        return fit_start_pose(frame, self.renderer)

    def rollout(
        self,
        frames: np.ndarray,
        actions: np.ndarray,
        *,
        seeds: Sequence[int],
        num_steps: int | None,
        guidance: float | None,
    ) -> np.ndarray:
        """Predict K rollouts; see `Runner.rollout`. Frame 0 of each is its start frame, bit for bit."""
        import numpy as np

        k, t = actions.shape[:2]
        out = np.empty((k, t + 1, 96, 96, 3), np.uint8)
        for row, frames_of_row in enumerate(self._row_frames(frames, actions)):
            for i, frame in enumerate(frames_of_row):
                out[row, i] = frame
        return out

    def rollout_chunks(
        self,
        frames: np.ndarray,
        actions: np.ndarray,
        *,
        seeds: Sequence[int],
        num_steps: int | None,
        guidance: float | None,
        chunk_actions: int,
    ) -> Iterator[np.ndarray]:
        """`rollout` drawn `chunk_actions` frames at a time (the poses of a whole rollout are a
        few floats per frame; the frames are what would not fit): memory holds one chunk.

        Every frame is drawn from its poses alone, so the chunks concatenate to `rollout`'s
        frames bit for bit.
        """
        import numpy as np

        k, t = actions.shape[:2]
        rows = self._row_frames(frames, actions)
        step = max(1, chunk_actions)
        for lo, hi in [(0, 1), *((a, min(a + step, t + 1)) for a in range(1, t + 1, step))]:
            chunk = np.empty((k, hi - lo, 96, 96, 3), np.uint8)
            for row, frames_of_row in enumerate(rows):
                for i in range(hi - lo):
                    chunk[row, i] = next(frames_of_row)
            yield chunk

    def _row_frames(self, frames: np.ndarray, actions: np.ndarray) -> list[Iterator[np.ndarray]]:
        """One frame iterator per rollout (frame 0 first); the start poses are fitted once per
        distinct frame. The one load check of `rollout` and `rollout_chunks`."""
        import numpy as np

        if self.renderer is None or self.dynamics is None:
            raise EngineError(f"{self.spec.slug}: rolled out before load()")
        starts = np.array(frames, dtype=np.uint8)
        acts = np.clip(np.asarray(actions, np.float64), 0.0, 512.0)
        fitted: dict[int, tuple] = {}
        rows = []
        for row in range(acts.shape[0]):
            index = 0 if len(starts) == 1 else row
            if index not in fitted:
                fitted[index] = self.fit_start(starts[index])
            rows.append(self._frames_one(starts[index], *fitted[index], acts[row]))
        return rows

    def _frames_one(self, start: np.ndarray, agent, block, actions: np.ndarray) -> Iterator[np.ndarray]:
        """The rollout's frames, frame 0 (the start frame) first, drawn one at a time."""
        import numpy as np

        from dream.engine.models.pusht.dynamics import rollout_poses

        assert self.renderer is not None and self.dynamics is not None
        agents, blocks = rollout_poses(agent, block, actions.tolist(), self.dynamics, self.params)
        yield start
        # where the start frame's objects were, grown by a pixel: their blended edge pixels
        # may reach one pixel beyond the drawing at the fitted pose
        _, block0, agent0 = self.renderer.render_layers(agents[0], blocks[0])
        block0, agent0 = _dilate(block0), _dilate(agent0)
        # the agent is drawn at its position rounded to workspace px: same rounding, same pixels
        drawn = [(round(x), round(y)) for x, y in agents]
        for i in range(1, len(agents)):
            frame = start.copy()
            if drawn[i] != drawn[0] or blocks[i] != blocks[0]:
                # only a crop around the objects' start and current places can change
                y0, y1, x0, x1 = window = self._window([agents[0], agents[i]], [blocks[0], blocks[i]])
                img, block_t, agent_t = self.renderer.render_layers(agents[i], blocks[i], window)
                region = agent0[y0:y1, x0:x1] | agent_t if drawn[i] != drawn[0] else np.zeros_like(agent_t)
                if blocks[i] != blocks[0]:
                    region |= block0[y0:y1, x0:x1] | block_t
                crop = frame[y0:y1, x0:x1]
                crop[region] = np.clip(np.rint(img[region]), 0, 255).astype(np.uint8)
            yield frame

    def _window(self, agents, blocks) -> tuple[int, int, int, int]:
        """(y0, y1, x0, x1): the output pixels that the agents' discs and the blocks' Ts can touch."""
        import math

        from dream.engine.models.pusht.render import body_polygons

        assert self.renderer is not None and self.params is not None
        xs, ys = [], []
        r = self.params.agent_radius + 2
        for ax, ay in agents:
            xs += [ax - r, ax + r]
            ys += [ay - r, ay + r]
        for b in blocks:
            for poly in body_polygons(*self.renderer.cog_to_origin(b)):
                xs += [x for x, _ in poly]
                ys += [y for _, y in poly]
        scale = 96 / 512

        def lo(v: float) -> int:
            return min(max(math.floor((v - 3) * scale) - 2, 0), 96)

        def hi(v: float) -> int:
            return max(min(math.ceil((v + 3) * scale) + 3, 96), 0)

        y0, y1, x0, x1 = lo(min(ys)), hi(max(ys)), lo(min(xs)), hi(max(xs))
        return (y0, max(y1, y0), x0, max(x1, x0))


def _dilate(mask: np.ndarray) -> np.ndarray:
    """`mask` grown by one pixel (8-neighbourhood)."""
    import numpy as np

    padded = np.pad(mask, 1)
    h, w = mask.shape
    out = np.zeros_like(mask)
    for dy in (0, 1, 2):
        for dx in (0, 1, 2):
            out |= padded[dy : dy + h, dx : dx + w]
    return out
