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
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from dream.engine.runner import Runner, WeightsStatus
from dream.engine.specs import EngineSpec
from dream.errors import EngineError, WeightsNotFoundError

if TYPE_CHECKING:
    from dream.engine.models.pusht.dynamics import BlockDynamics, PoseState
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
        self._fits: dict[bytes, tuple] = {}  # fit_start_cached: frame digest -> fitted poses
        self._windows: dict[tuple, tuple[int, int, int, int]] = {}  # _memo_window: pose -> its window

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

    def fit_start_cached(self, frame: np.ndarray) -> tuple[tuple[float, float], tuple[float, float, float]]:
        """`fit_start`, remembered for the last few distinct frames (a planner starts many
        batches of candidates from one frame; the fit is most of a short rollout's time)."""
        import hashlib

        key = hashlib.blake2b(np.ascontiguousarray(frame).tobytes(), digest_size=16).digest()
        fitted = self._fits.pop(key, None)
        if fitted is None:
            fitted = self.fit_start(frame)
        self._fits[key] = fitted  # most recent last
        while len(self._fits) > _FIT_CACHE:
            self._fits.pop(next(iter(self._fits)))
        return fitted

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
        k = actions.shape[0]
        state = self.begin(frames, k, seeds=seeds, num_steps=num_steps, guidance=guidance)
        drawn = self.advance(state, actions)
        assert drawn is not None
        return np.concatenate([state.start_frames(), drawn], axis=1)

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
        k, t = actions.shape[:2]
        state = self.begin(frames, k, seeds=seeds, num_steps=num_steps, guidance=guidance)
        yield state.start_frames()
        step = max(1, chunk_actions)
        for lo in range(0, t, step):
            chunk = self.advance(state, actions[:, lo : lo + step])
            assert chunk is not None
            yield chunk

    # ------------------------------------------------------------------ stepping

    steps_incrementally = True

    def begin(
        self, frames: np.ndarray, k: int, *, seeds: Sequence[int], num_steps: int | None, guidance: float | None
    ) -> PushTState:
        """Read the scene off each distinct start frame (cached) and start K rollouts at rest."""
        from dream.engine.models.pusht.dynamics import PoseState

        if self.renderer is None or self.dynamics is None:
            raise EngineError(f"{self.spec.slug}: rolled out before load()")
        starts = np.array(frames, dtype=np.uint8)
        scenes = [self._start_scene(frame) for frame in starts]
        row_start = np.zeros(k, np.int64) if len(starts) == 1 else np.arange(k)
        poses = PoseState.at_rest(
            np.array([scenes[i].agent for i in row_start]), np.array([scenes[i].block for i in row_start]),
            self.dynamics.memory_size,
        )
        return PushTState(scenes, row_start, poses)

    def advance(self, state: PushTState, actions: np.ndarray, *, draw: bool | Sequence[int] = True) -> np.ndarray | None:
        """Step every rollout of `state` through actions (K, n, 2); draw the frames asked for
        (see `Runner.advance`). The poses of all K rollouts move together, element-wise per
        rollout, so a rollout's frames do not depend on the others."""
        from dream.engine.models.pusht.dynamics import step_poses

        assert self.renderer is not None and self.dynamics is not None and self.params is not None
        acts = np.clip(np.asarray(actions, np.float64), 0.0, 512.0)
        dynamics = state.dynamics or self.dynamics
        k, n = acts.shape[:2]
        if k != len(state.row_start):
            raise EngineError(f"{self.spec.slug}: advance() got actions for {k} rollouts; the state holds {len(state.row_start)}")
        wanted = range(n) if draw is True else () if draw is False else list(draw)
        out = np.empty((k, len(wanted), 96, 96, 3), np.uint8) if draw is not False else None
        slot = {i: j for j, i in enumerate(wanted)}
        for i in range(n):
            state.poses = step_poses(state.poses, acts[:, i], dynamics, self.params)
            state.t += 1
            if out is not None and i in slot:
                out[:, slot[i]] = self._draw_rows(state)
        return out

    def inexact(self, state: PushTState) -> None:
        """Let `state`'s rollouts trade bitwise batch invariance for speed: the block network's
        matrix products run through BLAS (`BlasDynamics`) instead of `np.einsum`'s loops, ≈ 4×
        faster at K = 300; poses agree with the exact path to float rounding (tests/plan)."""
        assert self.dynamics is not None
        state.dynamics = BlasDynamics(self.dynamics)

    def restart(self, state: PushTState, rows: Sequence[int], frames: np.ndarray) -> None:
        """Start rollouts `rows` again at rest from new start frames (see `Runner.restart`)."""
        from dream.engine.models.pusht.dynamics import PoseState

        rows = np.asarray(list(rows), np.int64)
        new_scenes = [self._start_scene(frame) for frame in np.asarray(frames, np.uint8)]
        fresh = PoseState.at_rest(
            np.array([sc.agent for sc in new_scenes]), np.array([sc.block for sc in new_scenes]),
            self.dynamics.memory_size if self.dynamics is not None else 0,
        )
        row_start = state.row_start.copy()
        row_start[rows] = len(state.scenes) + np.arange(len(rows))
        # keep only the scenes some rollout still starts from (an env that resets for ever must not grow)
        scenes = state.scenes + new_scenes
        kept = sorted(set(row_start.tolist()))
        renumber = {old: new for new, old in enumerate(kept)}
        state.scenes = [scenes[i] for i in kept]
        state.row_start = np.array([renumber[i] for i in row_start.tolist()], np.int64)
        parts = {}
        for name in ("agent", "velocity", "block", "memory"):
            parts[name] = getattr(state.poses, name).copy()  # pose states are never changed in place
            parts[name][rows] = getattr(fresh, name)
        state.poses = PoseState(**parts)
        if state.drawn is not None:
            state.drawn.t[rows] = -2  # a restarted rollout's next frame is drawn from its new start

    def readout(self, state: PushTState) -> dict[str, np.ndarray]:
        """The poses the model holds now: ``agent`` (K, 2) centre and ``agent_velocity`` (K, 2)
        in workspace px and px/s, ``block`` (K, 3) the T's centre of gravity (px) and angle
        (rad). Frames drawn now show exactly these poses."""
        poses = state.poses
        return {"agent": poses.agent.copy(), "agent_velocity": poses.velocity.copy(), "block": poses.block.copy()}

    def _start_scene(self, frame: np.ndarray) -> _StartScene:
        """A start frame with its fitted poses and where its objects' pixels are."""
        agent, block = self.fit_start_cached(frame)
        assert self.renderer is not None
        _, block_px, agent_px = self.renderer.render_layers(agent, block)
        # grown by a pixel: their blended edge pixels may reach one pixel beyond the drawing at the fitted pose
        return _StartScene(frame, agent, block, _dilate(block_px), _dilate(agent_px))

    def _draw_rows(self, state: PushTState) -> np.ndarray:
        """Every rollout's frame at its current poses, uint8 (K, 96, 96, 3): the start frame, with only
        what moved redrawn.

        A pixel is redrawn (from the poses alone, `render.render_windows`) where an object
        touches it now or touched it at the start, for the objects that moved; every other
        pixel is the start frame's. When a rollout's previous frame was drawn one action
        ago, that frame is the base instead and only the crops that can differ from it are
        recomputed (where the agent and the block were and are, and the start places when
        an object starts or stops counting as moved). The block's crops of all rollouts are
        drawn in one fused call (`render_windows`: the blocks whose T changed shape
        rasterised in one vectorised call, every crop coloured and blended at once), and
        the agent's crops that do not meet them in another. Both ways give the same bytes
        (`_draw` is the reference), so a rollout's frames depend neither on its batch nor
        on how often frames are drawn.
        """
        assert self.renderer is not None
        k = len(state.row_start)
        cache = state.drawn if state.drawn is not None and len(state.drawn.t) == k else _DrawCache(k)
        state.drawn = cache
        out = np.empty((k, 96, 96, 3), np.uint8)
        # crops to redraw, per rollout: around the agent (small) and around the block
        agent_jobs: list[list[tuple[int, int, int, int]]] = [[] for _ in range(k)]
        block_jobs: list[list[tuple[int, int, int, int]]] = [[] for _ in range(k)]
        poses: list[tuple[tuple[float, float], tuple[float, float, float], bool, bool]] = []
        for row in range(k):
            scene = state.scenes[state.row_start[row]]
            agent = (float(state.poses.agent[row, 0]), float(state.poses.agent[row, 1]))
            block = (float(state.poses.block[row, 0]), float(state.poses.block[row, 1]), float(state.poses.block[row, 2]))
            # the agent is drawn at its position rounded to workspace px: same rounding, same pixels
            at = (round(agent[0]), round(agent[1]))
            agent_moved = at != (round(scene.agent[0]), round(scene.agent[1]))
            block_moved = block != scene.block
            poses.append((agent, block, agent_moved, block_moved))
            if cache.t[row] == state.t - 1:  # last action's frame is the base: redraw what can differ from it
                out[row] = cache.frames[row]
                if cache.agent_at[row] != at:
                    agent_jobs[row] += [self._agent_window(cache.agent[row]), self._agent_window(agent)]
                if cache.block[row] != block:
                    block_jobs[row] += [self._block_window(cache.block[row]), self._block_window(block)]
                if cache.agent_moved[row] != agent_moved:
                    agent_jobs[row].append(self._agent_window(scene.agent))
                if cache.block_moved[row] != block_moved:
                    block_jobs[row].append(self._block_window(scene.block))
            else:
                out[row] = scene.frame
                if agent_moved:
                    agent_jobs[row] += [self._agent_window(scene.agent), self._agent_window(agent)]
                if block_moved:
                    block_jobs[row] += [self._block_window(scene.block), self._block_window(block)]
        # Every pixel of a crop is drawn by the same rule whichever crop holds it, so crops may
        # overlap. The block's crops (large) are drawn one by one, joined with the agent's crops
        # that meet them; the agent's other crops, of every rollout, in one fused call below,
        # each grown to one size (pixels beyond a crop are drawn by the same rule, so writing
        # them is as right as leaving them) and drawn without the block where they lie outside
        # the pixels its T can touch (the same pixels either way: it touches none of them).
        small: list[tuple[int, tuple[int, int, int, int]]] = []
        large_jobs: list[tuple[int, tuple[int, int, int, int]]] = []
        for row in range(k):
            rest = [w for w in agent_jobs[row] if w[0] < w[1] and w[2] < w[3]]
            large = _merge_windows(block_jobs[row])
            while large:  # the agent's crops that meet the block's join it (and may then meet others)
                joining = [w for w in rest if any(_overlap(w, m) for m in large)]
                if not joining:
                    break
                large = _merge_windows(large + joining)
                rest = [w for w in rest if w not in joining]
            large_jobs += [(row, window) for window in large]
            small += [(row, w) for w in _merge_small(rest)]
        if len(large_jobs) > 1:  # the block's crops of every rollout in one fused call, each grown to one size
            self._render_and_paint(state, out, poses, large_jobs, with_blocks=None)
        for row, window in large_jobs if len(large_jobs) == 1 else []:  # one crop: drawn at its own size
            img, block_t, agent_t = self.renderer.render_layers(poses[row][0], poses[row][1], window)
            self._paint(state, out, row, poses[row], window, img, block_t, agent_t)
        if small:
            self._render_and_paint(state, out, poses, small, with_blocks="reach")
        for row, (agent, block, agent_moved, block_moved) in enumerate(poses):
            cache.frames[row] = out[row]
            cache.t[row] = state.t
            cache.agent[row], cache.block[row] = agent, block
            cache.agent_at[row] = (round(agent[0]), round(agent[1]))
            cache.agent_moved[row], cache.block_moved[row] = agent_moved, block_moved
        return out

    def _render_and_paint(self, state: PushTState, out: np.ndarray, poses: list[tuple],
                          jobs: list[tuple[int, tuple[int, int, int, int]]], with_blocks: str | None) -> None:
        """Draw crops (row, window) of several rollouts in one `render.render_windows` call, each grown
        to the largest's size (pixels beyond a crop are drawn by the same rule, so writing them is
        as right as leaving them), and paint them into `out`. with_blocks="reach": a crop is drawn
        without the block where it lies outside the pixels the block's T can touch (the same pixels
        either way: it touches none of them)."""
        from dream.engine.models.pusht.render import render_windows

        assert self.renderer is not None
        h = max(w[1] - w[0] for _, w in jobs)
        w_ = max(w[3] - w[2] for _, w in jobs)
        corners = np.array([(min(w[0], 96 - h), min(w[2], 96 - w_)) for _, w in jobs])
        blocks = [poses[row][1] for row, _ in jobs]
        if with_blocks == "reach":
            reach: dict[int, tuple[int, int, int, int]] = {}  # per rollout: the pixels its block can touch
            for j, ((row, _), (y0, x0)) in enumerate(zip(jobs, corners.tolist(), strict=True)):
                if row not in reach:
                    reach[row] = self._block_window(poses[row][1])
                if not _overlap((y0, y0 + h, x0, x0 + w_), reach[row]):
                    blocks[j] = None
        img, block_t, agent_t = render_windows(self.renderer, [poses[row][0] for row, _ in jobs], blocks, corners, (h, w_))
        drawn = np.clip(np.rint(img), 0, 255).astype(np.uint8)
        for j, (row, _) in enumerate(jobs):
            y0, x0 = (int(v) for v in corners[j])
            self._paint(state, out, row, poses[row], (y0, y0 + h, x0, x0 + w_), drawn[j], block_t[j], agent_t[j])

    @staticmethod
    def _paint(state: PushTState, out: np.ndarray, row: int, pose: tuple, window: tuple[int, int, int, int],
               img: np.ndarray, block_t: np.ndarray, agent_t: np.ndarray) -> None:
        """Write one crop of rollout `row`'s frame: drawn where an object that moved touches it now
        or touched it at the start, the start frame's pixel elsewhere."""
        scene = state.scenes[state.row_start[row]]
        _, _, agent_moved, block_moved = pose
        y0, y1, x0, x1 = window
        crop = (slice(y0, y1), slice(x0, x1))
        region = scene.agent_px[crop] | agent_t if agent_moved else np.zeros(agent_t.shape, bool)
        if block_moved:
            region |= scene.block_px[crop] | block_t
        drawn = img if img.dtype == np.uint8 else np.clip(np.rint(img), 0, 255).astype(np.uint8)
        out[row][crop] = np.where(region[..., None], drawn, scene.frame[crop])

    def _draw(self, state: PushTState, row: int) -> np.ndarray:
        """Rollout `row`'s frame at its current poses, drawn from its start frame alone: the reference
        `_draw_rows` must equal byte for byte (tests compare them)."""
        assert self.renderer is not None
        scene = state.scenes[state.row_start[row]]
        agent = (float(state.poses.agent[row, 0]), float(state.poses.agent[row, 1]))
        block = (float(state.poses.block[row, 0]), float(state.poses.block[row, 1]), float(state.poses.block[row, 2]))
        frame = scene.frame.copy()
        agent_moved = (round(agent[0]), round(agent[1])) != (round(scene.agent[0]), round(scene.agent[1]))
        block_moved = block != scene.block
        if agent_moved or block_moved:
            y0, y1, x0, x1 = window = self._window([scene.agent, agent], [scene.block, block])
            img, block_t, agent_t = self.renderer.render_layers(agent, block, window)
            region = scene.agent_px[y0:y1, x0:x1] | agent_t if agent_moved else np.zeros_like(agent_t)
            if block_moved:
                region |= scene.block_px[y0:y1, x0:x1] | block_t
            crop = frame[y0:y1, x0:x1]
            crop[region] = np.clip(np.rint(img[region]), 0, 255).astype(np.uint8)
        return frame

    def _agent_window(self, agent: tuple[float, float]) -> tuple[int, int, int, int]:
        """`_window` of one agent position, remembered (each pose's window is asked for again a step later)."""
        return self._memo_window(("a", agent), [agent], [])

    def _block_window(self, block: tuple[float, float, float]) -> tuple[int, int, int, int]:
        """`_window` of one block pose, remembered."""
        return self._memo_window(("b", block), [], [block])

    def _memo_window(self, key: tuple, agents: list, blocks: list) -> tuple[int, int, int, int]:
        window = self._windows.get(key)
        if window is None:
            if len(self._windows) >= _WINDOW_MEMO:
                self._windows.clear()
            window = self._windows[key] = self._window(agents, blocks)
        return window

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


