"""`dream eval --task plan`: closed-loop goal reaching in gym-pusht with `dream.plan`.

DINO-WM's protocol on the test split: a pair is a start state ``reset(seed)`` (seeds
2 000 000 …) and a goal state reached from it by `GOAL_STEPS` (25) actions of the
scripted seek-and-push policy (`dream.sim.pusht`, so every goal is reachable); the goal
image is the simulator's frame there. A controller sees frames only and gets `BUDGET`
(50) simulator steps; a pair succeeds once the agent's and the block's positions are
within 20 workspace units of the goal's (norm over the four numbers) and the block's
angle within 20° (the episode ends there, as a gym episode ends at success).

Controllers on the same pairs:

* ``model``: `MPC(CEM(pusht-96, goal_image_cost(goal)))` at the spec's defaults;
* ``oracle``: the same planner and cost with the simulator as its model
  (`dream.plan.SimulatorModel`: candidates simulated from the true state);
* ``random``: uniform random targets in the workspace;
* ``nothing``: the agent told to stay where the start frame shows it.

`run_gym_task` runs gym-pusht's own task instead: the fixed goal zone, success once the
coverage exceeds 0.95 within 300 steps, with `pusht_task_cost` (the block's pose read
off frames against the goal zone's).

Results go to a run folder, one JSON line per episode, so a run resumes where it stopped.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "BUDGET",
    "CONTROLLERS",
    "GOAL_STEPS",
    "Pair",
    "make_pair",
    "plan_markdown",
    "pusht_task_cost",
    "run_gym_task",
    "run_plan_eval",
    "summarise",
]

GOAL_STEPS = 25
BUDGET = 50
SUCCESS_POSITION = 20.0  # workspace px, norm over agent x, y and block x, y
SUCCESS_ANGLE = 20.0  # degrees
CONTROLLERS = ("model", "oracle", "random", "nothing")
GYM_STEPS = 300


@dataclass(frozen=True)
class Pair:
    seed: int
    start: np.ndarray  # uint8 (96, 96, 3)
    goal: np.ndarray  # uint8 (96, 96, 3): the simulator's frame at the goal state
    goal_agent: np.ndarray  # (2,)
    goal_block: np.ndarray  # (3,) cog x, y, angle


def make_pair(seed: int, sim: Any) -> Pair:
    """The start state of `seed` and the goal 25 scripted seek-push steps from it."""
    from dream.sim.pusht import generate_episode

    episode = generate_episode(seed, GOAL_STEPS, policy="seek_push", sim=sim)
    state = sim.state()
    return Pair(int(seed), episode.frames[0], episode.frames[-1], state.agent_pos.copy(),
                np.array([*state.block_pos, state.block_angle]))


def goal_errors(sim: Any, pair: Pair) -> tuple[float, float]:
    """(position error over agent and block x, y, in workspace px; block angle error in degrees)."""
    st = sim.state()
    pos = math.sqrt(float(np.sum((st.agent_pos - pair.goal_agent) ** 2) + np.sum((st.block_pos - pair.goal_block[:2]) ** 2)))
    angle = abs(math.degrees(math.remainder(st.block_angle - pair.goal_block[2], 2 * math.pi)))
    return pos, angle


def _controller(kind: str, pair: Pair, sim: Any, model: Any, seed: int, options: dict[str, Any]) -> Any:
    from dream.plan import CEM, MPC, SimulatorModel, goal_image_cost

    if kind in ("model", "oracle"):
        target = model if kind == "model" else SimulatorModel(sim)
        options = dict(options)
        replan_every = options.pop("replan_every", None)
        cost_options = options.pop("cost", {})
        return MPC(CEM(target, goal_image_cost(pair.goal, **cost_options), seed=seed, **options), replan_every=replan_every)
    if kind == "random":
        rng = np.random.default_rng([0xA11D, seed])
        return lambda frame: rng.uniform(0.0, 512.0, 2).astype(np.float32)
    if kind == "nothing":
        from dream.engine.models.pusht.posefit import read_scene

        stay = read_scene(pair.start).agent[0].astype(np.float32)
        return lambda frame: stay
    raise ValueError(f"unknown controller {kind!r}; known: {', '.join(CONTROLLERS)}")


def run_episode(kind: str, pair: Pair, sim: Any, model: Any, *, budget: int = BUDGET,
                options: dict[str, Any] | None = None, record: bool = False) -> dict[str, Any]:
    """One controller on one pair; a JSON-able record (frames and plans too when `record`)."""
    from dream.plan import MPC

    controller = _controller(kind, pair, sim, model, pair.seed, options or {})
    frame = sim.reset(pair.seed)
    t0 = time.perf_counter()
    success_at = None
    frames, imagined, actions, states = [frame], [], [], [_pose(sim)]
    first_errors = None
    for t in range(budget):
        action = controller.act(frame) if isinstance(controller, MPC) else controller(frame)
        if record and isinstance(controller, MPC) and len(imagined) < len(controller.plans):
            imagined.append(controller.plans[-1].frames)
        frame = sim.step(action)
        frames.append(frame)
        actions.append(np.asarray(action, np.float32))
        states.append(_pose(sim))
        pos, angle = goal_errors(sim, pair)
        if t == 4:
            st = sim.state()
            first_errors = [float(v) for v in (*st.agent_pos, *st.block_pos, st.block_angle)]
        if pos < SUCCESS_POSITION and angle < SUCCESS_ANGLE:
            success_at = t + 1
            break
    pos, angle = goal_errors(sim, pair)
    out: dict[str, Any] = {
        "controller": kind, "seed": pair.seed, "success": success_at is not None, "steps": success_at or budget,
        "position_error": pos, "angle_error_deg": angle, "wall_s": time.perf_counter() - t0,
        "goal_agent": pair.goal_agent.tolist(), "goal_block": pair.goal_block.tolist(), "state_after_5": first_errors,
    }
    if isinstance(controller, MPC):
        out["plan_wall_s"] = [p.wall_s for p in controller.plans]
        out["plan_engine_s"] = [p.engine_s for p in controller.plans]
        out["rollouts_per_plan"] = [p.rollouts for p in controller.plans]
        out["plan_costs"] = [p.cost for p in controller.plans]
    if record:
        out["frames"] = np.stack(frames)
        out["imagined"] = imagined
        out["actions"] = np.stack(actions)
        out["states"] = np.stack(states)  # agent x, y, block cog x, y, angle after each step
    return out


def _pose(sim: Any) -> np.ndarray:
    st = sim.state()
    return np.array([*st.agent_pos, *st.block_pos, st.block_angle])


def diagnose(seed: int, *, every: int = 5, client: Any = None, options: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """What the model got wrong on a pair: the model's episode replayed, and at each replan the
    model's prediction of the `every` actions then executed, from the frame it planned on,
    against what the simulator did (block position error in px, angle error in degrees, and
    the distance of the block's centre of gravity to the nearest wall)."""
    import dream
    from dream.sim.pusht import PushTSim

    sim = PushTSim()
    pair = make_pair(seed, sim)
    model = (client or dream.Client()).models.get("pusht-96")
    rec = run_episode("model", pair, sim, model, options=options, record=True)
    engine = model._client.engine
    out = []
    for t0 in range(0, len(rec["actions"]) - every + 1, every):
        rollouts = engine.begin(rec["frames"][t0], k=1, spec="pusht-96")
        rollouts.advance(rec["actions"][None, t0 : t0 + every], draw=False)
        predicted = rollouts.readout()["block"][0]
        true = rec["states"][t0 + every][2:]
        moved = float(np.hypot(*(rec["states"][t0 + every][2:4] - rec["states"][t0][2:4])))
        out.append({"step": t0, "block_error_px": float(np.hypot(*(predicted[:2] - true[:2]))),
                    "angle_error_deg": abs(math.degrees(math.remainder(predicted[2] - true[2], 2 * math.pi))),
                    "block_moved_px": moved, "cog_wall_distance_px": float(min(true[0], true[1], 512 - true[0], 512 - true[1]))})
    return out


def _done(path: Path) -> set[tuple[str, int]]:
    if not path.exists():
        return set()
    out = set()
    for line in path.read_text().splitlines():
        if line.strip():
            rec = json.loads(line)
            out.add((rec["controller"], int(rec["seed"])))
    return out


def run_plan_eval(
    run_dir: str | Path,
    *,
    pairs: int = 50,
    seed_offset: int | None = None,
    controllers: Sequence[str] = CONTROLLERS,
    client: Any = None,
    spec: str = "pusht-96",
    options: dict[str, Any] | None = None,
    progress: Callable[[str], None] | None = None,
    first: int = 0,
) -> dict[str, Any]:
    """Run (or resume) the benchmark into `run_dir` (one episodes-<controllers>.jsonl per process;
    `first` skips to a pair, so processes can share the pairs); returns `summarise` of the folder."""
    import dream
    from dream.sim.pusht import TEST_SEED_OFFSET, PushTSim

    bad = [c for c in controllers if c not in CONTROLLERS]
    if bad:
        raise ValueError(f"unknown controller(s) {bad}; known: {', '.join(CONTROLLERS)}")
    offset = TEST_SEED_OFFSET if seed_offset is None else int(seed_offset)
    run = Path(run_dir)
    run.mkdir(parents=True, exist_ok=True)
    log = run / f"episodes-{'-'.join(controllers)}-{first}.jsonl"  # one file per process: runs may go side by side
    done = set().union(*(_done(p) for p in run.glob("episodes*.jsonl")))
    sim = PushTSim()
    model = None
    if "model" in controllers:
        client = client or dream.Client()
        model = client.models.get(spec)
    t_start = time.perf_counter()
    for i in range(first, pairs):
        seed = offset + i
        todo = [c for c in controllers if (c, seed) not in done]
        if not todo:
            continue
        pair = make_pair(seed, sim)
        for kind in todo:
            rec = run_episode(kind, pair, sim, model, options=options)
            with log.open("a") as f:
                f.write(json.dumps(rec) + "\n")
            if progress is not None:
                progress(f"pair {i + 1}/{pairs} seed {seed} {kind}: {'success' if rec['success'] else 'fail'} "
                         f"steps {rec['steps']} pos {rec['position_error']:.1f} angle {rec['angle_error_deg']:.1f} "
                         f"wall {rec['wall_s']:.1f}s")
    summary = summarise(run, pairs=pairs, seed_offset=offset)
    summary["session_wall_s"] = time.perf_counter() - t_start
    (run / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def summarise(run_dir: str | Path, *, pairs: int | None = None, seed_offset: int | None = None) -> dict[str, Any]:
    """Per controller: success rate, final errors, plan() wall times and rollouts; and the pairs the
    oracle solves and the model does not (from every episodes*.jsonl of `run_dir`)."""
    records = [json.loads(line) for p in sorted(Path(run_dir).glob("episodes*.jsonl"))
               for line in p.read_text().splitlines() if line.strip()]
    if seed_offset is not None and pairs is not None:
        records = [r for r in records if seed_offset <= r["seed"] < seed_offset + pairs]
    out: dict[str, Any] = {"controllers": {}}
    by: dict[str, dict[int, dict[str, Any]]] = {}
    for rec in records:
        by.setdefault(rec["controller"], {})[int(rec["seed"])] = rec
    for kind, recs in by.items():
        rows = list(recs.values())
        entry: dict[str, Any] = {
            "episodes": len(rows),
            "success_rate": float(np.mean([r["success"] for r in rows])),
            "median_position_error": float(np.median([r["position_error"] for r in rows])),
            "median_angle_error_deg": float(np.median([r["angle_error_deg"] for r in rows])),
            "mean_steps_successful": float(np.mean([r["steps"] for r in rows if r["success"]])) if any(
                r["success"] for r in rows) else None,
            "total_wall_s": float(sum(r["wall_s"] for r in rows)),
        }
        walls = [w for r in rows for w in r.get("plan_wall_s", [])]
        if walls:
            entry["plans"] = len(walls)
            entry["median_plan_s"] = float(np.median(walls))
            entry["p90_plan_s"] = float(np.percentile(walls, 90))
            entry["median_plan_engine_s"] = float(np.median([w for r in rows for w in r.get("plan_engine_s", [])]))
            entry["rollouts_per_plan"] = float(np.median([n for r in rows for n in r.get("rollouts_per_plan", [])]))
        out["controllers"][kind] = entry
    model, oracle = by.get("model", {}), by.get("oracle", {})
    out["oracle_only"] = [
        {"seed": s, "model_position_error": model[s]["position_error"], "model_angle_error_deg": model[s]["angle_error_deg"]}
        for s in sorted(set(model) & set(oracle)) if oracle[s]["success"] and not model[s]["success"]
    ]
    out["model_only"] = sorted(s for s in set(model) & set(oracle) if model[s]["success"] and not oracle[s]["success"])
    return out


def plan_markdown(summary: dict[str, Any]) -> str:
    """The summary as a Markdown table (one row per controller) plus the oracle-only pairs."""
    lines = ["| controller | pairs | success | median position error | median angle error | median plan() | "
             "rollouts / plan | total wall |", "|---|---|---|---|---|---|---|---|"]
    for kind in (*CONTROLLERS, *sorted(set(summary["controllers"]) - set(CONTROLLERS))):
        e = summary["controllers"].get(kind)
        if e is None:
            continue
        plan = f"{e['median_plan_s']:.2f} s" if "median_plan_s" in e else "–"
        rollouts = f"{e['rollouts_per_plan']:.0f}" if "rollouts_per_plan" in e else "–"
        lines.append(f"| {kind} | {e['episodes']} | {e['success_rate']:.2f} | {e['median_position_error']:.1f} | "
                     f"{e['median_angle_error_deg']:.1f}° | {plan} | {rollouts} | {e['total_wall_s']:.0f} s |")
    only = summary.get("oracle_only") or []
    if only:
        lines.append("")
        lines.append("Pairs the oracle solves and the model does not: " + ", ".join(
            f"{o['seed']} ({o['model_position_error']:.0f} px, {o['model_angle_error_deg']:.0f}°)" for o in only))
    return "\n".join(lines)


# ---------------------------------------------------------------------- gym-pusht's own task


def pusht_task_cost(**options: Any) -> Any:
    """gym-pusht's task as a cost of frames: the block's pose read off each scored frame against
    the fixed goal zone's (the agent's position does not count)."""
    from dream.envs.pusht import GOAL_POSE
    from dream.plan import GoalImageCost

    x, y, a = GOAL_POSE
    cog = np.array([x - math.sin(a) * 45.0, y + math.cos(a) * 45.0, a])
    options.setdefault("agent_weight", 0.0)
    return GoalImageCost.for_poses(agent=np.zeros(2), block=cog, **options)


def run_gym_task(run_dir: str | Path, *, episodes: int = 20, seed_offset: int | None = None, client: Any = None,
                 spec: str = "pusht-96", steps: int = GYM_STEPS, options: dict[str, Any] | None = None,
                 progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """gym-pusht's task (coverage > 0.95 within `steps`) with MPC(CEM(model, pusht_task_cost())); resumable."""
    import dream
    from dream.plan import CEM, MPC
    from dream.sim.pusht import TEST_SEED_OFFSET, PushTSim

    offset = TEST_SEED_OFFSET if seed_offset is None else int(seed_offset)
    run = Path(run_dir)
    run.mkdir(parents=True, exist_ok=True)
    log = run / "gym_episodes.jsonl"
    done = {int(json.loads(line)["seed"]) for line in log.read_text().splitlines() if line.strip()} if log.exists() else set()
    sim = PushTSim()
    client = client or dream.Client()
    model = client.models.get(spec)
    for i in range(episodes):
        seed = offset + i
        if seed in done:
            continue
        mpc = MPC(CEM(model, pusht_task_cost(), seed=seed, **(options or {})))
        frame = sim.reset(seed)
        t0 = time.perf_counter()
        coverage, success_at = 0.0, None
        for t in range(steps):
            frame = sim.step(mpc.act(frame))
            coverage = float(sim.env._get_coverage())
            if coverage > 0.95:
                success_at = t + 1
                break
        rec = {"seed": seed, "success": success_at is not None, "steps": success_at or steps, "coverage": coverage,
               "wall_s": time.perf_counter() - t0, "plan_wall_s": [p.wall_s for p in mpc.plans]}
        with log.open("a") as f:
            f.write(json.dumps(rec) + "\n")
        if progress is not None:
            progress(f"gym episode {i + 1}/{episodes} seed {seed}: {'success' if rec['success'] else 'fail'} "
                     f"steps {rec['steps']} coverage {coverage:.3f} wall {rec['wall_s']:.1f}s")
    recs = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    recs = [r for r in recs if offset <= r["seed"] < offset + episodes]
    walls = [w for r in recs for w in r["plan_wall_s"]]
    summary = {"episodes": len(recs), "success_rate": float(np.mean([r["success"] for r in recs])) if recs else None,
               "mean_final_coverage": float(np.mean([r["coverage"] for r in recs])) if recs else None,
               "median_plan_s": float(np.median(walls)) if walls else None,
               "total_wall_s": float(sum(r["wall_s"] for r in recs))}
    (run / "gym_summary.json").write_text(json.dumps(summary, indent=2))
    return summary
