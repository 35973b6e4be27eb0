"""Running a trained model: translating lists of sentences, and model packages (save, load, verify)."""
