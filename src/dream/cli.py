"""The `dream` command line: a thin layer over the public Python API.

Every subcommand parses arguments and calls what a Python user would call; none adds
logic of its own. Heavy modules are imported inside the handlers so `dream --help`
answers at once.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

EPILOG = """\
examples:
  dream models                                   # what this engine serves
  dream predict --frame start.png --actions acts.npy -o out.mp4
  dream run ./episodes ./out --concurrency 2     # one rollout per row, resumable
  dream estimate ./episodes                      # rows, frames, USD, engine time
  dream augment lerobot:./demos lerobot:./aug --sink-opt repo_id=me/aug --variants 4 --noise 8
  dream eval --episodes 100                      # built-in model vs baselines
  dream serve --port 8000                        # HTTP server (needs [server])

Without --base-url (or DREAM_BASE_URL) commands run the embedded engine in this
process; with one they talk to a `dream serve` server using --api-key / DREAM_API_KEY.
"""


def _client(args: argparse.Namespace) -> Any:
    import dream

    try:
        return dream.Client(base_url=args.base_url, api_key=args.api_key, threads=getattr(args, "threads", None))
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from None


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer; got {text!r}")
    return value


def _add_threads(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--threads", type=_positive_int, default=None,
        help="torch CPU threads of the embedded engine (default: the CPUs this process may use)",
    )


def _add_remote(p: argparse.ArgumentParser) -> None:
    p.add_argument("--base-url", default=None, help="server URL (default: DREAM_BASE_URL, else the embedded engine)")
    p.add_argument("--api-key", default=None, help="API key for a server (default: DREAM_API_KEY)")


def _parse_options(pairs: list[str] | None, flag: str) -> dict[str, str]:
    options: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"error: {flag} takes KEY=VALUE; got {pair!r}")
        options[key.replace("-", "_")] = value
    return options


def _add_uri_options(p: argparse.ArgumentParser, *, sink: bool) -> None:
    p.add_argument(
        "--source-opt", action="append", metavar="KEY=VALUE",
        help="source option, repeatable (e.g. frame_field=image actions_field=action for hf://, "
        "horizon=48 stride=12 action_dim=384 for lerobot://); also accepted as ?key=value in the URI",
    )
    if sink:
        p.add_argument("--sink-opt", action="append", metavar="KEY=VALUE",
                       help="sink option, repeatable (e.g. shard_rows=500 private=true for hf://, "
                       "repo_id=org/name for lerobot:)")


def _add_sampling(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=int, default=0, help="noise seed (default 0); same inputs + seed → same mp4 bytes")
    p.add_argument("--num-steps", type=int, default=None, help="sampler steps (default: the spec's)")
    p.add_argument("--guidance", type=float, default=None, help="classifier-free guidance (default: the spec's)")


# --------------------------------------------------------------------------- models


def cmd_models(args: argparse.Namespace) -> int:
    client = _client(args)
    handles = client.models.list()
    if args.json:
        print(json.dumps([h.spec.__dict__ | {"arch": h.spec.arch.__dict__} for h in handles], default=str, indent=2))
        return 0
    rows = [("SLUG", "ACTIVE", "ACTIONS", "CHUNK", "RESOLUTION", "FPS", "USD/FRAME")]
    notes: list[tuple[str, str]] = []
    for h in handles:
        s = h.spec
        rows.append((
            s.slug, "yes" if s.active else "no*", str(s.action_dim), str(s.chunk_size),
            f"{s.resolution[0]}x{s.resolution[1]}", str(s.fps or ""), f"{s.price_per_frame_usd:g}",
        ))
        if not s.active and s.status_message:
            notes.append((s.slug, s.status_message))
    _print_table(rows)
    _print_notes(notes)
    return 0


def _print_table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


def _print_notes(notes: list[tuple[str, str]]) -> None:
    """Why a model is not active, as wrapped paragraphs under the table (a note can be long)."""
    import shutil
    import textwrap

    width = max(60, min(100, shutil.get_terminal_size((100, 20)).columns))
    for slug, note in notes:
        print()
        print(textwrap.fill(note, width=width, initial_indent=f"* {slug}: ", subsequent_indent="    "))


# --------------------------------------------------------------------------- predict


def cmd_predict(args: argparse.Namespace) -> int:
    import dream

    _check_output_path(args.output)
    client = _client(args)
    model = client.models.get(args.spec or dream.DEFAULT_SPEC)
    rollout = model.predict(
        start_frame=args.frame, actions=args.actions, seed=args.seed, num_steps=args.num_steps, guidance=args.guidance
    )
    out = rollout.save(args.output)
    print(
        f"{out}: {rollout.num_frames} frames, {model.slug}, engine {rollout.engine_wall_ms:.0f} ms, "
        f"${rollout.cost_usd:.4f} (request {rollout.request_id})"
    )
    return 0


def _check_output_path(output: str) -> None:
    """Refuse an output the rollout cannot be written to before any engine work."""
    path = Path(output)
    if path.suffix.lower() != ".mp4":
        raise CliError(f"-o {output}: the rollout is an MP4 video; name the output *.mp4")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise CliError(f"-o {output}: folder {str(parent)!r} does not exist")


# --------------------------------------------------------------------------- bulk


def _run_on_ray(args: argparse.Namespace, src: Any, sink: Any) -> Any:
    """`dream run --ray`: the same run on Ray Data actors (dream.ray.predict_many)."""
    if args.base_url:
        raise SystemExit("error: --ray runs engines on Ray actors; it cannot be combined with --base-url")
    try:
        import dream.ray
    except ImportError as exc:
        raise SystemExit(f"error: {exc}") from None
    return dream.ray.predict_many(
        src, sink, spec=args.spec, num_actors=args.actors, num_cpus_per_actor=args.threads or 1,
        num_gpus_per_actor=args.gpus_per_actor, address=args.ray, seed=args.seed, num_steps=args.num_steps,
        guidance=args.guidance, on_error=args.on_error, resume=not args.no_resume, progress=not args.no_progress,
        retries=args.retries, batch_size=args.batch_size,
    )


def _add_ray(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("Ray (needs the [ray] extra)")
    g.add_argument("--ray", nargs="?", const="local", default=None, metavar="local|ADDRESS",
                   help="run on Ray Data actors: a local Ray, or the cluster at ADDRESS (e.g. auto, ray://host:10001)")
    g.add_argument("--actors", type=_positive_int, default=1, help="engine actors (default 1)")
    g.add_argument("--gpus-per-actor", type=float, default=0, help="GPUs per actor (default 0: CPU)")
    g.add_argument("--batch-size", type=_positive_int, default=4,
                   help="rows per actor call, fused when the model allows it (default 4)")


def cmd_run(args: argparse.Namespace) -> int:
    from dream.io.uri import sink_from_uri, source_from_uri

    src = source_from_uri(args.source, **_parse_options(args.source_opt, "--source-opt"))
    sink = sink_from_uri(args.sink, **_parse_options(args.sink_opt, "--sink-opt"))
    if args.ray is not None:
        result = _run_on_ray(args, src, sink)
        return _report_run(result)
    client = _client(args)
    result = client.predict_many(
        src, sink, spec=args.spec, concurrency=args.concurrency, on_error=args.on_error, retries=args.retries,
        progress=not args.no_progress, num_steps=args.num_steps, guidance=args.guidance, seed=args.seed,
        resume=not args.no_resume,
    )
    return _report_run(result)


def _report_run(result: Any) -> int:
    redone = f", {result.redone} redone" if result.redone else ""
    print(
        f"{result.ok} ok, {result.failed} failed, {result.skipped} skipped (already done){redone} "
        f"in {result.wall_s:.1f}s, ${result.cost_usd:.4f} → {result.output_uri}"
    )
    if result.redone:
        print(f"  redone because they were made with other parameters: {result.redone_why}")
    for failure in result.failures[:20]:
        print(f"  failed {failure.row_id}: {failure.error}", file=sys.stderr)
    if len(result.failures) > 20:
        print(f"  … and {len(result.failures) - 20} more (see the metadata table)", file=sys.stderr)
    return 1 if result.failed else 0


def cmd_augment(args: argparse.Namespace) -> int:
    from dream.augment import augment
    from dream.io.uri import sink_from_uri, source_from_uri

    src = source_from_uri(args.source, **_parse_options(args.source_opt, "--source-opt"))
    sink = sink_from_uri(args.sink, **_parse_options(args.sink_opt, "--sink-opt"))
    max_drop = None if args.qc_max_drop is not None and args.qc_max_drop < 0 else args.qc_max_drop
    result = augment(
        src, sink, variants=args.variants, noise=args.noise, qc_max_drop=max_drop, client=_client(args),
        spec=args.spec, noise_seed=args.noise_seed, seed=args.seed, concurrency=args.concurrency,
        on_error=args.on_error, retries=args.retries, num_steps=args.num_steps, guidance=args.guidance,
        resume=not args.no_resume, progress=not args.no_progress,
    )
    limit = "no QC limit" if max_drop is None else f"drift > {max_drop:g} dB"
    skipped = f", {result.skipped_groups} group(s) already done" if result.skipped_groups else ""
    print(
        f"{result.parents} parent(s), {result.accepted} variant(s) accepted, {result.dropped} dropped ({limit}), "
        f"{result.failed} failed{skipped} in {result.wall_s:.1f}s → {result.output_uri}"
    )
    scored = [s for s in result.scores if s.drift_db is not None]
    if scored:
        drifts = sorted(s.drift_db for s in scored)
        print(f"  drift vs parent: median {drifts[len(drifts) // 2]:.2f} dB, max {drifts[-1]:.2f} dB "
              f"over {len(scored)} variant(s)")
    for score in result.dropped_scores[:10]:
        print(f"  dropped {score.row_id}: {score.reason}")
    for failure in result.run.failures[:10]:
        print(f"  failed {failure.row_id}: {failure.error}", file=sys.stderr)
    return 1 if result.run.failed else 0


def cmd_estimate(args: argparse.Namespace) -> int:
    from dream.io.uri import source_from_uri

    client = _client(args)
    src = source_from_uri(args.source, **_parse_options(args.source_opt, "--source-opt"))
    why = getattr(src, "rows_hint_error", None)
    if why:  # before the first-row peek, which would wait on the same unreachable service
        raise CliError(f"cannot count the rows of {args.source}: {why}")
    est = client.estimate_cost(src, spec=args.spec, frames_per_row=args.frames_per_row)
    if est.rows is None:
        raise CliError(
            f"cannot count the rows of {args.source} (the source gives no row count; with -v the log says why), "
            "so there is no estimate"
        )
    rows = str(est.rows)
    usd = "unknown" if est.total_usd is None else f"${est.total_usd:.4f}"
    print(f"spec {est.spec or '(default)'}: {rows} rows x {est.frames_per_row} frames at ${est.price_per_frame_usd:g}/frame = {usd}")
    if est.est_engine_s is not None:
        print(f"estimated engine time: {est.est_engine_s:.1f} s (from the measured per-rollout wall)")
    return 0


# --------------------------------------------------------------------------- eval


def cmd_eval(args: argparse.Namespace) -> int:
    if args.task == "policies":
        return cmd_eval_policies(args)
    if args.task in ("plan", "plan-gym"):
        return cmd_eval_plan(args)
    if args.task == "distributions":
        return cmd_eval_distributions(args)
    if args.spec not in (None, "pusht-96"):
        return cmd_eval_gr1(args)
    if args.source:
        raise SystemExit(f"error: SOURCE {args.source!r} is for GR-1 evaluation; add --spec dreamdojo-2b-gr1")
    from dream.eval.pusht_eval import run_pusht_eval

    horizons = tuple(int(h) for h in args.horizons.split(","))
    result = run_pusht_eval(
        num_episodes=args.episodes, horizons=horizons, progress=not args.no_progress, threads=args.threads
    )
    table = result.to_markdown()
    print(table)
    if args.output:
        Path(args.output).write_text(table + "\n")
    return 0


def cmd_eval_distributions(args: argparse.Namespace) -> int:
    from dream.eval.pusht_distributions import run_distribution_eval

    dists = None if args.distributions in (None, "all") else [d.strip() for d in args.distributions.split(",")]
    horizons = tuple(int(h) for h in args.horizons.split(","))
    try:
        result = run_distribution_eval(episodes=args.episodes, distributions=dists, horizons=horizons,
                                       split=args.split, progress=not args.no_progress, weights=args.weights)
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from None
    table = result.to_markdown()
    print(table)
    print(f"\nmust-show targets met: {result.must_show()}; {result.wall_s:.0f} s")
    if args.output:
        Path(args.output).write_text(table + "\n")
    return 0


def cmd_eval_policies(args: argparse.Namespace) -> int:
    from dream.eval.policy_eval import DEFAULT_POLICIES, run_policy_eval

    if args.source:
        raise SystemExit(f"error: SOURCE {args.source!r} is for GR-1 evaluation, not --task policies")
    if args.spec not in (None, "pusht-96"):
        raise SystemExit(f"error: --task policies runs Push-T policies; it needs a Push-T model, not {args.spec!r}")
    policies = [p.strip() for p in args.policies.split(",") if p.strip()] if args.policies else list(DEFAULT_POLICIES)
    started = time.perf_counter()
    try:
        result = run_policy_eval(
            args.run_dir or "policy-eval", policies=policies, starts=args.starts, steps=args.steps, client=_client(args),
            video_dir=args.video, video_policy=args.video_policy, video_start=args.video_start,
            progress=not args.no_progress, log=lambda msg: print(msg, file=sys.stderr, flush=True),
        )
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from None
    table = result.to_markdown()
    print(table)
    run_dir = args.run_dir or "policy-eval"
    print(f"\n{time.perf_counter() - started:.0f} s; run folder {run_dir} (look at it: dream view {run_dir})")
    if args.output:
        Path(args.output).write_text(table + "\n")
    return 0


def cmd_eval_plan(args: argparse.Namespace) -> int:
    from dream.eval.plan_eval import CONTROLLERS, plan_markdown, run_gym_task, run_plan_eval

    if args.source:
        raise SystemExit(f"error: SOURCE {args.source!r} is for GR-1 evaluation, not --task {args.task}")
    if args.spec not in (None, "pusht-96"):
        raise SystemExit(f"error: --task {args.task} plans in gym-pusht; it needs a Push-T model, not {args.spec!r}")
    run_dir = args.run_dir or "plan-eval"
    log = None if args.no_progress else (lambda msg: print(msg, file=sys.stderr, flush=True))
    started = time.perf_counter()
    if args.task == "plan-gym":
        summary = run_gym_task(run_dir, episodes=args.gym_episodes, client=_client(args), progress=log)
        print(json.dumps(summary, indent=2))
        return 0
    controllers = [c.strip() for c in args.controllers.split(",") if c.strip()] if args.controllers else list(CONTROLLERS)
    try:
        summary = run_plan_eval(run_dir, pairs=args.pairs, controllers=controllers, client=_client(args), progress=log)
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from None
    table = plan_markdown(summary)
    print(table)
    print(f"\n{time.perf_counter() - started:.0f} s; run folder {run_dir}")
    if args.output:
        Path(args.output).write_text(table + "\n")
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    import numpy as np

    from dream.errors import DreamError
    from dream.inputs import frame_to_array
    from dream.plan import CEM, MPPI, goal_image_cost

    client = _client(args)
    model = client.models.get(args.spec or "pusht-96")
    options = {k: getattr(args, k) for k in ("horizon", "samples", "iterations") if getattr(args, k) is not None}
    try:
        frame = frame_to_array(args.frame, what="--frame")
        cost = goal_image_cost(args.goal)
        planner = (MPPI if args.planner == "mppi" else CEM)(model, cost, seed=args.seed, **options)
        actions = planner.plan(frame)
    except DreamError as exc:
        raise SystemExit(f"error: {exc}") from None
    result = planner.last
    assert result is not None
    np.save(args.output, actions)
    print(f"predicted cost {result.cost:.3f}; {len(actions)} actions -> {args.output}; {result.rollouts} rollouts "
          f"imagined in {result.wall_s:.2f} s")
    if args.video:
        from dream.engine.video import encode_mp4

        Path(args.video).write_bytes(encode_mp4(result.frames, 10))
        print(f"predicted frames -> {args.video}")
    return 0


def cmd_eval_gr1(args: argparse.Namespace) -> int:
    from dream.eval.gr1_eval import run_gr1_eval

    if not args.source:
        raise SystemExit(f"error: dream eval --spec {args.spec} needs a SOURCE: a GR-1 LeRobot dataset (folder or org/name)")
    try:
        result = run_gr1_eval(
            args.source, spec=args.spec, episodes=args.episodes, protocol=args.protocol, num_steps=args.num_steps,
            guidance=args.guidance, seed=args.seed, camera=args.camera, weights=args.weights, device=args.device,
            progress=not args.no_progress,
        )
    except (ValueError, KeyError) as exc:  # bad source or unknown spec: one line, no traceback
        raise SystemExit(f"error: {exc.args[0] if isinstance(exc, KeyError) else exc}") from exc
    table = result.to_markdown()
    print(table)
    if args.output:
        Path(args.output).write_text(table + "\n")
    return 0


def _add_gr1_eval_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", nargs="?", default=None, help="with --spec dreamdojo-*: a GR-1 LeRobot dataset")
    p.add_argument("--spec", default=None, help="pusht-96 (default) or a DreamDojo GR-1 spec, e.g. dreamdojo-2b-gr1")
    p.add_argument(
        "--protocol", choices=["ours", "nvidia"], default="ours",
        help="GR-1: time-aligned frames + seeded torch noise (ours), or NVIDIA's frame assembly + "
        "RandomState(chunk start) noise to reproduce their reference outputs",
    )
    p.add_argument("--camera", default=None, help="GR-1: video feature (default: the first one)")
    p.add_argument("--weights", default=None, help="GR-1: weights folder or checkpoint; --task distributions: a "
                   "pusht-96 dynamics file to evaluate instead of the shipped one")
    p.add_argument("--device", default=None, help="GR-1: torch device (default: cuda when available)")
    p.add_argument("--seed", type=int, default=0, help="GR-1: noise seed of the 'ours' protocol (default 0)")
    p.add_argument("--num-steps", type=int, default=None, help="GR-1: sampler steps (default: the spec's)")
    p.add_argument("--guidance", type=float, default=None, help="GR-1: guidance (default: the spec's)")


# --------------------------------------------------------------------------- weights


def cmd_pull(args: argparse.Namespace) -> int:
    from dream.engine.models.dreamdojo.hub import pull

    path = pull(args.slug, dest=args.dest, token=args.token, revision=args.revision)
    print(f"weights for {args.slug} are in {path}")
    print(f"serve them with: DREAM_WEIGHTS_DIR={path} dream serve --spec {args.slug}")
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    from dream.engine.models.dreamdojo.convert import convert_checkpoint

    out = convert_checkpoint(args.source, args.output, slug=args.spec, allow_pickle=args.allow_pickle)
    print(f"wrote {out}")
    return 0


# --------------------------------------------------------------------------- view


def cmd_view(args: argparse.Namespace) -> int:
    import socket
    import threading
    import webbrowser

    try:
        import uvicorn

        from dream.view import open_view
    except ImportError as exc:
        raise ImportError(f"dream view needs the server and io extras: pip install 'dream-engine[server,io]' ({exc})") from exc
    app = open_view(args.output, parent_key=args.parent_key)
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: TIME_WAIT is no conflict
        try:
            probe.bind((args.host, args.port))
        except OSError as exc:
            raise SystemExit(f"error: cannot listen on {args.host}:{args.port} ({exc.strerror}); pick another --port") from None
    url = f"http://{args.host}:{args.port}/"
    config = uvicorn.Config(app, host=args.host, port=args.port, log_level="warning")
    server = uvicorn.Server(config)
    if args.open:
        threading.Timer(1.0, webbrowser.open, args=(url,)).start()
    print(f"dream view of {args.output} on {url} (Ctrl-C stops it)", flush=True)
    server.run()
    return 0


def _add_view(sub: Any) -> None:
    p = sub.add_parser(
        "view",
        help="browse a bulk run's rollouts in a browser page",
        description="Serve a page over a sink's output (./dir, s3://bucket/prefix or hf://datasets/org/name): "
        "a grid of rows with first/last-frame thumbnails, status filter, row-id search, the metadata table, "
        "a player with a frame scrubber, and side by side with a parent rollout plus per-frame PSNR. Over a "
        "`dream eval --task policies` run folder: the policy table, the model-vs-simulator correlations and "
        "scatters, every start state's coverage curves in both worlds, and the side-by-side GIFs.",
    )
    p.add_argument("output", help="the sink's output: ./dir, s3://bucket/prefix or hf://datasets/org/name; or a "
                   "policy-evaluation run folder")
    p.add_argument("--port", type=int, default=8765, help="port (default 8765)")
    p.add_argument("--host", default="127.0.0.1", help="interface (default 127.0.0.1, this machine only)")
    p.add_argument("--open", action="store_true", help="open the page in the default browser")
    p.add_argument("--parent-key", default=None,
                   help="source-metadata key naming a row's parent row (default: parent_row_id, parent_id, "
                   "parent, source_episode, whichever a row has)")
    p.set_defaults(func=cmd_view)


def cmd_qc(args: argparse.Namespace) -> int:
    from dream.view.qc import run_qc

    parents = None
    if args.parents:
        from dream.io.uri import source_from_uri

        parents = source_from_uri(args.parents, **_parse_options(args.source_opt, "--source-opt"))
    client = _client(args) if parents is not None else None
    result = run_qc(args.output, parent_key=args.parent_key, threshold_db=args.threshold_db, parents=parents,
                    client=client, spec=args.spec, progress=not args.no_progress)
    if result.rolled_out_parents:
        print(f"rolled out {len(result.rolled_out_parents)} parent(s) into qc_parents/")
    print(f"{len(result.scored)} row(s) scored, {len(result.flagged)} flagged (mean drift > {result.threshold_db:g} dB), "
          f"{len(result.unscored)} not scored → {result.scores_uri}")
    for score in result.worst(10):
        mark = "FLAGGED" if score.flagged else "ok"
        psnr = "identical" if score.mean_psnr_db is None else f"{score.mean_psnr_db:.2f} dB"
        print(f"  {score.row_id}: drift {score.drift_db:.2f} dB (max {score.max_drift_db:.2f}), "
              f"PSNR vs parent {score.parent_row_id} {psnr}  {mark}")
    for score in result.unscored[:10]:
        print(f"  not scored {score.row_id}: {score.error}", file=sys.stderr)
    print(f"look at them: dream view {args.output}  (Flagged / sort by qc_drift_db)")
    return 0


def _add_qc(sub: Any) -> None:
    p = sub.add_parser(
        "qc",
        help="augmentation QC: PSNR drift of each row against its unperturbed parent",
        description="For every row of OUTPUT whose source metadata names a parent (--parent-key), compare its "
        "video frame by frame with the parent's (a row of OUTPUT, or rolled out from --parents into "
        "OUTPUT/qc_parents/), write qc_scores.parquet beside the metadata and flag rows whose mean drift "
        "passes --threshold-db. drift_t = 10*log10(1 + MSE(row_t, parent_t) / MSE(parent_t, parent_0)): the "
        "PSNR drop the row's departure adds on top of the parent's own motion.",
    )
    p.add_argument("output", help="the sink's output: ./dir, s3://bucket/prefix or hf://datasets/org/name")
    p.add_argument("--parent-key", required=True, help="source-metadata key naming a row's parent row id "
                   "(e.g. source_episode)")
    p.add_argument("--threshold-db", type=float, default=2.0, help="flag rows whose mean drift passes this (default 2.0)")
    p.add_argument("--parents", default=None, help="source URI of the unperturbed parent rows, rolled out for "
                   "parents OUTPUT does not hold (row ids = parent ids)")
    p.add_argument("--spec", default=None, help="model for parent rollouts (default: the rows' spec)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    _add_uri_options(p, sink=False)
    _add_remote(p)
    p.set_defaults(func=cmd_qc)


# --------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dream",
        description="Action-conditioned video world models: run rollouts in-process or against a server.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from dream._version import __version__

    parser.add_argument("--version", action="version", version=f"dream-engine {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("models", help="list the models this engine or server serves")
    _add_remote(p)
    p.add_argument("--json", action="store_true", help="print the full catalog entries as JSON")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser(
        "predict",
        help="one rollout: start frame + actions (.npy) → mp4",
        description="Run one rollout and write its mp4. Frames of another size are scaled to cover the "
        "spec's resolution and centre-cropped.",
    )
    p.add_argument("--frame", required=True, help="start frame image (PNG/JPEG, any size)")
    p.add_argument("--actions", required=True, help="(T, action_dim) float32 .npy; T a multiple of the spec's chunk size")
    p.add_argument("-o", "--output", default="out.mp4", help="mp4 to write (default out.mp4)")
    p.add_argument("--spec", default=None, help="model slug (default: the built-in pusht-96)")
    _add_sampling(p)
    _add_remote(p)
    _add_threads(p)
    p.set_defaults(func=cmd_predict)

    uri_help = (
        "./dir (PNG + .npy pairs by stem), s3://bucket/prefix, hf://datasets/org/name, "
        "lerobot://org/name or lerobot:///abs/path"
    )
    p = sub.add_parser(
        "run",
        help="bulk: one rollout per source row into a sink (resumable)",
        description=f"Stream SOURCE through the engine into SINK. SOURCE: {uri_help}. SINK: ./dir, "
        "s3://bucket/prefix, hf://datasets/org/name or lerobot:./path (a LeRobot v3.0 dataset; "
        "--sink-opt repo_id=org/name). Re-running into the same sink skips rows already done.",
    )
    p.add_argument("source", help="where the rows come from")
    p.add_argument("sink", help="where rollouts and the metadata table go")
    p.add_argument("--spec", default=None, help="model slug (default: the engine's default model)")
    p.add_argument("--concurrency", type=int, default=2, help="rows in flight at once (default 2)")
    p.add_argument("--on-error", choices=["skip", "halt"], default="skip", help="skip (record and go on) or halt")
    p.add_argument("--retries", type=int, default=None,
                   help="retries per row for transient errors (default: the client's retry policy)")
    p.add_argument("--no-resume", action="store_true", help="redo rows the sink already holds")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_uri_options(p, sink=True)
    _add_sampling(p)
    _add_remote(p)
    _add_threads(p)
    _add_ray(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser(
        "augment",
        help="augmentation: K perturbed variants per source row, QC'd against the unperturbed parent",
        description=f"For every row of SOURCE ({uri_help}) roll out the unperturbed parent and --variants "
        "variants whose actions get Gaussian noise of std --noise (action units; seeded by --noise-seed, the "
        "row id and the variant number), score each variant's PSNR drift against its parent (as dream qc) and "
        "write only the accepted variants, then the parent, into SINK (./dir, s3://…, hf://datasets/…, "
        "lerobot:./path --sink-opt repo_id=org/name). Re-running into the same sink skips decided groups.",
    )
    p.add_argument("source", help="where the real episodes come from")
    p.add_argument("sink", help="where parents and accepted variants go")
    p.add_argument("--variants", type=_positive_int, required=True, help="perturbed variants per source row (K)")
    p.add_argument("--noise", type=float, required=True, help="std of the action noise, in action units (SIGMA)")
    p.add_argument("--qc-max-drop", type=float, default=2.0, metavar="DB",
                   help="drop variants whose mean PSNR drift vs the parent passes DB (default 2.0; -1 keeps all)")
    p.add_argument("--noise-seed", type=int, default=0, help="seed of the action noise (default 0)")
    p.add_argument("--spec", default=None, help="model slug (default: the engine's default model)")
    p.add_argument("--concurrency", type=int, default=2, help="rows in flight at once (default 2)")
    p.add_argument("--on-error", choices=["skip", "halt"], default="skip", help="skip (record and go on) or halt")
    p.add_argument("--retries", type=int, default=None, help="retries per row for transient errors")
    p.add_argument("--no-resume", action="store_true", help="redo groups the sink already holds")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_uri_options(p, sink=True)
    _add_sampling(p)
    _add_remote(p)
    _add_threads(p)
    p.set_defaults(func=cmd_augment)

    p = sub.add_parser("estimate", help="rows, frames, USD and engine time of a bulk run")
    p.add_argument("source", help=uri_help)
    p.add_argument("--spec", default=None, help="model slug (default: the engine's default model)")
    p.add_argument("--frames-per-row", type=int, default=None, help="override the frames per row (T + 1)")
    _add_uri_options(p, sink=False)
    _add_remote(p)
    p.set_defaults(func=cmd_estimate)

    p = sub.add_parser(
        "eval",
        help="built-in model vs baselines on held-out simulator episodes; policy ranking (--task policies)",
        description="Roll out pusht-96 on held-out gym-pusht episodes (seeds never used in training) and "
        "print PSNR / changed-pixel PSNR / SSIM / block-mask IoU / block centroid error per horizon for the "
        "model, repeat-the-start-frame and the model with its agent held still. Needs the [sim] extra. With "
        "--spec dreamdojo-2b-gr1 SOURCE: DreamDojo on a GR-1 LeRobot dataset, PSNR / SSIM / LPIPS per frame "
        "over 49 frames (NVIDIA's protocol). With --task policies: a family of frame-only Push-T policies run "
        "from the same test-split start states in gym-pusht and, closed loop, in pusht-96 (dream.envs); per "
        "policy the success rate and mean final coverage in both, and Pearson r / Spearman rho / MMRV of the "
        "model's ranking against the simulator's. Resumable: a re-run into the same --run-dir redoes only what "
        "is missing or was run with another model. Needs the [sim] and [envs] extras.",
    )
    p.add_argument("--task", choices=["quality", "distributions", "policies", "plan", "plan-gym"], default="quality",
                   help="quality: frame metrics per horizon (default); distributions: block IoU and block pose "
                   "error per action distribution (dream.sim.pusht_actions) beside repeat-start; policies: rank "
                   "a policy family in the model against the simulator; plan: closed-loop goal reaching with "
                   "dream.plan (model, simulator oracle, random, do-nothing; DINO-WM's protocol); plan-gym: "
                   "gym-pusht's own task with dream.plan")
    p.add_argument("--distributions", default=None, help="distributions: comma-separated names (default all: "
                   "scripted, uniform, correlated, aimed, sweep, perturbed, pusher, near-goal)")
    p.add_argument("--split", choices=["test", "val"], default="test",
                   help="distributions: test seeds (default) or validation seeds (choices while training)")
    p.add_argument("--run-dir", default=None, help="policies / plan: the run folder (default ./policy-eval, ./plan-eval)")
    p.add_argument("--pairs", type=_positive_int, default=50, help="plan: test-split start/goal pairs (default 50)")
    p.add_argument("--controllers", default=None, help="plan: comma-separated subset of model,oracle,random,nothing")
    p.add_argument("--gym-episodes", type=_positive_int, default=20, help="plan-gym: episodes (default 20)")
    p.add_argument("--starts", type=_positive_int, default=50,
                   help="policies: test-split start states (seeds 2000000…, default 50)")
    p.add_argument("--steps", type=_positive_int, default=300, help="policies: steps per episode (default 300, "
                   "gym-pusht's limit)")
    p.add_argument("--policies", default=None, help="policies: comma-separated names (default: the whole family; "
                   "see dream.eval.policies)")
    p.add_argument("--video", default=None, metavar="DIR", help="policies: write a side-by-side GIF (simulator | "
                   "model, both coverage curves) of one policy and start state into DIR")
    p.add_argument("--video-policy", default="pusher", help="policies: the GIF's policy (default pusher)")
    p.add_argument("--video-start", type=int, default=0, help="policies: the GIF's start state index (default 0)")
    _add_remote(p)
    p.add_argument("--episodes", type=int, default=100, help="held-out episodes (default 100; distributions: per "
                   "distribution)")
    p.add_argument("--horizons", default="1,8,16,48", help="comma-separated horizons (default 1,8,16,48)")
    p.add_argument("-o", "--output", default=None, help="also write the Markdown table here")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_threads(p)
    _add_gr1_eval_options(p)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser(
        "plan",
        help="plan actions that reach a goal image (dream.plan CEM/MPPI); writes the plan as .npy",
        description="Plan from --frame towards --goal with the model (defaults tuned per spec, see the README's "
        "Planning section) and write the (horizon, action_dim) float32 plan. Prints the plan's predicted cost.",
    )
    p.add_argument("--frame", required=True, help="start frame image (PNG/JPEG, any size)")
    p.add_argument("--goal", required=True, help="goal image (PNG/JPEG, any size)")
    p.add_argument("-o", "--output", default="plan.npy", help=".npy to write (default plan.npy)")
    p.add_argument("--video", default=None, help="also write the plan's predicted frames as mp4")
    p.add_argument("--spec", default=None, help="model slug (default: the built-in pusht-96)")
    p.add_argument("--planner", choices=["cem", "mppi"], default="cem", help="optimiser (default cem)")
    p.add_argument("--horizon", type=_positive_int, default=None, help="actions per plan (default: the spec's)")
    p.add_argument("--samples", type=_positive_int, default=None, help="candidates per iteration (default: the spec's)")
    p.add_argument("--iterations", type=_positive_int, default=None, help="iterations (default: the spec's)")
    p.add_argument("--seed", type=int, default=0, help="random stream of the planner (default 0)")
    _add_remote(p)
    _add_threads(p)
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser("pull", help="download a spec's weights from the Hugging Face Hub")
    p.add_argument("slug", help="e.g. dreamdojo-2b-gr1")
    p.add_argument("--dest", default=None,
                   help="folder; the weights go to DEST/SLUG (default: DREAM_WEIGHTS_DIR, else ~/.cache/dream/weights)")
    p.add_argument("--token", default=None, help="Hub token (default: HF_TOKEN / login cache)")
    p.add_argument("--revision", default=None, help="branch, tag or commit")
    p.set_defaults(func=cmd_pull)

    p = sub.add_parser("convert", help="convert a DreamDojo checkpoint (.pt or DCP folder) to safetensors")
    p.add_argument("source", help="model_ema_*.pt file or DCP checkpoint folder")
    p.add_argument("output", help="safetensors file to write")
    p.add_argument("--spec", default="dreamdojo-2b-gr1", help="spec whose config the checkpoint must match")
    p.add_argument(
        "--allow-pickle", action="store_true",
        help="allow a .pt that holds pickled objects (only for checkpoints you trust)",
    )
    p.set_defaults(func=cmd_convert)

    _add_view(sub)
    _add_qc(sub)

    try:
        from dream.server.commands import register
    except ImportError:
        register = None
    if register is not None:
        register(sub)
    return parser


class CliError(Exception):
    """A usage problem found by the CLI itself (printed as one `error:` line)."""


def _one_line_warnings() -> None:
    """Warnings as one `warning: …` line, not a file:line pointing into the entry-point shim."""
    import warnings

    def show(message: Any, category: Any, filename: str, lineno: int, file: Any = None, line: Any = None) -> None:
        print(f"warning: {message}", file=sys.stderr)

    warnings.showwarning = show


def _error_line(exc: BaseException) -> str:
    from dream.errors import DreamError, ModelNotActiveError

    if isinstance(exc, CliError):
        return f"error: {exc}"
    if isinstance(exc, (DreamError, ModelNotActiveError)):
        return f"error: {type(exc).__name__}: {exc}"
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        return f"error: {exc.strerror}: {exc.filename}"
    text = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, (ValueError, TypeError, ImportError, OSError, KeyError)):
        return f"error: {text}"
    return f"error: {type(exc).__name__}: {text}"


def main(argv: Sequence[str] | None = None) -> int:
    import logging

    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    _one_line_warnings()
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if args.verbose:
            import traceback

            traceback.print_exc()
        print(_error_line(exc), file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
