"""REINFORCE controller over the space's decisions (Zoph & Le 2017), with independent softmax policies.

The policy is replayed from the history on every proposal, so it resumes exactly.
"""

from __future__ import annotations

import math

from ._base import Strategy


class ReinforceStrategy(Strategy):
    name = "rl"

    def __init__(self, *args, lr: float = 0.5, baseline_decay: float = 0.8, **kwargs):
        super().__init__(*args, **kwargs)
        self.lr, self.baseline_decay = lr, baseline_decay

    def policy(self, history, fitness) -> dict[str, list[float]]:
        """Logits per decision after replaying every trial's reward (fitness scaled to [0, 1]) in order.

        Each step moves the logits along ``lr * advantage * d log pi(choice) / d logits``, with a moving-average
        baseline, so choices of designs better than recent ones gain probability.
        """
        logits = {d: [0.0] * len(c) for d, c in self.space.decisions.items()}
        if not history:
            return logits
        lo, hi = min(fitness), max(fitness)
        baseline = None
        for trial, f in zip(history, fitness):
            r = (f - lo) / (hi - lo) if hi > lo else 0.0
            baseline = r if baseline is None else self.baseline_decay * baseline + (1 - self.baseline_decay) * r
            advantage = r - baseline
            g = trial.genotype
            for d, choices in self.space.decisions.items():
                if g.get(d) not in choices:
                    continue
                probs = softmax(logits[d])
                k = choices.index(g[d])
                for i in range(len(choices)):  # d log pi(k) / d logit_i = 1[i=k] - p_i
                    logits[d][i] += self.lr * advantage * ((1.0 if i == k else 0.0) - probs[i])
        return logits

    def propose(self, history, fitness, rng):
        logits = self.policy(history, fitness)
        for _ in range(100):
            g = {d: rng.choices(c, weights=softmax(logits[d]))[0] for d, c in self.space.decisions.items()}
            if self.space.check(g)[0]:
                return g
        return self.space.sample(rng)


def softmax(x: list[float]) -> list[float]:
    m = max(x)
    e = [math.exp(v - m) for v in x]
    s = sum(e)
    return [v / s for v in e]
