"""`dream eval --task policies`: does the world model rank policies as the simulator does?

A family of frame-only Push-T policies (`dream.eval.policies`) runs from the same
test-split start states (``env.reset(seed)`` for seeds 2 000 000 …, the simulator's own
frames) for up to `steps` steps, once in gym-pusht and once in `pusht-96` through
`dream.envs.WorldModelVectorEnv` (all start states of a policy as the rows of one fused
env). In the simulator an episode's coverage is the simulator's own; in the model it is
`dream.envs.pusht.PushTCoverage`, read off the predicted frames. Both end an episode at
gym-pusht's success (coverage > 0.95) or after `steps` steps.

Per policy: success rate and mean final coverage in each world, and how often the two
worlds agree on an episode's outcome. Across the family, between the simulator's and
the model's per-policy figures: Pearson r, Spearman ρ and the mean maximum rank
violation (MMRV, as SIMPLER defines it and DreamDojo reports it: for each policy, the
largest simulator-score gap to another policy that the model orders the other way,
averaged over policies; 0 when the model orders every pair as the simulator does).

To tell why the model and the simulator disagree on a policy, the simulator's own
actions of every episode are also replayed open loop in the model (embedded engine
only): the block's position and angle error after 10, 30 and 100 actions, per policy,
is what the model mispredicts about that policy's kind of pushes.

The run is a folder: ``policy_eval.json`` (configuration, per-policy figures, the
correlations, wall times), ``episodes/<world>/<policy>.json`` (every episode's coverage
curve; the simulator's also its actions and block poses), ``episodes/replay/<policy>.json``
and ``report.md``. It resumes: a (world, policy) whose file was written with the
same configuration is not run again, and the simulator's files do not depend on the
model, so re-running with another model redoes only the model's half. ``dream view DIR``
shows the run.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "DEFAULT_POLICIES",
    "PolicyEvalResult",
    "mmrv",
    "pearson",
    "run_policy_eval",
    "spearman",
    "write_video",
]

RESULT_FILE = "policy_eval.json"
FORMAT = "dream-policy-eval-1"
POLICY_VERSION = 1  # bump when a policy's behaviour changes: stored episodes are then redone
WORLDS = ("simulator", "model")
SUCCESS = 0.95


# --------------------------------------------------------------------------- metrics


def pearson(x: Sequence[float], y: Sequence[float]) -> float:
    """Pearson's r of two equal-length sequences (NaN when either is constant)."""
    a, b = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if a.shape != b.shape or a.ndim != 1 or len(a) < 2:
        raise ValueError(f"pearson needs two equal 1-D sequences of at least 2; got {a.shape} and {b.shape}")
    a, b = a - a.mean(), b - b.mean()
    denom = math.sqrt(float(a @ a) * float(b @ b))
    return float(a @ b) / denom if denom > 0 else float("nan")


def _ranks(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n, ties given their average rank."""
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x))
    sorted_x = x[order]
    i = 0
    while i < len(x):
        j = i
        while j + 1 < len(x) and sorted_x[j + 1] == sorted_x[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's ρ: Pearson's r of the ranks (ties averaged)."""
    return pearson(_ranks(np.asarray(x, np.float64)), _ranks(np.asarray(y, np.float64)))


def mmrv(predicted: Sequence[float], truth: Sequence[float]) -> float:
    """Mean maximum rank violation of `predicted` scores against `truth` (SIMPLER's definition).

    For each policy i: the largest |truth_i − truth_j| over the policies j that the two
    orders disagree on, ``(predicted_i > predicted_j) != (truth_i > truth_j)`` (strict, so
    a tie on one side and an order on the other counts); averaged over i.
    """
    p, t = np.asarray(predicted, np.float64), np.asarray(truth, np.float64)
    if p.shape != t.shape or p.ndim != 1 or len(p) < 2:
        raise ValueError(f"mmrv needs two equal 1-D sequences of at least 2; got {p.shape} and {t.shape}")
    violated = (p[:, None] > p[None, :]) != (t[:, None] > t[None, :])
    gaps = np.where(violated, np.abs(t[:, None] - t[None, :]), 0.0)
    return float(gaps.max(axis=1).mean())


# --------------------------------------------------------------------------- records


@dataclass
class Episode:
    """One episode of one policy in one world."""

    seed: int
    success: bool
    steps: int  # actions taken (≤ the step limit; fewer when it succeeded)
    final_coverage: float
    coverage: list[float]  # after 0, 1, …, steps actions
    # the simulator's episodes also keep what was done and where the block went (for the replay)
    actions: list[list[float]] | None = None  # (steps, 2) agent targets
    blocks: list[list[float]] | None = None  # (steps + 1, 3) the block's centre of gravity and angle

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"seed": self.seed, "success": self.success, "steps": self.steps,
                               "final_coverage": round(self.final_coverage, 5),
                               "coverage": [round(c, 5) for c in self.coverage]}
        if self.actions is not None:
            out["actions"] = [[round(float(v), 3) for v in a] for a in self.actions]
        if self.blocks is not None:
            out["blocks"] = [[round(float(v), 4) for v in b] for b in self.blocks]
        return out

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Episode:
        return cls(int(d["seed"]), bool(d["success"]), int(d["steps"]), float(d["final_coverage"]),
                   [float(c) for c in d["coverage"]], d.get("actions"), d.get("blocks"))


