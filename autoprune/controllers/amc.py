"""AMC (He et al. 2018): a DDPG agent prunes the network one block at a time.

An *episode* walks the prunable blocks in order (each layer's attention, then its FFN, for the
dimensions the space lets vary). At each block the state is AMC's layer embedding (position,
layer, block kind, the block's smallest keep ratio, its share of dense FLOPs, FLOPs already
removed, FLOPs still ahead, the previous action) and the action is a continuous keep ratio in
``[min_ratio, 1]``: the actor's output plus truncated-normal exploration noise (uniform during
the warm-up episodes).
The ratio is rounded to the nearest choice of the space (heads kept, FFN fraction).

The budget is enforced as in AMC: before a block's action is taken, the architecture with this
block at the proposed choice and every later block at its smallest choice is priced; if even
that misses the budget the action is clipped down to the largest choice that meets it. So every
proposal is predicted feasible whenever the smallest model is. Under a ``pareto`` objective
each episode draws its own latency target between the smallest model's latency and the
budget, clips to it, and is rewarded with the metric; the target is part of the state, so the
agent learns budget-conditioned pruning and its proposals cover the front.

Every block of an episode receives the episode's reward (the objective's scalar reward) minus
a moving-average baseline; transitions go to a replay buffer and a critic/actor pair with
target networks is trained by DDPG (γ = 1, soft target updates), as in AMC's reference code.
Transitions are recomputed from the told architecture, so results for architectures the agent
did not propose (replay fallback, repeats) train it too. Other dimensions (layer dropping,
sparsity, bits) are held at their densest choice, with one exception: when the space may drop
layers, a keep ratio of 0 is also a choice for FFN blocks, and a layer whose heads and FFN are
both cut to 0 is dropped (AMC's "prune the whole block"). Without it the agent's smallest model
keeps every layer (0.14x of dense for MiniLM-L6) and the fast end of the front, where the
shallow models are, is out of its reach.

Torch randomness is confined to this controller (networks initialised under a forked, seeded
torch RNG; exploration and minibatches come from the controller's numpy generator), so a
replay retrains identical networks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from pydantic import Field
from scipy.stats import truncnorm
from torch import nn

from autoprune.controllers.base import Controller, ControllerOptions, TrialResult
from autoprune.errors import SpecError
from autoprune.space import Architecture, LayerConfig

STATE_DIM = 9
REGENERATE_TRIES = 2  # fresh episodes (with new noise) before a repeated proposal is mutated


class AMCOptions(ControllerOptions):
    warmup: int = Field(default=20, ge=0)  # episodes of uniformly random actions
    noise: float = Field(default=0.5, gt=0.0)  # initial exploration deviation
    noise_decay: float = Field(default=0.97, gt=0.0, le=1.0)  # per episode after warm-up
    # Floor of the deviation: AMC lets it vanish, but proposals here must stay distinct.
    min_noise: float = Field(default=0.05, ge=0.0)
    min_ratio: float = Field(default=0.0, ge=0.0, lt=1.0)
    hidden: int = Field(default=64, ge=4)
    actor_lr: float = Field(default=1e-3, gt=0.0)
    critic_lr: float = Field(default=3e-3, gt=0.0)
    tau: float = Field(default=0.01, gt=0.0, le=1.0)
    batch_size: int = Field(default=64, ge=1)
    replay_size: int = Field(default=4000, ge=1)
    updates_per_episode: int = Field(default=1, ge=0)
    baseline_decay: float = Field(default=0.95, ge=0.0, lt=1.0)


@dataclass(frozen=True)
class _Block:
    layer: int
    field: str  # "heads" or "ffn"
    choices: tuple[float, ...]  # keep ratios of the space's choices, ascending
    flops: float  # dense FLOPs of the block, as a share of the whole model's


def _mlp(inputs: int, hidden: int, output: nn.Module | None) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Linear(inputs, hidden),
        nn.ReLU(),
        nn.Linear(hidden, hidden),
        nn.ReLU(),
        nn.Linear(hidden, 1),
    ]
    if output is not None:
        layers.append(output)
    return nn.Sequential(*layers)


class AMCController(Controller):
    """DDPG over blocks in sequence with AMC's budget clipping."""

    name = "amc"
    Options = AMCOptions

    def _setup(self) -> None:
        space, options = self.space, self.options
        if not self.can_predict_latency:
            raise SpecError("controller amc: needs a latency predictor or objective.dense_ms")
        if True not in space.choices("keep"):
            raise SpecError("controller amc: the space must allow keeping layers")
        self._base = LayerConfig(
            keep=True,
            heads=max(space.choices("heads")),
            ffn=max(space.choices("ffn")),
            sparsity=min(space.choices("sparsity")),
            pattern="dense" if "dense" in space.choices("pattern") else space.choices("pattern")[0],
            bits=max(space.choices("bits")),
        )
        self._base_fields = self._base.to_dict()
        self._can_drop = False in space.choices("keep")
        self._min_ffn = min(space.choices("ffn"))
        self._blocks = self._make_blocks()
        if not self._blocks:
            raise SpecError("controller amc: the space has no heads or ffn choices to search")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            self._actor = _mlp(STATE_DIM, options.hidden, nn.Sigmoid())
            self._critic = _mlp(STATE_DIM + 1, options.hidden, None)
            self._actor_target = _mlp(STATE_DIM, options.hidden, nn.Sigmoid())
            self._critic_target = _mlp(STATE_DIM + 1, options.hidden, None)
        self._actor_target.load_state_dict(self._actor.state_dict())
        self._critic_target.load_state_dict(self._critic.state_dict())
        self._actor_opt = torch.optim.Adam(self._actor.parameters(), lr=options.actor_lr)
        self._critic_opt = torch.optim.Adam(self._critic.parameters(), lr=options.critic_lr)
        self._replay = _Replay(options.replay_size)
        self._targets: dict[Architecture, float] = {}  # proposal -> its episode's target
        self._episodes = 0  # episodes proposed (drives warm-up and noise decay)
        self._baseline: float | None = None
        self._worst_reward: float | None = None

    # ---- blocks and states ------------------------------------------------------------------
    def _make_blocks(self) -> list[_Block]:
        space = self.space
        dense = self.space.dense()
        total = float(space.stats(dense).flops)
        blocks = []
        for layer in range(space.num_layers):
            for field, removed in (("heads", {"heads": 0}), ("ffn", {"ffn": 0.0})):
                choices = space.choices(field)
                if len(choices) < 2:
                    continue
                layers = list(dense.layers)
                layers[layer] = LayerConfig(**{**layers[layer].to_dict(), **removed})
                share = (total - space.stats(Architecture(tuple(layers))).flops) / total
                ratios = {
                    float(c) / space.shape.num_heads if field == "heads" else float(c)
                    for c in choices
                }
                if field == "ffn" and self._can_drop:
                    ratios.add(0.0)  # with heads at 0 too: the layer is dropped
                blocks.append(_Block(layer, field, tuple(sorted(ratios)), share))
        return blocks

    def _state(self, step: int, ratios: list[float], target: float) -> np.ndarray:
        """AMC's embedding of block ``step`` given the ratios of the blocks before it."""
        block = self._blocks[step]
        reduced = sum(
            b.flops * (1.0 - r) for b, r in zip(self._blocks[:step], ratios[:step], strict=True)
        )
        rest = sum(b.flops for b in self._blocks[step + 1 :])
        return np.array(
            [
                step / len(self._blocks),
                block.layer / max(1, self.space.num_layers - 1),
                0.0 if block.field == "heads" else 1.0,
                block.choices[0],
                block.flops * len(self._blocks),
                reduced,
                rest,
                ratios[step - 1] if step > 0 else 1.0,
                target / self.objective.budget_ms,
            ],
            dtype=np.float32,
        )

    def _architecture(self, ratios: list[float]) -> Architecture:
        """Blocks with a ratio take it, blocks without (the rest of an episode) their minimum.

        A layer with no heads and an FFN ratio of 0 is dropped; an FFN ratio of 0 beside kept
        heads means the smallest FFN. If fewer than ``min_layers`` layers remain, the last
        dropped layers come back at their smallest width (heads 0, smallest FFN).
        """
        fields = [dict(self._base_fields) for _ in range(self.space.num_layers)]
        for index, block in enumerate(self._blocks):
            ratio = ratios[index] if index < len(ratios) else block.choices[0]
            fields[block.layer][block.field] = (
                int(round(ratio * self.space.shape.num_heads)) if block.field == "heads" else ratio
            )
        dropped = [i for i, item in enumerate(fields) if item["heads"] == 0 and item["ffn"] == 0]
        short = max(0, self.space.definition.min_layers - (len(fields) - len(dropped)))
        removed = set(dropped[: len(dropped) - short])  # the last ``short`` come back, thin
        return Architecture(tuple(
            LayerConfig.dropped() if index in removed
            else LayerConfig(**{**item, "ffn": item["ffn"] or self._min_ffn})
            for index, item in enumerate(fields)
        ))

    def _ratios_of(self, arch: Architecture) -> list[float]:
        """The keep ratio each block has in ``arch`` (a dropped layer keeps nothing)."""
        ratios = []
        for block in self._blocks:
            layer = arch[block.layer]
            if not layer.keep:
                ratios.append(0.0)
            elif block.field == "heads":
                ratios.append(layer.heads / self.space.shape.num_heads)
            else:
                ratios.append(float(layer.ffn))
        return ratios

    # ---- acting -----------------------------------------------------------------------------
    def _explore(self, means: np.ndarray) -> np.ndarray:
        low, high = self.options.min_ratio, 1.0
        if self._episodes < self.options.warmup:
            return self.rng.uniform(low, high, size=len(means))
        sigma = self.options.noise * self.options.noise_decay ** (
            self._episodes - self.options.warmup
        )
        sigma = max(sigma, self.options.min_noise, 1e-3)
        a, b = (low - means) / sigma, (high - means) / sigma
        return truncnorm.rvs(a, b, loc=means, scale=sigma, size=len(means), random_state=self.rng)

    def _clip_to_budget(
        self, step: int, ratios: list[float], proposed: float, target: float
    ) -> float:
        """The nearest choice to ``proposed``, lowered until the rest-at-minimum model fits."""
        choices = self._blocks[step].choices
        index = int(np.argmin([abs(c - proposed) for c in choices]))
        if not self.objective.hard:
            return choices[index]
        while index > 0 and self.latency(self._architecture(ratios + [choices[index]])) > target:
            index -= 1
        return choices[index]

    def _targets_for(self, count: int) -> list[float]:
        """Each episode's latency target: the budget, or for ``pareto`` a draw between the
        smallest model's latency and the budget (the target is part of the state, so one agent
        learns budget-conditioned pruning and its proposals spread along the front)."""
        if self.objective.kind != "pareto":
            return [self.objective.budget_ms] * count
        low = min(self.latency(self._architecture([])), self.objective.budget_ms)
        return [float(t) for t in self.rng.uniform(low, self.objective.budget_ms, size=count)]

    def _target_of(self, arch: Architecture) -> float:
        """The target a told architecture was proposed for (its own latency if not ours)."""
        target = self._targets.get(arch)
        if target is None:
            target = min(self.latency(arch), self.objective.budget_ms)
        return target

    def _episodes_batch(self, count: int) -> list[tuple[Architecture, float]]:
        """Run ``count`` episodes in lockstep (one actor forward per block for all of them)."""
        targets = self._targets_for(count)
        ratios: list[list[float]] = [[] for _ in range(count)]
        for step in range(len(self._blocks)):
            states = np.stack(
                [self._state(step, r, t) for r, t in zip(ratios, targets, strict=True)]
            )
            with torch.no_grad():
                means = self._actor(torch.from_numpy(states)).numpy().reshape(-1)
            actions = self._explore(means.astype(np.float64))
            for episode in range(count):
                ratios[episode].append(
                    self._clip_to_budget(
                        step, ratios[episode], float(actions[episode]), targets[episode]
                    )
                )
        self._episodes += count
        return [(self._architecture(r), t) for r, t in zip(ratios, targets, strict=True)]

    def _ask(self, n: int) -> list[Architecture]:
        """``n`` episodes; repeats are re-run together (new noise), then mutated if need be."""
        chosen: list[tuple[Architecture, float] | None] = [None] * n
        taken: set[Architecture] = set()
        pending = list(range(n))
        episodes = self._episodes_batch(n)
        repeats: list[tuple[int, Architecture, float]] = []
        for round_ in range(REGENERATE_TRIES + 1):
            repeats = []
            for slot, (arch, target) in zip(pending, episodes, strict=True):
                if self.is_new(arch, taken):
                    chosen[slot] = (arch, target)
                    taken.add(arch)
                else:
                    repeats.append((slot, arch, target))
            pending = [slot for slot, _, _ in repeats]
            if not pending or round_ == REGENERATE_TRIES:
                break
            episodes = self._episodes_batch(len(pending))
        for slot, arch, target in repeats:
            replacement = self.fresh(arch, taken, feasible=True)
            chosen[slot] = (replacement, target)
            taken.add(replacement)
        batch = []
        for item in chosen:
            assert item is not None
            arch, target = item
            self._targets.setdefault(arch, target)
            batch.append(arch)
        return batch

    # ---- learning ---------------------------------------------------------------------------
    def _reward(self, result: TrialResult) -> float | None:
        # Under ``pareto`` the episode's target is enforced by clipping: the reward is the
        # metric itself (AMC's accuracy-guaranteed setting); otherwise the objective's reward.
        fitness = self.fitness(result)
        if fitness is not None and self.objective.kind == "pareto":
            fitness = result.metric
        if fitness is not None:
            self._worst_reward = (
                fitness if self._worst_reward is None else min(self._worst_reward, fitness)
            )
            return fitness
        if result.state == "infeasible":  # the runner's model disagreed with ours: worst seen
            return self._worst_reward if self._worst_reward is not None else 0.0
        return None  # failed: no signal

    def _tell(self, results: list[TrialResult]) -> None:
        for result in results:
            reward = self._reward(result)
            if reward is None:
                continue
            decay = self.options.baseline_decay
            self._baseline = (
                reward if self._baseline is None else decay * self._baseline + (1 - decay) * reward
            )
            advantage = reward - self._baseline
            ratios = self._ratios_of(result.architecture)
            target = self._target_of(result.architecture)
            steps = len(self._blocks)
            states = np.stack(
                [self._state(step, ratios, target) for step in range(steps)]
                + [np.zeros(STATE_DIM, dtype=np.float32)]
            )
            done = np.zeros(steps, dtype=np.float32)
            done[-1] = 1.0
            self._replay.add(
                states[:-1],
                np.asarray(ratios, dtype=np.float32),
                np.full(steps, advantage, dtype=np.float32),
                states[1:],
                done,
            )
            for _ in range(self.options.updates_per_episode):
                self._update()

    def _update(self) -> None:
        if len(self._replay) < self.options.batch_size:
            return
        picks = self.rng.choice(len(self._replay), size=self.options.batch_size, replace=False)
        states, actions, rewards, following, done = self._replay.sample(picks)
        with torch.no_grad():
            next_q = self._critic_target(
                torch.cat([following, self._actor_target(following)], dim=1)
            )
            target = rewards + (1.0 - done) * next_q  # γ = 1, as in AMC
        q = self._critic(torch.cat([states, actions], dim=1))
        critic_loss = nn.functional.mse_loss(q, target)
        self._critic_opt.zero_grad()
        critic_loss.backward()
        self._critic_opt.step()
        actor_loss = -self._critic(torch.cat([states, self._actor(states)], dim=1)).mean()
        self._actor_opt.zero_grad()
        actor_loss.backward()
        self._actor_opt.step()
        with torch.no_grad():  # soft target updates: target += tau * (online - target)
            for net, target_net in (
                (self._actor, self._actor_target),
                (self._critic, self._critic_target),
            ):
                torch._foreach_lerp_(
                    list(target_net.parameters()), list(net.parameters()), self.options.tau
                )


