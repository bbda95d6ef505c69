"""dream eval --task policies: the ranking metrics, a small resumable run, its GIF and its page."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dream.eval.policy_eval import mmrv, pearson, spearman

pytest.importorskip("gymnasium")


def test_pearson_spearman_and_mmrv() -> None:
    truth = [0.0, 0.2, 0.5, 0.9]
    assert pearson(truth, [2 * t + 1 for t in truth]) == pytest.approx(1.0)
    assert spearman(truth, [t**3 for t in truth]) == pytest.approx(1.0)
    assert spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(0.9486832980505138)  # ties get average ranks
    assert mmrv([0.1, 0.3, 0.6, 0.95], truth) == 0.0  # same order, whatever the values
    # the model swaps the two middle policies: each of them is violated by the gap 0.3 between them
    assert mmrv([0.0, 0.6, 0.5, 0.9], truth) == pytest.approx((0.0 + 0.3 + 0.3 + 0.0) / 4)
    # a tie in the model where the simulator orders them counts for the policy the simulator puts
    # higher (strict comparisons, as SIMPLER's: 0.5 > 0.5 is False but 0.5 > 0.2 is True)
    assert mmrv([0.0, 0.5, 0.5, 0.9], truth) == pytest.approx(0.3 / 4)
    assert mmrv([0.9, 0.5, 0.2, 0.0], truth) == pytest.approx((0.9 + 0.7 + 0.5 + 0.9) / 4)
    assert np.isnan(pearson([0.5, 0.5, 0.5], [0.1, 0.2, 0.3]))
    with pytest.raises(ValueError, match="equal 1-D"):
        mmrv([0.1], [0.2])


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    pytest.importorskip("gym_pusht")
    from dream.eval.policy_eval import run_policy_eval

    out = tmp_path_factory.mktemp("policy-eval")
    logs: list[str] = []
    result = run_policy_eval(out, policies=["translator", "random-walk"], starts=2, steps=12, progress=False,
                             log=logs.append, video_dir=out / "videos", video_policy="translator")
    return out, result, logs


def test_a_run_writes_both_worlds_per_policy_and_the_correlations(small_run) -> None:
    out, _result, _logs = small_run
    summary = json.loads((out / "policy_eval.json").read_text())
    assert [p["policy"] for p in summary["policies"]] == ["translator", "random-walk"]
    assert set(summary["correlations"]) == {"success", "coverage"}
    assert summary["config"]["starts"] == 2 and summary["config"]["model"].startswith("pusht-96@")
    for world in ("simulator", "model"):
        run = json.loads((out / "episodes" / world / "translator.json").read_text())
        assert [e["seed"] for e in run["episodes"]] == [2_000_000, 2_000_001]
        for e in run["episodes"]:
            assert len(e["coverage"]) == e["steps"] + 1 and e["final_coverage"] == e["coverage"][-1]
    sim = json.loads((out / "episodes" / "simulator" / "translator.json").read_text())["episodes"][0]
    assert len(sim["actions"]) == sim["steps"] and len(sim["blocks"]) == sim["steps"] + 1
    replay = json.loads((out / "episodes" / "replay" / "translator.json").read_text())
    assert replay["horizons"] == [10, 30, 100] and len(replay["errors"]["10"]) == 2
    assert all(e is None for e in replay["errors"]["30"])  # the episodes are 12 actions long
    row = summary["policies"][0]["replay"]
    assert row["10"]["episodes"] == 2 and row["10"]["position_px"] >= 0 and row["30"]["position_px"] is None
    table = (out / "report.md").read_text()
    assert "| translator |" in table and "Pearson r" in table and "open-loop block error" in table
    assert summary["wall_s"]["model"] > 0 and summary["world_s"]["simulator"] > 0


def test_the_run_resumes_and_redoes_only_the_model_when_the_model_changed(small_run) -> None:
    from dream.eval.policy_eval import run_policy_eval

    out, first, _ = small_run
    logs: list[str] = []
    again = run_policy_eval(out, policies=["translator", "random-walk"], starts=2, steps=12, progress=False, log=logs.append)
    assert all("done before" in line for line in logs) and len(logs) == 4
    assert again.summary()["policies"] == first.summary()["policies"]
    path = out / "episodes" / "model" / "random-walk.json"
    stored = json.loads(path.read_text())
    stored["config"]["world"] = "pusht-96@another-model"
    path.write_text(json.dumps(stored))
    logs.clear()
    run_policy_eval(out, policies=["translator", "random-walk"], starts=2, steps=12, progress=False, log=logs.append)
    redone = [line for line in logs if "done before" not in line]
    assert len(redone) == 1 and redone[0].startswith("random-walk · model")


def test_the_gif_puts_both_worlds_side_by_side(small_run) -> None:
    from PIL import Image

    out, _, _ = small_run
    gifs = sorted((out / "videos").glob("*.gif"))
    assert [g.name for g in gifs] == ["translator_seed2000000.gif"]
    with Image.open(gifs[0]) as img:
        assert img.n_frames == 13 and img.size[0] > 2 * 96 * 3  # t = 0..12, two scaled frames side by side
        img.seek(12)
        frame = np.asarray(img.convert("RGB"))
    assert (np.abs(frame.astype(int) - (40, 110, 200)).sum(-1) < 40).any()  # the simulator's curve
    assert (np.abs(frame.astype(int) - (220, 90, 30)).sum(-1) < 40).any()  # the model's curve


def test_dream_view_opens_a_policy_eval_run(small_run) -> None:
    from fastapi.testclient import TestClient

    from dream.view import open_view

    out, _, _ = small_run
    with TestClient(open_view(str(out))) as c:
        page = c.get("/")
        assert page.status_code == 200 and "policies.js" in page.text
        run = c.get("/api/policy-eval").json()
        assert [p["policy"] for p in run["policies"]] == ["translator", "random-walk"]
        assert run["videos"] == ["translator_seed2000000.gif"]
        eps = c.get("/api/episodes", params={"policy": "random-walk"}).json()
        assert len(eps["simulator"]) == 2 and len(eps["model"]) == 2
        assert c.get("/api/gif", params={"name": "translator_seed2000000.gif"}).content[:6] == b"GIF89a"
        assert c.get("/api/episodes", params={"policy": "nope"}).status_code == 404
        assert c.get("/api/gif", params={"name": "../policy_eval.json"}).status_code == 404
        assert c.get("/static/policies.js").status_code == 200


def test_dream_view_shows_the_run_in_a_browser(small_run) -> None:
    from tests.view.browser import launch, require_browser, serve

    require_browser()
    from dream.view import open_view

    out, _, _ = small_run
    with serve(open_view(str(out))) as base:
        for browser in launch():
            page = browser.new_page(viewport={"width": 1100, "height": 900})
            page.goto(base)
            page.wait_for_selector("#policies tbody tr")
            rows = page.locator("#policies tbody tr")
            assert rows.count() == 2 and "translator" in rows.nth(0).inner_text()
            page.wait_for_selector("#curves svg")
            assert page.locator("#curves figure").count() == 2
            rows.nth(1).click()
            page.wait_for_function("document.querySelector('#episodes-title').textContent.startsWith('random-walk')")
            assert page.locator("#video-list img").count() == 1
            assert page.locator("#scatter-success circle").count() == 2


def test_the_cli_names_a_bad_policy_in_one_line(tmp_path: Path, capsys) -> None:
    from dream.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["eval", "--task", "policies", "--policies", "pusher,nope", "--run-dir", str(tmp_path), "--starts", "1"])
    assert "unknown policies ['nope']" in str(exc.value) and "\n" not in str(exc.value)


@pytest.mark.parametrize("name", ["pusher-noise10", "learned", "seek-push", "random-walk"])
def test_a_policys_actions_depend_only_on_its_episodes_seed_and_frames(name) -> None:
    """The same episode acts the same whether its policy object drives it alone or beside others."""
    from dream.eval.policies import make_policy
    from dream.examples.pusht import pusht_episode

    eps = [pusht_episode(i) for i in (0, 2, 5)]
    together, alone = make_policy(name), make_policy(name)
    together.start([7, 8, 9])
    alone.start([7, 8, 9])
    for t in range(0, 30, 3):
        frames = np.stack([ep.frames[t] for ep in eps])
        both = together.act(frames)
        one = np.concatenate([alone.act(frames[1:2], [1]), alone.act(frames[[0, 2]], [0, 2])])
        np.testing.assert_array_equal(both[[1, 0, 2]], one)
        assert both.shape == (3, 2) and both.dtype == np.float32 and ((both >= 0) & (both <= 512)).all()
    with pytest.raises(ValueError, match="unknown policy 'nope'"):
        make_policy("nope")


def test_the_model_half_is_redone_when_the_networks_rules_change(monkeypatch):
    # the weights alone do not name the model: the rules around the network change every rollout
    import dream
    from dream.engine.models.pusht import dynamics
    from dream.eval.policy_eval import _model_identity

    client = dream.Client()
    before = _model_identity(client, "pusht-96")
    monkeypatch.setattr(dynamics, "SETTLE", 1.0)
    assert _model_identity(client, "pusht-96") != before
    assert before.startswith("pusht-96@")