@dataclass
class PolicyRun:
    """One policy's episodes in one world, and what running them cost."""

    world: str
    policy: str
    episodes: list[Episode]
    wall_s: float  # the whole run: policy, world and coverage
    world_s: float  # inside the world's step (and reset) calls only
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def success_rate(self) -> float:
        return float(np.mean([e.success for e in self.episodes]))

    @property
    def mean_final_coverage(self) -> float:
        return float(np.mean([e.final_coverage for e in self.episodes]))

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "world": self.world, "policy": self.policy, "config": self.config,
                "wall_s": round(self.wall_s, 3), "world_s": round(self.world_s, 3),
                "episodes": [e.to_json() for e in self.episodes]}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> PolicyRun:
        return cls(d["world"], d["policy"], [Episode.from_json(e) for e in d["episodes"]], float(d["wall_s"]),
                   float(d["world_s"]), dict(d.get("config") or {}))


@dataclass
class PolicyEvalResult:
    """Both worlds' runs of every policy, and how well the model's ranking matches the simulator's."""

    out_dir: Path
    config: dict[str, Any]
    runs: dict[tuple[str, str], PolicyRun]  # (world, policy) -> run
    policies: list[str]
    replays: dict[str, dict[str, Any]] = field(default_factory=dict)  # policy -> `run_replay`'s record

    def rates(self, world: str, what: str = "success") -> list[float]:
        attr = "success_rate" if what == "success" else "mean_final_coverage"
        return [getattr(self.runs[(world, p)], attr) for p in self.policies]

    def correlations(self) -> dict[str, dict[str, float | None]]:
        """Pearson r, Spearman ρ and MMRV of the model's per-policy scores against the simulator's
        (None where undefined: a correlation with a constant side)."""
        out = {}
        for what in ("success", "coverage"):
            sim, model = self.rates("simulator", what), self.rates("model", what)
            values = {"pearson": pearson(sim, model), "spearman": spearman(sim, model), "mmrv": mmrv(model, sim)}
            out[what] = {k: (v if math.isfinite(v) else None) for k, v in values.items()}
        return out

    def agreement(self, policy: str) -> float:
        """Share of start states whose outcome (success or not) is the same in both worlds."""
        a, b = self.runs[("simulator", policy)].episodes, self.runs[("model", policy)].episodes
        return float(np.mean([x.success == y.success for x, y in zip(a, b, strict=True)]))

    def summary(self) -> dict[str, Any]:
        rows = []
        for p in self.policies:
            s, m = self.runs[("simulator", p)], self.runs[("model", p)]
            rows.append({
                "policy": p, "simulator_success": s.success_rate, "model_success": m.success_rate,
                "simulator_coverage": s.mean_final_coverage, "model_coverage": m.mean_final_coverage,
                "agreement": self.agreement(p), "simulator_wall_s": s.wall_s, "model_wall_s": m.wall_s,
                "simulator_world_s": s.world_s, "model_world_s": m.world_s,
                "simulator_steps": float(np.mean([e.steps for e in s.episodes])),
                "model_steps": float(np.mean([e.steps for e in m.episodes])),
                "replay": replay_summary(self.replays[p]) if p in self.replays else None,
            })
        walls = {w: sum(self.runs[(w, p)].wall_s for p in self.policies) for w in WORLDS}
        world_s = {w: sum(self.runs[(w, p)].world_s for p in self.policies) for w in WORLDS}
        return {"format": FORMAT, "config": self.config, "policies": rows, "correlations": self.correlations(),
                "wall_s": walls, "world_s": world_s}

    def to_markdown(self) -> str:
        cfg = self.config
        lines = [
            f"Policy evaluation: {len(self.policies)} policies × {cfg['starts']} test-split start states "
            f"(seeds {cfg['seed_offset']}…) × up to {cfg['steps']} steps; simulator gym-pusht, model {cfg['model']}.",
            "",
            "| policy | simulator success | model success | simulator mean final coverage | model mean final coverage "
            "| same outcome | mean steps (sim / model) | open-loop block error after 30 / 100 actions (px, °) |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for row in self.summary()["policies"]:
            replay = row["replay"] or {}

            def err(h: str, replay: dict[str, Any] = replay) -> str:
                e = replay.get(h) or {}
                return "–" if e.get("position_px") is None else f"{e['position_px']:.1f} px, {e['angle_deg']:.1f}°"

            lines.append(
                f"| {row['policy']} | {row['simulator_success']:.2f} | {row['model_success']:.2f} | "
                f"{row['simulator_coverage']:.3f} | {row['model_coverage']:.3f} | {row['agreement']:.2f} | "
                f"{row['simulator_steps']:.0f} / {row['model_steps']:.0f} | {err('30')} / {err('100')} |"
            )
        corr = self.correlations()
        lines += ["", "| across the family | Pearson r | Spearman ρ | MMRV |", "|---|---:|---:|---:|"]
        for what, label in (("success", "success rate"), ("coverage", "mean final coverage")):
            c = {k: "undefined" if v is None else f"{v:.3f}" for k, v in corr[what].items()}
            lines.append(f"| {label} | {c['pearson']} | {c['spearman']} | {c['mmrv']} |")
        s = self.summary()
        lines += ["", f"Wall time: simulator {s['wall_s']['simulator']:.0f} s ({s['world_s']['simulator']:.0f} s in "
                  f"env.step), model {s['wall_s']['model']:.0f} s ({s['world_s']['model']:.0f} s in env.step); "
                  "the rest is the policies reading frames."]
        return "\n".join(lines)


# --------------------------------------------------------------------------- running


DEFAULT_POLICIES = (
    "pusher", "quick-pusher", "cautious-pusher", "sloppy-pusher", "pusher-noise10", "pusher-noise20", "pusher-noise30",
    "translator", "learned", "seek-push", "random-walk",
)


def _model_identity(client: Any, spec: str) -> str:
    """What the model's half of the run depends on: the weights' digest when they are local (and,
    for pusht-96, the rules its network runs under: changing them changes every rollout)."""
    if client.is_local:
        engine = client.engine
        status = engine.weights_status(spec)
        if status.available and status.location and Path(status.location).is_file():
            digest = hashlib.sha256(Path(status.location).read_bytes()).hexdigest()[:16]
            from dream.engine import specs

            if specs.get(spec).runner == "pusht":
                from dream.engine.models.pusht.dynamics import rules_tag

                return f"{spec}@{digest}+{rules_tag()}"
            return f"{spec}@{digest}"
        return f"{spec}@embedded"
    return f"{spec}@{client.base_url}"


def start_states(starts: int, seed_offset: int) -> tuple[list[int], np.ndarray]:
    """The test-split start states: seeds and the simulator's frames after ``env.reset(seed)``."""
    from dream.sim.pusht import PushTSim

    sim = PushTSim()
    seeds = [seed_offset + i for i in range(starts)]
    frames = np.stack([sim.reset(s) for s in seeds])
    sim.close()
    return seeds, frames


def _progress(total: int, desc: str, enabled: bool) -> Any:
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc=desc, unit="step", leave=False)


