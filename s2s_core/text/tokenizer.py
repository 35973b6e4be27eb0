"""SentencePiece subword tokenizers with fixed special ids (pad/unk/bos/eos)."""

from __future__ import annotations

import io
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

import sentencepiece as spm

from s2s_core.text.masking import training_pairs
from s2s_core.text.spans import PLACEHOLDERS

PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3
SPECIAL_IDS = {"pad": PAD_ID, "unk": UNK_ID, "bos": BOS_ID, "eos": EOS_ID}


@dataclass(frozen=True)
class TokenizerConfig:
    """How the subword models are trained."""

    model_type: str = "unigram"  # "unigram" or "bpe"
    vocab_size: int = 8000
    joint: bool = True  # one model for both sides (enables shared embeddings)
    character_coverage: float = 1.0
    input_sentence_size: int = 2_000_000  # sentences sampled for training (0 = all)
    seed: int = 17
    # Reserve the placeholder symbols ⦅0⦆ … ⦅63⦆ (one piece each) that protected spans become
    # (``s2s_core.text.spans``): a model trained with them translates with spans protected.
    placeholders: bool = False
    # With placeholders: the share of training pairs without any span that get a synthetic one
    # (``masking.inject_placeholder``), so the model learns to copy placeholders wherever they occur.
    inject_placeholders: float = 0.1

    def __post_init__(self) -> None:
        if self.model_type not in ("unigram", "bpe"):
            raise ValueError(f"tokenizer.model_type must be 'unigram' or 'bpe', got {self.model_type!r}")
        if self.vocab_size < 8:
            raise ValueError(f"tokenizer.vocab_size must be ≥ 8, got {self.vocab_size}")
        if not 0.0 <= self.inject_placeholders <= 1.0:
            raise ValueError(f"tokenizer.inject_placeholders must be a share in [0, 1], got "
                             f"{self.inject_placeholders}")


_LINE_BREAKS = frozenset("\n\t")
_SPACE_RUN = re.compile(r"[^\S\n\t]+")  # whitespace other than line breaks and tabs


def clean_text(text: str | None, keep_line_breaks: bool = False) -> str:
    """NFKC-normalize and replace control/format characters with spaces; collapse whitespace.

    ``keep_line_breaks`` keeps ``\n`` and tabs (``\r\n`` becomes ``\n``) for corpora whose line breaks
    are protected spans (software messages): masking, which runs after cleaning, then turns them into
    placeholders the model learns to copy, as the translator does with a source's raw text.
    """
    if not text:
        return ""
    text = unicodedata.normalize("NFKC", text)
    if keep_line_breaks:
        text = text.replace("\r\n", "\n")
    # Control characters (C0/C1, zero-width, bidi marks) carry no meaning for translation and
    # confuse the subword model; tabs and newlines become plain spaces (unless kept).
    text = "".join(ch if keep_line_breaks and ch in _LINE_BREAKS
                   else " " if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") else ch for ch in text)
    if keep_line_breaks:
        return _SPACE_RUN.sub(" ", text).strip(" ")  # a final line break is part of the message
    return " ".join(text.split())


class SubwordModel:
    """One SentencePiece model: text ⇄ ids, with the project's fixed special ids."""

    def __init__(self, model_proto: bytes):
        self.model_proto = model_proto
        self._sp = spm.SentencePieceProcessor(model_proto=model_proto)
        ids = {"pad": self._sp.pad_id(), "unk": self._sp.unk_id(), "bos": self._sp.bos_id(),
               "eos": self._sp.eos_id()}
        if ids != SPECIAL_IDS:
            raise ValueError(f"SentencePiece model has special ids {ids}, expected {SPECIAL_IDS}")

    @property
    def vocab_size(self) -> int:
        return self._sp.get_piece_size()

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids (no bos/eos) of each cleaned text; an empty text gives an empty list."""
        return self._sp.encode([clean_text(t) for t in texts])

    def decode(self, ids: Sequence[Sequence[int]]) -> list[str]:
        """Detokenized text of each id sequence; pad/bos/eos are skipped, unk shows as ' ⁇ '."""
        skip = (PAD_ID, BOS_ID, EOS_ID)
        return [self._sp.decode([i for i in seq if i not in skip]).strip() for seq in ids]

    def pieces(self, ids: Sequence[int]) -> list[str]:
        return [self._sp.id_to_piece(i) for i in ids]

    def placeholder_ids(self) -> list[int] | None:
        """The ids of the placeholder symbols ⦅0⦆ … (in index order), or None if this model lacks them."""
        ids = [self._sp.piece_to_id(p) for p in PLACEHOLDERS]
        return None if UNK_ID in ids else ids


def train_subword_model(sentences: Iterable[str], config: TokenizerConfig) -> SubwordModel:
    """Train a SentencePiece model in memory from an iterable of sentences."""
    buffer = io.BytesIO()
    spm.set_random_generator_seed(config.seed)  # deterministic sampling of training sentences
    cleaned = (c for c in (clean_text(s) for s in sentences) if c)
    spm.SentencePieceTrainer.train(
        sentence_iterator=cleaned,
        model_writer=buffer,
        model_type=config.model_type,
        vocab_size=config.vocab_size,
        character_coverage=config.character_coverage,
        input_sentence_size=config.input_sentence_size,
        shuffle_input_sentence=True,
        pad_id=PAD_ID, unk_id=UNK_ID, bos_id=BOS_ID, eos_id=EOS_ID,
        hard_vocab_limit=False,  # tiny corpora: a smaller vocabulary than asked is fine
        normalization_rule_name="identity",  # clean_text already normalized (NFKC)
        user_defined_symbols=list(PLACEHOLDERS) if config.placeholders else [],
        num_threads=2,
        minloglevel=2,
    )
    return SubwordModel(buffer.getvalue())


@dataclass
class Tokenizers:
    """Source and target subword models (the same object when the vocabulary is joint)."""

    src: SubwordModel
    tgt: SubwordModel
    config: TokenizerConfig

    @property
    def joint(self) -> bool:
        return self.src is self.tgt

    def describe(self) -> dict:
        """JSON-ready record of the tokenizer set-up for the model package."""
        return {
            "config": asdict(self.config),
            "joint": self.joint,
            "special_ids": dict(SPECIAL_IDS),
            "src_vocab_size": self.src.vocab_size,
            "tgt_vocab_size": self.tgt.vocab_size,
        }


def train_tokenizers(src: Sequence[str], tgt: Sequence[str], config: TokenizerConfig) -> Tokenizers:
    """Train a joint model on both sides, or one model per side (with ``placeholders``, on the pairs
    as training sees them: shared spans masked, so span syntax takes no pieces of its own)."""
    if config.placeholders:
        src, tgt, _ = training_pairs(src, tgt, inject_share=0.0)
    if config.joint:
        joint = train_subword_model([*src, *tgt], config)
        return Tokenizers(joint, joint, config)
    return Tokenizers(train_subword_model(src, config), train_subword_model(tgt, config), config)
