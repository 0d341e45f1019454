"""Reinforcement learning on adapted observations: SAC with PAD heads, replay, training loop, evaluation."""
