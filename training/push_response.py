"""How far the block moves for a push of a given depth, in gym-pusht and in pusht-96.

The diagnostic behind the rank swaps of `dream eval --task policies`: near the goal,
policies fine-tune with shallow pushes, and a model that over- or under-responds to them
ranks those policies wrongly. Each case puts the block near the goal pose (simulator
state, validation-split seeds 1 000 000 …), the agent 4 px behind a random point of the
T's outline, pushes along the outline's normal to a depth of d px for 6 actions and backs
off for 4; the same actions run in gym-pusht and, open loop from the simulator's frame, in
pusht-96 (its readout gives the block pose). Prints the mean block displacement (px) and
rotation (degrees) per depth in both:

    python training/push_response.py [--cases 240]
"""

from __future__ import annotations

import argparse
import math
import sys

import numpy as np

from dream.eval.policies import _NORMALS, _POINTS, AGENT_RADIUS
from dream.sim.pusht import VAL_SEED_OFFSET, PushTSim

DEPTHS = (1, 2, 3, 5, 8, 15)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", type=int, default=240)
    args = p.parse_args(argv)
    import dream

    sim = PushTSim()
    engine = dream.Client().engine
    rows = []
    for case in range(args.cases):
        rng = np.random.default_rng(VAL_SEED_OFFSET + 500_000 + case)
        angle = math.pi / 4 + rng.normal(0, math.radians(4))
        cog = np.array([256 - math.sin(angle) * 45, 256 + math.cos(angle) * 45]) + rng.normal(0, 4, 2)
        k = int(rng.integers(len(_POINTS)))
        c, s = math.cos(angle), math.sin(angle)
        rot = np.array([[c, -s], [s, c]])
        point, normal = cog + rot @ _POINTS[k], rot @ _NORMALS[k]
        behind = point - normal * (AGENT_RADIUS + 4)
        depth = DEPTHS[case % len(DEPTHS)]
        # gym-pusht sets the block's origin at angle 0, then turns it about its centre of gravity (0, 45)
        obs, _ = sim.env.reset(seed=1, options={"reset_to_state": np.array([*behind, cog[0], cog[1] - 45, angle])})
        before = sim.state()
        actions = np.array([point + normal * (depth - AGENT_RADIUS)] * 6 + [behind] * 4, np.float32)
        for a in actions:
            sim.env.step(a)
        after = sim.state()
        steps = engine.begin(obs["pixels"])
        m0 = steps.readout()["block"][0]
        steps.advance(actions[None], draw=False)
        m1 = steps.readout()["block"][0]
        rows.append((depth, np.hypot(*(after.block_pos - before.block_pos)), np.hypot(*(m1[:2] - m0[:2])),
                     abs(math.degrees(after.block_angle - before.block_angle)), abs(math.degrees(m1[2] - m0[2]))))
    table = np.array(rows)
    print(f"{args.cases} pushes near the goal (validation seeds), 6 actions deep then 4 back; mean over cases")
    print("| push depth | cases | block moves, gym-pusht | pusht-96 | ratio | block turns, gym-pusht | pusht-96 |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for d in DEPTHS:
        sel = table[:, 0] == d
        sm, mm, sr, mr = (table[sel, i].mean() for i in (1, 2, 3, 4))
        print(f"| {d} px | {sel.sum()} | {sm:.2f} px | {mm:.2f} px | {mm / max(sm, 1e-9):.2f} | {sr:.2f}° | {mr:.2f}° |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
