"""Write the package's example episodes (src/dream/examples/_fixtures/pusht_episodes.npz).

Eight episodes of 48 actions from the seed range EXAMPLE_SEED_OFFSET + i (3 000 000 …),
used neither for training, validation nor `dream eval`: in seed order, the first six
whose seed picks the seek-and-push policy, then the first two random walks (pushing is
what a demo should show, so the mix is richer in it than the training data's 2:1).

    python training/make_examples.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dream.sim.pusht import EXAMPLE_SEED_OFFSET, PushTSim, generate_episode, policy_for_seed

OUT = Path(__file__).resolve().parents[1] / "src" / "dream" / "examples" / "_fixtures" / "pusht_episodes.npz"


def main() -> None:
    sim = PushTSim()
    wanted = {"seek_push": 6, "random_walk": 2}
    seeds: dict[str, list[int]] = {kind: [] for kind in wanted}
    seed = EXAMPLE_SEED_OFFSET
    while any(len(seeds[k]) < n for k, n in wanted.items()):
        kind = policy_for_seed(seed).name
        if len(seeds[kind]) < wanted[kind]:
            seeds[kind].append(seed)
        seed += 1
    episodes = [generate_episode(s, 48, sim=sim) for kind in wanted for s in seeds[kind]]
    OUT.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        OUT,
        frames=np.stack([e.frames for e in episodes]),
        actions=np.stack([e.actions for e in episodes]),
        seeds=np.array([e.seed for e in episodes], np.int64),
        policies=np.array([e.policy for e in episodes], "<U16"),
    )
    print(f"wrote {OUT} ({OUT.stat().st_size / 1e3:.0f} kB): policies {[e.policy for e in episodes]}")


if __name__ == "__main__":
    main()
