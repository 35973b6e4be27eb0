"""The neural network: attention, encoder, decoder, the Seq2Seq module, greedy and beam search."""
