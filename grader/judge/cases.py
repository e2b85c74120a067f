"""Random test-case inputs: fresh every grading run, kink-free, independent streams.

Inputs and upstream gradients come from separate generators spawned from one
seed, so changing how many inputs an item draws never changes its ``dout``.
"""
from __future__ import annotations

import secrets
from dataclasses import dataclass

import numpy as np


@dataclass
class Streams:
    """Independent random generators for one item's cases."""

    inputs: np.random.Generator
    upstream: np.random.Generator
    seeds: np.random.Generator      # for seeds handed to learner code (rng arguments)

    @classmethod
    def from_seed(cls, seed=None):
        seed = secrets.randbits(64) if seed is None else seed
        a, b, c = np.random.SeedSequence(seed).spawn(3)
        return cls(np.random.default_rng(a), np.random.default_rng(b), np.random.default_rng(c))


def away_from_kinks(rng, shape, kinks=(0.0,), margin=1e-2, scale=1.0):
    """Normal(0, scale) values, each at least ``margin`` away from every kink.

    A centered difference with h = 1e-5 across a kink (ReLU at 0, |x| at 0) is
    wrong by design; keeping inputs away from kinks keeps correct code passing.
    """
    x = rng.normal(0.0, scale, size=shape)
    for kink in kinks:
        near = np.abs(x - kink) < margin
        x[near] = kink + np.where(x[near] >= kink, margin, -margin) * rng.uniform(1.5, 3.0, size=near.sum())
    return x


def small_dims(rng, *ranges):
    """One random size from each inclusive (low, high) range."""
    return tuple(int(rng.integers(lo, hi + 1)) for lo, hi in ranges)


def at_kinks(rng, shape, kinks=(0.0,), margin=1e-2, scale=1.0, share=0.4):
    """Like ``away_from_kinks``, but about ``share`` of the entries (at least one, never all) are EXACTLY a kink.

    For the cases that judge a derivative at its kink against the contract's value there (ReLU's gradient
    at 0 is 0), never against a centered difference, which straddles the kink and is wrong there by design.
    The other entries stay ``margin`` away from every kink. Needs at least two entries.
    """
    x = away_from_kinks(rng, shape, kinks=kinks, margin=margin, scale=scale)
    flat = x.reshape(-1)
    k = min(flat.size - 1, max(1, int(round(share * flat.size))))
    chosen = rng.choice(flat.size, size=k, replace=False)
    flat[chosen] = rng.choice(np.asarray(kinks, dtype=np.float64), size=k)
    return flat.reshape(shape)
