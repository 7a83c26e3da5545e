"""Exact planning on a transition table: value iteration, policy evaluation, finite-horizon optima.

Under a TimeLimit of H steps the best policy is time-dependent (backward induction, Puterman 1994
§4.5); a Q-table's greedy policy is stationary, and the best stationary policy can score lower
(FrozenLake 4x4 slippery, H=100: 0.7402 vs 0.7442). No known algorithm finds the best stationary
policy in polynomial time, so ``best_stationary_policy`` runs steepest coordinate ascent, each
candidate evaluated exactly, from several starts (value-iteration policies for a few discounts and
the time-dependent policy's first and middle steps).

Without a time limit, values are exact too: a linear solve on the states that end their episode
with probability 1, ±inf or 0 for the loops that never end (``total_rewards``), and at γ = 1 the
returned optimal policy is one that makes progress among the tied optimal actions
(``proper_optimal_policy``), since argmax over ties can loop forever.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from rlcode.tabular.envs import TransitionTable


def action_values(table: TransitionTable, values: np.ndarray, gamma: float) -> np.ndarray:
    """Q(s, a) = Σ_k p_k (r_k + γ [not terminated_k] V(s'_k)) for all s, a; returns [S, A]."""
    return table.expected_rewards + gamma * (table.continuing * values[table.next_states]).sum(-1)


def value_iteration(table: TransitionTable, gamma: float, tolerance: float = 1e-12,
                    max_iterations: int = 1_000_000) -> tuple[np.ndarray, np.ndarray]:
    """Infinite-horizon optimal (V [S], Q [S, A]); γ = 1 works when every optimal policy terminates."""
    values = np.zeros(table.n_states)
    for _ in range(max_iterations):
        q = action_values(table, values, gamma)
        new_values = q.max(1)
        if np.abs(new_values - values).max() < tolerance:
            return new_values, q
        values = new_values
    raise RuntimeError(f"value iteration did not converge in {max_iterations} sweeps at gamma={gamma}; "
                       "the undiscounted problem has no finite optimum here, use gamma < 1 or a time limit.")


def backward_induction(table: TransitionTable, gamma: float, horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """Finite-horizon optimum: values [H+1, S] with values[k] = best return with k steps left, and
    the time-dependent policy [H, S] with policies[k-1] = best action with k steps left."""
    values = np.zeros((horizon + 1, table.n_states))
    policies = np.zeros((horizon, table.n_states), dtype=np.int64)
    for steps_left in range(1, horizon + 1):
        q = action_values(table, values[steps_left - 1], gamma)
        policies[steps_left - 1] = q.argmax(1)
        values[steps_left] = q.max(1)
    return values, policies


def _policy_arrays(table: TransitionTable, policies: np.ndarray) -> tuple[np.ndarray, ...]:
    states = np.arange(table.n_states)
    rewards = table.expected_rewards[states, policies]  # [..., S]
    continuing = table.continuing[states, policies]  # [..., S, K]
    next_states = table.next_states[states, policies]  # [..., S, K]
    return rewards, continuing, next_states


def evaluate_policies(table: TransitionTable, policies: np.ndarray, gamma: float, horizon: int) -> np.ndarray:
    """Exact H-step values of a batch of stationary deterministic policies [D, S]; returns [D, S]."""
    rewards, continuing, next_states = _policy_arrays(table, policies)
    rows = np.arange(policies.shape[0])[:, None, None]
    values = np.zeros(policies.shape)  # [D, S]
    for _ in range(horizon):
        values = rewards + gamma * (continuing * values[rows, next_states]).sum(-1)
    return values


def evaluate_policy(table: TransitionTable, policy: np.ndarray, gamma: float = 1.0,
                    horizon: int | None = None) -> np.ndarray:
    """Exact values [S] of a deterministic policy [S]: H steps, or the infinite horizon when None."""
    policy = np.asarray(policy, dtype=np.int64)
    if horizon is not None:
        return evaluate_policies(table, policy[None], gamma, horizon)[0]
    return evaluate_stochastic_policy(table, np.eye(table.n_actions)[policy], gamma, None)


def evaluate_stochastic_policy(table: TransitionTable, probabilities: np.ndarray, gamma: float = 1.0,
                               horizon: int | None = None) -> np.ndarray:
    """Exact values [S] of a policy given as action probabilities [S, A]: H sweeps, or the infinite horizon.

    The infinite horizon is a linear solve, not sweeps to convergence: a proper policy can converge
    so slowly (a state that stays put with probability 0.999) that sweeps cannot tell it from one
    that never ends.
    """
    if horizon is not None:
        rewards = (probabilities * table.expected_rewards).sum(1)  # [S]
        values = np.zeros(table.n_states)
        for _ in range(horizon):
            future = (table.continuing * values[table.next_states]).sum(-1)  # [S, A]
            values = rewards + gamma * (probabilities * future).sum(1)
        return values
    transition, rewards = policy_chain(table, probabilities)
    if gamma < 1.0:  # γ P_π has spectral radius ≤ γ < 1, so I − γ P_π is invertible
        return np.linalg.solve(np.eye(table.n_states) - gamma * transition, rewards)
    return total_rewards(transition, rewards, terminating_states(table, probabilities))


def policy_chain(table: TransitionTable, probabilities: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The Markov chain of a policy [S, A]: continuing transitions P_π [S, S] and expected rewards r_π [S].

    P_π is sub-stochastic: row s sums to 1 minus the probability that the step from s terminates.
    """
    n = table.n_states
    weights = probabilities[:, :, None] * table.continuing  # [S, A, K]
    flat = (np.arange(n)[:, None, None] * n + table.next_states).ravel()
    transition = np.bincount(flat, weights.ravel(), minlength=n * n).reshape(n, n)
    return transition, (probabilities * table.expected_rewards).sum(1)


def terminating_states(table: TransitionTable, probabilities: np.ndarray) -> np.ndarray:
    """States [S] bool whose next step under the policy terminates with positive probability.

    Read from the table's structure, not from 1 − Σ P_π, so no rounding tolerance is needed.
    """
    ends = table.terminated & (table.probabilities > 0)  # [S, A, K]
    return np.asarray(((probabilities > 0) & ends.any(-1)).any(1))


def can_reach(adjacency: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """States [S] bool with a path (≥ 0 steps) into ``targets``: backward breadth-first search, a layer a sweep."""
    reached = targets.copy()
    while not np.array_equal(grown := reached | (adjacency @ reached), reached):
        reached = grown
    return reached


def reachability(adjacency: np.ndarray) -> np.ndarray:
    """Reflexive-transitive closure [S, S] of a boolean graph: closure[s, t] iff t can follow s.

    Repeated squaring, ⌈log2 S⌉ dense products at most: the toy-text tables have ≤ 500 states.
    Path counts are at most S^2, exact in float64, so the matmul is exact.
    """
    closure = (adjacency | np.eye(adjacency.shape[0], dtype=bool)).astype(np.float64)
    while True:
        squared = ((closure @ closure) > 0).astype(np.float64)
        if np.array_equal(squared, closure):
            return closure > 0
        closure = squared


def total_rewards(transition: np.ndarray, rewards: np.ndarray, terminating: np.ndarray) -> np.ndarray:
    """Expected undiscounted total reward [S] of a Markov chain with termination (γ = 1).

    Classification of finite chains (Kemeny & Snell, Finite Markov Chains, 1960; Puterman 1994,
    app. A): a state is recurrent iff it lies in a closed communicating class that never
    terminates. Such a class C earns its gain g = π_C · r_C per step forever (π_C its stationary
    distribution), so its value is +inf or −inf by the sign of g, and 0 when all its rewards are 0
    (a loop that earns nothing is worth 0, not inf). A zero-gain class with non-zero rewards
    (+1, −1, +1, ...) has no limit: nan. Every other state is transient: it terminates or enters a
    recurrent class with probability 1, so (I − P_TT) is invertible and v_T = (I − P_TT)⁻¹ r_T with
    the classes' values as boundary; a transient state that can enter a ±inf class is ±inf itself.
    """
    n = rewards.shape[0]
    if can_reach(transition > 0, terminating).all():  # the usual case, no closure needed: all transient
        return np.linalg.solve(np.eye(n) - transition, rewards)
    closure = reachability(transition > 0)
    can_terminate = closure @ terminating  # bool matmul: some reachable state terminates
    closed = ~(closure & ~closure.T).any(1)  # everything reachable from s leads back to s
    recurrent = closed & ~can_terminate
    values = np.zeros(n)
    for state in np.flatnonzero(recurrent):
        members = closure[state]  # a recurrent state reaches exactly its own class
        if state == members.argmax():  # once per class, at its first state
            values[members] = _class_value(transition[np.ix_(members, members)], rewards[members])
    transient = ~recurrent
    positive = transient & (closure @ (recurrent & (values == np.inf)))  # a transient state gets what it can reach
    negative = transient & (closure @ (recurrent & (values == -np.inf)))
    undefined = transient & (closure @ (recurrent & np.isnan(values)))
    values[positive], values[negative], values[undefined | (positive & negative)] = np.inf, -np.inf, np.nan
    finite = transient & ~(positive | negative | undefined)
    values[finite] = np.linalg.solve(np.eye(int(finite.sum())) - transition[np.ix_(finite, finite)],
                                     rewards[finite])
    return values


def _class_value(transition: np.ndarray, rewards: np.ndarray) -> float:
    """Total reward of a closed, never-terminating communicating class: 0, ±inf by its gain, or nan."""
    if not rewards.any():
        return 0.0
    # stationary distribution: π (P − I) = 0 with Σ π = 1, unique for one communicating class
    system = np.vstack([(transition - np.eye(len(rewards))).T, np.ones(len(rewards))])
    stationary = np.linalg.lstsq(system, np.eye(len(rewards) + 1)[-1], rcond=None)[0]
    gain = float(stationary @ rewards)
    if abs(gain) <= 1e-12 * np.abs(rewards).max():
        return float("nan")
    return float(np.sign(gain) * np.inf)


def start_value(table: TransitionTable, values: np.ndarray) -> float:
    """Expected value from the env's start-state distribution."""
    finite = table.initial > 0
    return float(table.initial[finite] @ values[..., finite].T)


def best_stationary_policy(table: TransitionTable, gamma: float, horizon: int,
                           starts: Sequence[np.ndarray], max_rounds: int = 10_000) -> tuple[np.ndarray, float]:
    """Best stationary policy found by steepest coordinate ascent on the exact H-step start value."""
    S, A = table.n_states, table.n_actions
    changed_state = np.repeat(np.arange(S), A)  # every single-state change: [S*A]
    changed_action = np.tile(np.arange(A), S)
    best_policy, best_value = np.asarray(starts[0]), -np.inf
    start_values = evaluate_policies(table, np.stack(starts), gamma, horizon) @ table.initial
    for index in np.argsort(-start_values)[:3]:
        policy, value = np.asarray(starts[index]).copy(), float(start_values[index])
        for _ in range(max_rounds):
            candidates = np.repeat(policy[None], S * A, axis=0)  # [S*A, S]
            candidates[np.arange(S * A), changed_state] = changed_action
            values = evaluate_policies(table, candidates, gamma, horizon) @ table.initial  # [S*A]
            if values.max() <= value + 1e-13:
                break
            policy, value = candidates[values.argmax()], float(values.max())
        if value > best_value:
            best_policy, best_value = policy, value
    return best_policy, best_value


def proper_optimal_policy(table: TransitionTable, q: np.ndarray, gamma: float,
                          tolerance: float = 1e-9) -> tuple[np.ndarray, np.ndarray]:
    """A stationary policy [S] that attains V* = max_a Q*(s, a) from every state, with its exact values [S].

    At γ = 1 argmax over Q* is not enough: actions tie exactly (FrozenLake without slipping: walking
    into a wall keeps V* = 1), and a policy made of tied actions can loop forever and earn 0. An
    optimal policy must use optimal actions only ("conserving") and also get somewhere
    ("equalizing"; Puterman 1994 §7.2; for stochastic shortest paths Bertsekas & Tsitsiklis 1991).
    So among the optimal actions, Q*(s, a) ≥ V*(s) − tolerance, we pick ones that make progress:
    layer 0 holds the states with an optimal action that can end the episode (taken there, so a
    state worth 0 ends its episode rather than loop), layer k+1 the states with an optimal action
    that reaches layer ≤ k with positive probability (taken there). From layer k the episode then
    ends within k + 1 steps with positive probability. A state from which no optimal action leads
    to an end keeps its best optimal action. The policy is evaluated exactly and must give V*
    everywhere, else we raise.
    """
    values = q.max(1)
    scale = max(1.0, float(np.abs(values).max()))
    optimal = q >= values[:, None] - tolerance * scale  # [S, A]
    possible = table.probabilities > 0  # [S, A, K]
    progress = optimal & (table.terminated & possible).any(-1)  # layer 0: optimal actions that can end
    policy, layered = q.argmax(1), np.zeros(table.n_states, dtype=bool)
    while (new := progress.any(1) & ~layered).any():
        policy[new] = np.where(progress, q, -np.inf)[new].argmax(1)
        layered |= new
        progress = optimal & (possible & layered[table.next_states]).any(-1)  # reaches an earlier layer
    policy_values = evaluate_policy(table, policy, gamma)
    error = np.abs(policy_values - values)
    if not np.all(error <= 1e-6 * scale):  # nan and inf fail too
        worst = int(np.nanargmax(np.where(np.isnan(error), np.inf, error)))
        raise RuntimeError(f"no stationary policy made of optimal actions attains V* here (state {worst}: "
                           f"V*={values[worst]:.6g}, policy value {policy_values[worst]:.6g}); value iteration "
                           "stopped short of V* or rewards of both signs loop; use gamma < 1 or a time limit.")
    return policy, policy_values


@dataclass(frozen=True)
class Optimum:
    """Start-state optima under one discount; stationary == time_dependent without a time limit."""

    gamma: float
    horizon: int | None
    infinite_horizon: float | None  # None when the undiscounted infinite-horizon problem is unbounded
    stationary: float
    time_dependent: float
    policy: np.ndarray  # [S] a best stationary policy


def optimum(table: TransitionTable, gamma: float = 1.0, horizon: int | None = None) -> Optimum:
    """The exact optimum from the start distribution, with the best stationary policy."""
    try:
        infinite_values, infinite_q = value_iteration(table, gamma)
        infinite: float | None = start_value(table, infinite_values)
    except RuntimeError:
        infinite_q, infinite = None, None
    if horizon is None:
        if infinite_q is None:
            raise RuntimeError("the undiscounted problem without a time limit has no finite optimum here; "
                               "set max_episode_steps or gamma < 1.")
        assert infinite is not None
        policy, policy_values = proper_optimal_policy(table, infinite_q, gamma)
        exact = start_value(table, policy_values)
        return Optimum(gamma, None, infinite, exact, exact, policy)
    values, policies = backward_induction(table, gamma, horizon)
    time_dependent = start_value(table, values[horizon])
    starts = [policies[horizon - 1], policies[horizon // 2]]
    for start_gamma in (0.99, 0.999, 1.0):
        if start_gamma <= gamma:
            try:
                starts.insert(0, value_iteration(table, start_gamma, max_iterations=100_000)[1].argmax(1))
            except RuntimeError:
                pass
    start_values = evaluate_policies(table, np.stack(starts), gamma, horizon) @ table.initial
    if start_values.max() >= time_dependent - 1e-12:  # a stationary policy already reaches the bound
        policy, stationary = starts[int(start_values.argmax())], float(start_values.max())
    else:
        policy, stationary = best_stationary_policy(table, gamma, horizon, starts)
    return Optimum(gamma, horizon, infinite, stationary, time_dependent, policy)


def gap_percent(optimum_value: float, value: float) -> float:
    """How far ``value`` falls short of ``optimum_value``, in percent of |optimum| (0 if optimum is 0)."""
    if not np.isfinite(value):
        return float("inf")
    scale = abs(optimum_value)
    return 0.0 if scale == 0 else float(100.0 * (optimum_value - value) / scale)