def run_simulator(policy_name: str, seeds: Sequence[int], steps: int, *, progress: bool = False,
                  record: Callable[[int, int, np.ndarray], None] | None = None) -> PolicyRun:
    """Every start state of `seeds` in its own gym-pusht env, stepped in lockstep by one policy object."""
    from dream.eval.policies import make_policy
    from dream.sim.pusht import PushTSim

    t0 = time.perf_counter()
    world = 0.0
    policy = make_policy(policy_name)
    sims = [PushTSim() for _ in seeds]
    w0 = time.perf_counter()
    frames = np.stack([sim.reset(s) for sim, s in zip(sims, seeds, strict=True)])
    world += time.perf_counter() - w0
    coverage = [[float(sim.env._get_coverage())] for sim in sims]
    taken: list[list[list[float]]] = [[] for _ in seeds]
    blocks = [[_block_pose(sim)] for sim in sims]
    success = [False] * len(seeds)
    policy.start(seeds)
    live = list(range(len(seeds)))
    bar = _progress(steps, f"{policy_name} · simulator", progress)
    for t in range(steps):
        actions = policy.act(frames[live], live)
        w0 = time.perf_counter()
        for row, action in zip(live, actions, strict=True):
            obs, _, _, _, info = sims[row].env.step(np.asarray(action, np.float32))
            frames[row] = obs["pixels"]
            coverage[row].append(float(info["coverage"]))
            success[row] = bool(info["is_success"])
        world += time.perf_counter() - w0
        for row, action in zip(live, actions, strict=True):
            taken[row].append([float(action[0]), float(action[1])])
            blocks[row].append(_block_pose(sims[row]))
        if record is not None:
            for row in live:
                record(row, t + 1, frames[row])
        live = [row for row in live if not success[row]]
        if bar is not None:
            bar.update(1)
        if not live:
            break
    if bar is not None:
        bar.close()
    for sim in sims:
        sim.close()
    episodes = [Episode(s, success[i], len(coverage[i]) - 1, coverage[i][-1], coverage[i], taken[i], blocks[i])
                for i, s in enumerate(seeds)]
    return PolicyRun("simulator", policy_name, episodes, time.perf_counter() - t0, world)