_SMALL = 16  # px: a rollout's agent crops are joined where the joint crop is no bigger than this
_WINDOW_MEMO = 4096  # poses whose windows are remembered (the memo starts over when full)


def _merge_small(windows: list[tuple[int, int, int, int]]) -> list[tuple[int, int, int, int]]:
    """Crops with pairs joined into their bounding crop where that is at most _SMALL px each way
    (an agent's crops before and after a step mostly overlap)."""
    out = list(windows)
    joined = True
    while joined:
        joined = False
        for i in range(len(out)):
            for j in range(i + 1, len(out)):
                a, b = out[i], out[j]
                m = (min(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), max(a[3], b[3]))
                if m[1] - m[0] <= _SMALL and m[3] - m[2] <= _SMALL:
                    out[i] = m
                    del out[j]
                    joined = True
                    break
            if joined:
                break
    return out


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    """Whether crops (y0, y1, x0, x1) share a pixel."""
    return a[0] < b[1] and b[0] < a[1] and a[2] < b[3] and b[2] < a[3]


def _merge_windows(windows: list[tuple[int, int, int, int]]) -> list[tuple[int, int, int, int]]:
    """Crops (y0, y1, x0, x1) with overlapping ones joined into their bounding crop (fewer, larger
    renders where objects overlap; each pixel is drawn the same whichever crop holds it)."""
    merged: list[tuple[int, int, int, int]] = []
    for w in windows:
        if w[0] >= w[1] or w[2] >= w[3]:
            continue
        while True:
            for i, m in enumerate(merged):
                if w[0] < m[1] and m[0] < w[1] and w[2] < m[3] and m[2] < w[3]:
                    w = (min(w[0], m[0]), max(w[1], m[1]), min(w[2], m[2]), max(w[3], m[3]))
                    del merged[i]
                    break
            else:
                break
        merged.append(w)
    return merged


