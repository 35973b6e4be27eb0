"""Text in and out of the model: SentencePiece tokenizers, corpus preparation, token-budget batches."""