def _block_pose(sim: Any) -> list[float]:
    state = sim.state()
    return [float(state.block_pos[0]), float(state.block_pos[1]), float(state.block_angle)]


REPLAY_HORIZONS = (10, 30, 100)


def run_replay(sim_run: PolicyRun, engine: Any, spec: str, start_frames: np.ndarray) -> dict[str, Any]:
    """The simulator's own actions of a policy replayed open loop in the model (no feedback): how far
    the model's block is from the simulator's after h actions (px, degrees), per episode and horizon.

    What the model gets wrong about the pushes this policy makes, apart from what its
    closed-loop episodes then do with it. Needs the embedded engine (the model's readout).
    """
    t0 = time.perf_counter()
    episodes = [e for e in sim_run.episodes if e.actions]
    out: dict[str, list[list[float] | None]] = {str(h): [] for h in REPLAY_HORIZONS}
    for ep in episodes:
        frame = start_frames[[e.seed for e in sim_run.episodes].index(ep.seed)]
        steps = engine.begin(frame, spec=spec)
        acts = np.asarray(ep.actions, np.float32)
        truth = np.asarray(ep.blocks, np.float64)
        done = 0
        for h in REPLAY_HORIZONS:
            if h > len(acts):
                out[str(h)].append(None)
                continue
            steps.advance(acts[None, done:h], draw=False)
            done = h
            model = steps.readout()["block"][0]
            d_angle = abs(math.degrees(math.remainder(model[2] - truth[h, 2], 2 * math.pi)))
            out[str(h)].append([round(float(np.hypot(*(model[:2] - truth[h, :2]))), 3), round(d_angle, 3)])
    return {"horizons": list(REPLAY_HORIZONS), "seeds": [e.seed for e in episodes], "errors": out,
            "wall_s": round(time.perf_counter() - t0, 3)}


