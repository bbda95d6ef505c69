"""The cached empty-prompt embedding and its documented zero fallback."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from dream.engine.models.dreamdojo.text_embedding import (
    load_empty_prompt_embedding,
    save_empty_prompt_embedding,
)
from dream.errors import EngineError


def test_missing_file_falls_back_to_zeros_with_a_warning(tmp_path: Path, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="dream.engine.models.dreamdojo.text_embedding"):
        assert load_empty_prompt_embedding(tmp_path, 48) is None
    assert "all-zero text embedding" in caplog.text


@pytest.mark.parametrize("name", ["empty_prompt_embedding.safetensors", "empty_prompt_embedding.pt"])
def test_cached_file_round_trip(tmp_path: Path, name: str) -> None:
    emb = torch.randn(8, 48)
    if name.endswith(".safetensors"):
        save_empty_prompt_embedding(tmp_path / name, emb)
    else:
        torch.save({"embedding": emb}, tmp_path / name)
    loaded = load_empty_prompt_embedding(tmp_path, 48)
    assert loaded is not None and loaded.shape == (1, 8, 48)
    torch.testing.assert_close(loaded[0], emb)


def test_wrong_width_names_the_file_and_the_expected_shape(tmp_path: Path) -> None:
    save_empty_prompt_embedding(tmp_path / "empty_prompt_embedding.safetensors", torch.zeros(8, 47))
    with pytest.raises(EngineError, match=r"empty_prompt_embedding\.safetensors.*\(8, 47\).*\(N, 48\)"):
        load_empty_prompt_embedding(tmp_path, 48)