class _Replay:
    """A fixed-size ring buffer of transitions in preallocated arrays (cheap to sample)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.count = 0
        self._next = 0
        self._states = np.zeros((size, STATE_DIM), dtype=np.float32)
        self._following = np.zeros((size, STATE_DIM), dtype=np.float32)
        self._actions = np.zeros((size, 1), dtype=np.float32)
        self._rewards = np.zeros((size, 1), dtype=np.float32)
        self._done = np.zeros((size, 1), dtype=np.float32)

    def __len__(self) -> int:
        return self.count

    def add(
        self,
        states: np.ndarray,
        actions: np.ndarray,
        rewards: np.ndarray,
        following: np.ndarray,
        done: np.ndarray,
    ) -> None:
        for row in range(len(states)):
            slot = self._next
            self._states[slot], self._following[slot] = states[row], following[row]
            self._actions[slot, 0], self._rewards[slot, 0], self._done[slot, 0] = (
                actions[row],
                rewards[row],
                done[row],
            )
            self._next = (slot + 1) % self.size
            self.count = min(self.count + 1, self.size)

    def sample(self, picks: np.ndarray) -> tuple[torch.Tensor, ...]:
        return tuple(
            torch.from_numpy(array[picks])
            for array in (self._states, self._actions, self._rewards, self._following, self._done)
        )