def replay_summary(replay: dict[str, Any]) -> dict[str, dict[str, float | int | None]]:
    """Median block position (px) and angle (degrees) error per horizon over the episodes that long."""
    summary: dict[str, dict[str, float | int | None]] = {}
    for h, errs in replay["errors"].items():
        got = np.array([e for e in errs if e is not None], np.float64).reshape(-1, 2)
        summary[h] = {"episodes": len(got), "position_px": float(np.median(got[:, 0])) if len(got) else None,
                      "angle_deg": float(np.median(got[:, 1])) if len(got) else None}
    return summary


def run_model(policy_name: str, model: Any, seeds: Sequence[int], start_frames: np.ndarray, steps: int, *,
              progress: bool = False, record: Callable[[int, int, np.ndarray], None] | None = None) -> PolicyRun:
    """Every start state as a row of one `WorldModelVectorEnv` (one fused engine call per step)."""
    from dream.envs.env import WorldModelVectorEnv
    from dream.eval.policies import make_policy

    t0 = time.perf_counter()
    policy = make_policy(policy_name)
    n = len(seeds)
    w0 = time.perf_counter()
    from dream.envs.pusht import PushTCoverage

    # coverage read off the predicted frames (as over HTTP), not the model's poses: the published
    # figures were measured so, and this way the model is judged by what it shows
    env = WorldModelVectorEnv(model, n, max_episode_steps=steps, start_frames=list(start_frames),
                              reward=PushTCoverage(source="frames"))
    obs, info = env.reset(options={"start_frames": list(start_frames)})
    world = time.perf_counter() - w0
    coverage = [[float(info["coverage"][i])] for i in range(n)]
    success = [False] * n
    ended = [False] * n
    policy.start(seeds)
    last = np.full((n, 2), 256.0, np.float32)
    live = list(range(n))
    bar = _progress(steps, f"{policy_name} · model", progress)
    for _t in range(steps):
        last[live] = policy.act(obs[live], live)
        w0 = time.perf_counter()
        obs, _, terminated, truncated, info = env.step(last)  # ended rows start over (ignored): their action is moot
        world += time.perf_counter() - w0
        for row in live:
            coverage[row].append(float(info["coverage"][row]))
            success[row] = bool(terminated[row])
            ended[row] = bool(terminated[row] or truncated[row])
        if record is not None:
            for row in live:
                record(row, len(coverage[row]) - 1, obs[row])
        live = [row for row in live if not ended[row]]
        if bar is not None:
            bar.update(1)
        if not live:
            break
    if bar is not None:
        bar.close()
    env.close()
    episodes = [Episode(s, success[i], len(coverage[i]) - 1, coverage[i][-1], coverage[i]) for i, s in enumerate(seeds)]
    return PolicyRun("model", policy_name, episodes, time.perf_counter() - t0, world)


def _policy_weights(name: str) -> str | None:
    """The digest of a policy's shipped weights (None for the scripted ones)."""
    from importlib import resources

    from dream.eval.policies import POLICIES, LearnedPolicy

    if POLICIES.get(name) is not LearnedPolicy:
        return None
    data = (resources.files("dream.eval") / "_policies" / LearnedPolicy.WEIGHTS).read_bytes()
    return hashlib.sha256(data).hexdigest()[:16]


def _load_run(path: Path, config: dict[str, Any]) -> PolicyRun | None:
    if not path.is_file():
        return None
    try:
        run = PolicyRun.from_json(json.loads(path.read_text()))
    except (ValueError, KeyError, TypeError):
        return None
    return run if run.config == config else None


def _save_json(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=1, allow_nan=False))
    tmp.replace(path)


