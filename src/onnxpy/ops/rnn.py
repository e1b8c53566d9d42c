"""rnn kernels."""