def _dilate(mask: np.ndarray) -> np.ndarray:
    """`mask` grown by one pixel (8-neighbourhood)."""
    padded = np.pad(mask, 1)
    h, w = mask.shape
    out = np.zeros_like(mask)
    for dy in (0, 1, 2):
        for dx in (0, 1, 2):
            out |= padded[dy : dy + h, dx : dx + w]
    return out


_FIT_CACHE = 16  # distinct start frames whose fitted poses are remembered


@dataclass(frozen=True)
class _StartScene:
    frame: np.ndarray  # uint8 (96, 96, 3)
    agent: tuple[float, float]
    block: tuple[float, float, float]
    block_px: np.ndarray  # bool (96, 96): pixels the block's start drawing may touch
    agent_px: np.ndarray  # the same for the agent


class _DrawCache:
    """Each rollout's last drawn frame and the poses it shows (`PushTRunner._draw_rows`)."""

    def __init__(self, k: int) -> None:
        self.frames = np.zeros((k, 96, 96, 3), np.uint8)
        self.t = np.full(k, -2, np.int64)  # the action count the frame was drawn at (-2: none)
        self.agent: list[tuple[float, float]] = [(0.0, 0.0)] * k
        self.agent_at: list[tuple[int, int]] = [(0, 0)] * k
        self.block: list[tuple[float, float, float]] = [(0.0, 0.0, 0.0)] * k
        self.agent_moved = [False] * k
        self.block_moved = [False] * k


