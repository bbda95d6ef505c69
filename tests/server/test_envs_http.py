"""dream.envs over HTTP: each episode a streaming session of a real ``dream serve`` on loopback."""

from __future__ import annotations

import numpy as np
import pytest

import dream
from tests.server.conftest import SPEC

pytest.importorskip("gymnasium")


@pytest.fixture
def clients(live_server):
    local = dream.Client()
    http = dream.Client(base_url=live_server.url, api_key=live_server.keys["rich"])
    yield local, http
    http.close()
    local.close()


def test_an_env_over_http_steps_a_session_and_matches_the_embedded_one(clients) -> None:
    from dream.envs import WorldModelEnv
    from dream.envs.pusht import PushTCoverage
    from dream.examples.pusht import pusht_episode

    local, http = clients
    ep = pusht_episode(0)
    out = []
    before = http.billing.balance().balance_mils
    # embedded: the reward from the model's poses (default) and read off the frames; over HTTP only
    # frames exist, so it reads them
    for c, reward in ((local, None), (local, PushTCoverage(source="frames")), (http, None)):
        env = WorldModelEnv(c.models.get(SPEC), max_episode_steps=12, reward=reward)
        obs, _ = env.reset(options={"start_frame": ep.start_frame})
        frames, rewards = [obs], []
        for t in range(12):
            obs, reward, terminated, truncated, _info = env.step(ep.actions[t])
            frames.append(obs)
            rewards.append(reward)
        assert truncated and not terminated
        if c is http:
            session = env._core.stepper.sessions[0]
            assert session.envelope["frames_streamed"] == 13  # the echoed start frame, then one per step
        env.close()
        out.append((np.stack(frames), rewards))
    np.testing.assert_array_equal(out[0][0], out[2][0])  # PNG frames over the wire: the same bytes
    np.testing.assert_array_equal(out[1][0], out[2][0])
    assert out[1][1] == out[2][1]  # the same frames read the same way
    np.testing.assert_allclose(out[0][1], out[2][1], atol=0.02)  # the poses the frames show, up to the reader's error
    assert before - http.billing.balance().balance_mils == 13  # charged per frame, like any session (1 mil each)


def test_a_vector_env_over_http_runs_one_session_per_row_and_closes_them(clients, live_server) -> None:
    import httpx

    from dream.envs import WorldModelVectorEnv
    from dream.examples.pusht import pusht_episode

    local, http = clients
    eps = [pusht_episode(i) for i in (1, 2, 3)]
    results = []
    for c in (local, http):
        vec = WorldModelVectorEnv(c.models.get(SPEC), 3, max_episode_steps=None)
        obs, _ = vec.reset(options={"start_frames": [ep.start_frame for ep in eps]})
        frames = [obs]
        for t in range(6):
            obs, *_ = vec.step(np.stack([ep.actions[t] for ep in eps]))
            frames.append(obs)
        ids = [s.id for s in vec._core.stepper.sessions] if c is http else []
        vec.close()
        results.append(np.stack(frames))
    np.testing.assert_array_equal(results[0], results[1])
    for sid in ids:  # closing the env closed its sessions on the server
        r = httpx.get(f"{live_server.url}/v1/sessions/{sid}", headers={"Authorization": f"Bearer {live_server.keys['rich']}"})
        assert r.status_code == 404
