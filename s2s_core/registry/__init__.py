"""Which model serves: the model registry (compare-and-swap promotions) and the promotion decision rule."""