def run_policy_eval(
    out_dir: str | Path,
    *,
    policies: Sequence[str] | None = None,
    starts: int = 50,
    steps: int = 300,
    seed_offset: int | None = None,
    client: Any = None,
    spec: str = "pusht-96",
    video_dir: str | Path | None = None,
    video_policy: str = "pusher",
    video_start: int = 0,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> PolicyEvalResult:
    """Run (or resume) the policy evaluation into `out_dir`; see the module docstring."""
    import dream
    from dream.eval.policies import policy_names
    from dream.sim.pusht import TEST_SEED_OFFSET

    names = list(policies or DEFAULT_POLICIES)
    unknown = [p for p in names if p not in policy_names()]
    if unknown:
        raise ValueError(f"unknown policies {unknown}; known: {', '.join(policy_names())}")
    if len(names) < 2:
        raise ValueError(f"a ranking needs at least 2 policies; got {names}")
    if starts < 1 or steps < 1:
        raise ValueError(f"starts and steps must be positive; got starts={starts}, steps={steps}")
    say = log or (lambda _msg: None)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    client = client or dream.Client()
    model = client.models.get(spec)
    offset = TEST_SEED_OFFSET if seed_offset is None else int(seed_offset)
    seeds, frames = start_states(starts, offset)
    base = {"starts": starts, "steps": steps, "seed_offset": offset, "policy_version": POLICY_VERSION}
    world_config = {"simulator": {**base, "world": "gym-pusht 0.1.8", "records": "actions, block poses"},
                    "model": {**base, "world": _model_identity(client, spec)}}
    runs: dict[tuple[str, str], PolicyRun] = {}
    replays: dict[str, dict[str, Any]] = {}
    for name in names:
        # a policy with learned weights is what its weights are: a new file redoes its episodes
        learned = _policy_weights(name)
        policy_config = {w: {**c, "policy_weights": learned} if learned else c for w, c in world_config.items()}
        replay_config = {**policy_config["model"], "replay_of": policy_config["simulator"]}
        for world in WORLDS:
            path = out / "episodes" / world / f"{name}.json"
            run = _load_run(path, policy_config[world])
            if run is not None:
                say(f"{name} · {world}: done before ({run.success_rate:.2f} success), kept")
            else:
                if world == "simulator":
                    run = run_simulator(name, seeds, steps, progress=progress)
                else:
                    run = run_model(name, model, seeds, frames, steps, progress=progress)
                run.config = policy_config[world]
                stored = run.to_json()
                _save_json(path, stored)
                run = PolicyRun.from_json(stored)  # as stored: a resumed run reports the same figures
                say(f"{name} · {world}: success {run.success_rate:.2f}, mean final coverage "
                    f"{run.mean_final_coverage:.3f} ({run.wall_s:.0f} s)")
            runs[(world, name)] = run
        if client.is_local:  # the simulator's actions replayed open loop in the model (what it mispredicts)
            path = out / "episodes" / "replay" / f"{name}.json"
            stored = json.loads(path.read_text()) if path.is_file() else None
            if stored is None or stored.get("config") != replay_config:
                stored = {"config": replay_config, **run_replay(runs[("simulator", name)], client.engine, spec, frames)}
                _save_json(path, stored)
            replays[name] = stored
    config = {**base, "model": world_config["model"]["world"], "policies": names}
    result = PolicyEvalResult(out, config, runs, names, replays)
    if video_dir is not None:
        if video_policy not in policy_names():
            raise ValueError(f"unknown --video-policy {video_policy!r}; known: {', '.join(policy_names())}")
        if not 0 <= video_start < starts:
            raise ValueError(f"--video-start must be in 0..{starts - 1}; got {video_start}")
        path = write_video(Path(video_dir), video_policy, model, seeds[video_start], frames[video_start], steps)
        say(f"wrote {path}")
    summary = result.summary()
    if video_dir is not None:
        summary["videos"] = sorted(str(p.resolve()) for p in Path(video_dir).glob("*.gif"))
    _save_json(out / RESULT_FILE, summary)
    (out / "report.md").write_text(result.to_markdown() + "\n")
    return result


# --------------------------------------------------------------------------- the picture


def _episode_frames(policy: str, model: Any, seed: int, frame: np.ndarray, steps: int) -> dict[str, Any]:
    """One start state's episode in both worlds: frames and coverage curves."""
    sims: dict[int, list[np.ndarray]] = {0: [frame]}
    mods: dict[int, list[np.ndarray]] = {0: [frame]}
    sim_run = run_simulator(policy, [seed], steps, record=lambda row, t, f: sims[row].append(f.copy()))
    model_run = run_model(policy, model, [seed], frame[None], steps, record=lambda row, t, f: mods[row].append(f.copy()))
    return {"simulator": (sims[0], sim_run.episodes[0]), "model": (mods[0], model_run.episodes[0])}


def write_video(video_dir: Path, policy: str, model: Any, seed: int, frame: np.ndarray, steps: int) -> Path:
    """A GIF of one start state: the simulator's episode (left) and the imagined one (right) side by side,
    under them both coverage curves up to the current step, with gym-pusht's 0.95 success line."""
    from PIL import Image, ImageDraw

    worlds = _episode_frames(policy, model, seed, frame, steps)
    (sim_frames, sim_ep), (mod_frames, mod_ep) = worlds["simulator"], worlds["model"]
    length = max(len(sim_frames), len(mod_frames))
    scale, pad, plot_h, head = 3, 10, 130, 34
    side = 96 * scale
    w = 2 * side + 3 * pad
    h = head + side + pad + plot_h + 40
    blue, orange, green, grey = (40, 110, 200), (220, 90, 30), (60, 160, 60), (120, 120, 120)
    top = head + side + pad  # the coverage plot's box
    left, right = pad + 30, w - pad

    def y_of(c: float) -> float:
        return top + plot_h - c * plot_h

    span = max(sim_ep.steps, mod_ep.steps, 1)  # the longer episode fills the plot

    def x_of(step: int) -> float:
        return left + (right - left) * step / span

    images = []
    for t in range(0, length, 2 if length > 200 else 1):
        img = Image.new("RGB", (w, h), (255, 255, 255))
        draw = ImageDraw.Draw(img)
        for k, (title, frames, ep, colour) in enumerate((("gym-pusht (simulator)", sim_frames, sim_ep, blue),
                                                         ("pusht-96 (imagined)", mod_frames, mod_ep, orange))):
            i = min(t, len(frames) - 1)
            x0 = pad + k * (side + pad)
            img.paste(Image.fromarray(frames[i]).resize((side, side), Image.Resampling.NEAREST), (x0, head))
            draw.rectangle([x0 - 1, head - 1, x0 + side, head + side], outline=colour)
            state = "  SUCCESS" if ep.success and t >= ep.steps else ("  (ended)" if t >= ep.steps else "")
            draw.text((x0, 4), title, fill=colour)
            draw.text((x0, 18), f"step {i}   coverage {ep.coverage[i]:.3f}{state}", fill=colour)
        draw.rectangle([left, top, right, top + plot_h], outline=(200, 200, 200))
        for c, label in ((0.0, "0"), (0.5, "0.5"), (1.0, "1")):
            draw.text((pad, y_of(c) - 6), label, fill=grey)
        draw.line([left, y_of(SUCCESS), right, y_of(SUCCESS)], fill=green)
        draw.text((right - 80, y_of(SUCCESS) + 2), "success 0.95", fill=green)
        for ep, colour in ((sim_ep, blue), (mod_ep, orange)):
            pts = [(x_of(i), y_of(c)) for i, c in enumerate(ep.coverage[: min(t, ep.steps) + 1])]
            if len(pts) > 1:
                draw.line(pts, fill=colour, width=2)
        draw.line([x_of(t), top, x_of(t), top + plot_h], fill=(190, 190, 190))
        draw.text((left, top + plot_h + 4), f"steps 0 … {span}", fill=grey)
        draw.text((left, top + plot_h + 20), "coverage of the goal zone: ", fill=(60, 60, 60))
        draw.text((left + 160, top + plot_h + 20), "gym-pusht", fill=blue)
        draw.text((left + 225, top + plot_h + 20), "pusht-96", fill=orange)
        draw.text((left + 290, top + plot_h + 20), f"· policy {policy}, start seed {seed}", fill=(60, 60, 60))
        images.append(img)
    video_dir.mkdir(parents=True, exist_ok=True)
    path = video_dir / f"{policy}_seed{seed}.gif"
    images[0].save(path, save_all=True, append_images=images[1:], duration=100, loop=0, optimize=True)
    return path
