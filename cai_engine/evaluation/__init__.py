"""Evaluation: judge agreement with human labels, win rates, bias measurements."""
