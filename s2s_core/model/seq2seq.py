"""Model configuration and the encoder-decoder that ties embeddings, encoder and decoder together."""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass

import torch
from torch import nn

from s2s_core.configs import dataclass_from_dict
from s2s_core.model.attention import SCORERS
from s2s_core.model.decoder import Decoder, DecoderState
from s2s_core.model.encoder import RNN_TYPES, Encoder, EncoderOutput
from s2s_core.text.tokenizer import BOS_ID, EOS_ID, PAD_ID


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of an RNN encoder-decoder with attention (sizes per direction for the encoder)."""

    src_vocab_size: int = 0  # 0 = not known yet (set from the tokenizers with ``with_vocab``)
    tgt_vocab_size: int = 0
    rnn_type: str = "lstm"
    emb_dim: int = 256
    enc_hidden: int = 256
    enc_layers: int = 1
    bidirectional: bool = True
    dec_hidden: int = 512
    dec_layers: int = 1
    attention: str = "additive"
    attention_hidden: int | None = None
    input_feeding: bool = True
    bridge: str = "linear"
    dropout: float = 0.2
    tie_embeddings: bool = True  # decoder input and output embeddings
    share_embeddings: bool = False  # source and target embeddings (joint vocabulary only)
    max_src_len: int = 256  # subword tokens, EOS included; longer sources are truncated
    max_tgt_len: int = 256

    def __post_init__(self) -> None:
        if self.rnn_type not in RNN_TYPES:
            raise ValueError(f"rnn_type must be one of {sorted(RNN_TYPES)}, got {self.rnn_type!r}")
        if self.attention not in SCORERS:
            raise ValueError(f"attention must be one of {SCORERS}, got {self.attention!r}")
        if self.attention == "dot" and self.dec_hidden != self.enc_hidden * (2 if self.bidirectional else 1):
            raise ValueError(
                f"attention 'dot' needs dec_hidden ({self.dec_hidden}) equal to the encoder output size "
                f"({self.enc_hidden * (2 if self.bidirectional else 1)}); use 'general' or change the sizes")
        if self.share_embeddings and self.src_vocab_size != self.tgt_vocab_size:
            raise ValueError("share_embeddings needs a joint vocabulary "
                             f"(source {self.src_vocab_size} ≠ target {self.tgt_vocab_size} entries)")
        for name in ("emb_dim", "enc_hidden", "enc_layers", "dec_hidden", "dec_layers",
                     "max_src_len", "max_tgt_len"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be ≥ 1, got {getattr(self, name)}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")

    def with_vocab(self, src_vocab_size: int, tgt_vocab_size: int) -> ModelConfig:
        return dataclasses.replace(self, src_vocab_size=src_vocab_size, tgt_vocab_size=tgt_vocab_size)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ModelConfig:
        return dataclass_from_dict(cls, data)


class Seq2Seq(nn.Module):
    """Encoder-decoder with attention; the search functions drive ``encode`` and ``step_logits``."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        c = config
        src_embedding = nn.Embedding(c.src_vocab_size, c.emb_dim, padding_idx=PAD_ID)
        tgt_embedding = (src_embedding if c.share_embeddings
                         else nn.Embedding(c.tgt_vocab_size, c.emb_dim, padding_idx=PAD_ID))
        self.encoder = Encoder(src_embedding, c.rnn_type, c.enc_hidden, c.enc_layers,
                               c.bidirectional, c.dropout)
        self.decoder = Decoder(tgt_embedding, c.rnn_type, c.dec_hidden, c.dec_layers,
                               self.encoder.output_dim, c.attention, c.attention_hidden,
                               c.dropout, c.input_feeding, c.bridge)
        # Tying needs the output layer's input to match the embedding size: project down if not.
        self.pre_output = (nn.Linear(c.dec_hidden, c.emb_dim, bias=False)
                           if c.tie_embeddings and c.dec_hidden != c.emb_dim else nn.Identity())
        out_dim = c.emb_dim if c.tie_embeddings else c.dec_hidden
        self.generator = nn.Linear(out_dim, c.tgt_vocab_size)
        if c.tie_embeddings:
            self.generator.weight = tgt_embedding.weight
        self._init_weights()

    def _init_weights(self) -> None:
        for name, param in self.named_parameters():
            if "embedding" in name:
                nn.init.normal_(param, std=param.size(-1) ** -0.5)
                with torch.no_grad():
                    param[PAD_ID].zero_()
            elif param.dim() > 1:
                nn.init.xavier_uniform_(param)
            elif "bias" in name:
                nn.init.zeros_(param)

    def encode(self, src: torch.Tensor, lengths: torch.Tensor) -> EncoderOutput:
        enc = self.encoder(src, lengths)
        # Under autocast the states come out bf16; the decoder reads them at every step, in float32.
        enc.states = enc.states.float()
        enc.projected_keys = self.decoder.attention.project_keys(enc.states)
        return enc

    def init_state(self, enc: EncoderOutput) -> DecoderState:
        return self.decoder.init_state(enc)

    def logits(self, attentional: torch.Tensor) -> torch.Tensor:
        return self.generator(self.pre_output(attentional))

    def step_logits(self, prev_tokens: torch.Tensor, enc: EncoderOutput, state: DecoderState
                    ) -> tuple[torch.Tensor, torch.Tensor, DecoderState]:
        """Unnormalised scores ``[B, V]`` of the next token, attention ``[B, S]`` and the new state."""
        embedded = self.decoder.embedding(prev_tokens)
        attentional, weights, state = self.decoder.step(embedded, enc, state)
        return self.logits(attentional), weights, state

    def decode_step(self, prev_tokens: torch.Tensor, enc: EncoderOutput, state: DecoderState
                    ) -> tuple[torch.Tensor, torch.Tensor, DecoderState]:
        """Log-probabilities ``[B, V]`` (float32) of the next token, attention ``[B, S]``, new state."""
        logits, weights, state = self.step_logits(prev_tokens, enc, state)
        return torch.log_softmax(logits.float(), dim=-1), weights, state

    def forward(self, src: torch.Tensor, src_lengths: torch.Tensor, tgt_in: torch.Tensor
                ) -> torch.Tensor:
        """Teacher-forced logits ``[B, T, V]`` for target inputs ``tgt_in`` (BOS-prefixed)."""
        enc = self.encode(src, src_lengths)
        attentional, _, _ = self.decoder(tgt_in, enc, self.init_state(enc))
        return self.logits(attentional)


def build_model(config: ModelConfig) -> Seq2Seq:
    if config.src_vocab_size < 5 or config.tgt_vocab_size < 5:
        raise ValueError("model vocabulary sizes are not set: use ModelConfig.with_vocab(...) "
                         "with the tokenizers' sizes")
    return Seq2Seq(config)


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters, each shared tensor counted once."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


__all__ = ["BOS_ID", "EOS_ID", "PAD_ID", "ModelConfig", "Seq2Seq", "build_model", "count_parameters"]
