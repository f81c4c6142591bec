"""REINFORCE controller over the space's decisions (Zoph & Le 2017), with independent softmax policies.

The policy is replayed from the study's completed trials on every proposal, so it resumes exactly.
"""

from __future__ import annotations

import math
import random

import optuna

from ._base import Strategy, finished, fitness


class ReinforceStrategy(Strategy):
    name = "rl"

    def __init__(self, *args, lr: float = 0.5, baseline_decay: float = 0.8, **kwargs):
        super().__init__(*args, **kwargs)
        self.lr, self.baseline_decay = lr, baseline_decay

    def sampler(self):
        return optuna.samplers.RandomSampler(seed=self.seed)

    def policy(self, study: optuna.Study) -> dict[str, list[float]]:
        """Logits per decision after replaying every completed trial's reward."""
        logits = {d: [0.0] * len(c) for d, c in self.space.decisions.items()}
        history = [t for t in finished(study) if "genotype" in t.user_attrs]
        if not history:
            return logits
        rewards = fitness(history, self.directions)
        lo, hi = min(rewards), max(rewards)
        baseline = None
        for trial, r in zip(history, rewards):
            r = (r - lo) / (hi - lo) if hi > lo else 0.0
            baseline = r if baseline is None else self.baseline_decay * baseline + (1 - self.baseline_decay) * r
            advantage = r - baseline
            for d, choices in self.space.decisions.items():
                g = trial.user_attrs["genotype"]
                if g.get(d) not in choices:
                    continue
                probs = _softmax(logits[d])
                k = choices.index(g[d])
                for i in range(len(choices)):  # d log pi(k) / d logit_i = 1[i=k] - p_i
                    logits[d][i] += self.lr * advantage * ((1.0 if i == k else 0.0) - probs[i])
        return logits

    def propose(self, study: optuna.Study) -> dict | None:
        logits = self.policy(study)
        rng = random.Random(f"{self.seed}-{len(study.trials)}")
        for _ in range(100):
            g = {d: rng.choices(c, weights=_softmax(logits[d]))[0] for d, c in self.space.decisions.items()}
            if self.space.check(g)[0]:
                return g
        return self.space.sample(rng)


def _softmax(x: list[float]) -> list[float]:
    m = max(x)
    e = [math.exp(v - m) for v in x]
    s = sum(e)
    return [v / s for v in e]
