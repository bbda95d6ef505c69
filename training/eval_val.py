"""`dream eval`'s table for the shipped pusht-96 on the validation seeds (1 000 000 …), for choosing among trained models.

The test seeds (2 000 000 …, plain ``dream eval``) are for the README's final figures
only; every choice made while training is made on these.

    python training/eval_val.py --episodes 100
"""

from __future__ import annotations

import argparse

from dream.sim.pusht import VAL_SEED_OFFSET


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--episodes", type=int, default=100)
    args = parser.parse_args()
    from dream.eval.pusht_eval import run_pusht_eval

    result = run_pusht_eval(num_episodes=args.episodes, seed_offset=VAL_SEED_OFFSET)
    print(result.to_markdown())


if __name__ == "__main__":
    main()
