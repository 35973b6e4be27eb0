"""The model the corpus tests translate with."""

from __future__ import annotations

import pytest
import torch

from s2s_core.inference.translator import Translator
from s2s_core.model.seq2seq import build_model
from tests.s2s_core.conftest import reverse_model_config
from tests.s2s_core.synthetic import reverse_tokenizers


@pytest.fixture(scope="module")
def translator() -> Translator:
    """An untrained reverse-task model: the plumbing, not the translations, is under test."""
    torch.manual_seed(0)
    tokenizers = reverse_tokenizers()
    return Translator(build_model(reverse_model_config(tokenizers)), tokenizers, torch.device("cpu"))