class BlasDynamics:
    """`BlockDynamics.change` with its products through BLAS (rows no longer bitwise independent
    of their batch); everything else is the wrapped network's."""

    def __init__(self, dynamics: BlockDynamics) -> None:
        self.exact = dynamics
        self.memory_size = dynamics.memory_size

    def change(self, feats: np.ndarray) -> np.ndarray:
        from dream.engine.models.pusht.dynamics import ANGLE_SCALE, POS_SCALE

        h = np.ascontiguousarray(feats, np.float64)
        layers = self.exact.layers
        for i, (w, b) in enumerate(layers):
            h = h @ w + b
            if i < len(layers) - 1:
                h = h / (1.0 + np.exp(-h))
        return h * np.array([POS_SCALE, POS_SCALE, ANGLE_SCALE])


class PushTState:
    """K pusht-96 rollouts between two `advance` calls: their start scenes and current poses."""

    def __init__(self, scenes: list[_StartScene], row_start: np.ndarray, poses: PoseState) -> None:
        self.scenes = scenes  # one per distinct start frame
        self.row_start = row_start  # (K,) the scene each rollout started from
        self.poses = poses
        self.t = 0  # actions applied so far
        self.drawn: _DrawCache | None = None  # the last frames drawn, the base of the next ones
        self.dynamics: BlasDynamics | None = None  # set by `PushTRunner.inexact`

    def start_frames(self) -> np.ndarray:
        """uint8 (K, 1, 96, 96, 3): frame 0 of every rollout."""
        return np.stack([self.scenes[i].frame for i in self.row_start])[:, None]
