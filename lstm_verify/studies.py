"""Two questions users bring to the report, answered from its training runs (:mod:`.tasks`).

* **Greff et al. 2015** ("LSTM: A Search Space Odyssey") asked which parts of the LSTM matter:
  each of their eight variants removes or changes one part of the vanilla LSTM (with
  peepholes, ``lstm_peephole``). :func:`greff` compares every variant with the vanilla cell on
  the adding and temporal-order problems: success rate with a 95% Wilson interval, Fisher's
  exact test on the success counts, and a Mann-Whitney test on the updates until solved (an
  unsolved run counts as the budget, the worst), then a verdict against Greff's finding.
* **Hochreiter & Schmidhuber 1997** showed the LSTM bridging lags of 100 to 1000 steps:
  :func:`long_lags` summarises the runs at those lags, with their wall time.

The statistics come from SciPy (the ``report`` extra).
"""

from __future__ import annotations

import numpy as np

VANILLA = "lstm_peephole"  # Greff's vanilla LSTM: input, forget and output gates, peepholes, tanh twice

# Greff et al. 2015, section 5.1 and figure 3 (TIMIT speech, IAM handwriting, JSB Chorales music):
# (what the change is, "hurts" or "none", what they found)
GREFF_FINDINGS = {
    "greff_nig": ("no input gate", "hurts", "significantly worse on speech and handwriting; no significant "
                  "effect on music"),
    "greff_nfg": ("no forget gate", "hurts", "significantly worse on all three datasets"),
    "greff_nog": ("no output gate", "hurts", "significantly worse on speech and handwriting; no significant "
                  "effect on music"),
    "greff_niaf": ("no input activation", "hurts", "significantly worse on speech and handwriting; no "
                   "significant effect on music"),
    "greff_noaf": ("no output activation", "hurts", "significantly worse on all three datasets"),
    "greff_np": ("no peepholes", "none", "no significant change on any dataset"),
    "greff_cifg": ("input and forget gates coupled", "none", "no significant change on any dataset"),
    "greff_fgr": ("full gate recurrence", "none", "no significant change on speech and handwriting; "
                  "significantly worse on music"),
}  # fmt: skip
ALPHA = 0.05  # the level of every test


def _stats():
    from .extras import require

    return require("scipy.stats", "the report's statistics", extra="report")


def wilson(k: int, n: int) -> tuple[float, float]:
    """The 95% Wilson score interval of a success rate k/n."""
    if n == 0:
        return 0.0, 1.0
    ci = _stats().binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    return float(ci.low), float(ci.high)


def _updates(runs, budget) -> list[int]:
    """Updates until solved; an unsolved run counts as one more than the budget (worse than any solved)."""
    return [r["steps"] if r["solved"] else budget + 1 for r in runs]


def compare(variant: list[dict], vanilla: list[dict], budget: int) -> dict:
    """One variant's runs against the vanilla cell's on one task: success counts, Fisher's exact
    test on them, the median updates until solved, and a Mann-Whitney test on those; ``effect``
    is "worse", "better" or "none" (no test below ALPHA)."""
    st = _stats()
    k, n = sum(r["solved"] for r in variant), len(variant)
    k0, n0 = sum(r["solved"] for r in vanilla), len(vanilla)
    p_success = float(st.fisher_exact([[k, n - k], [k0, n0 - k0]]).pvalue)
    a, b = _updates(variant, budget), _updates(vanilla, budget)
    p_updates = float(st.mannwhitneyu(a, b, alternative="two-sided").pvalue) if a != b else 1.0
    effect = "none"
    if p_success < ALPHA:
        effect = "worse" if k / n < k0 / n0 else "better"
    elif p_updates < ALPHA:
        effect = "worse" if np.median(a) > np.median(b) else "better"
    return {"solved": k, "runs": n, "ci": wilson(k, n), "median_updates": float(np.median(a)),
            "median_updates_vanilla": float(np.median(b)), "p_success": p_success, "p_updates": p_updates,
            "effect": effect}  # fmt: skip


def greff(runs: list[dict], budget: int) -> list[dict]:
    """Per variant present in ``runs`` (training runs of one initialisation): its comparison with
    the vanilla cell per task, the verdict against Greff's finding, and a sentence saying so.
    Verdicts: where Greff found harm, *agree* if a task shows it worse (and none better),
    *disagree* if a task shows it better, else *cannot separate here*; where they found none,
    *agree* if no task separates it from the vanilla cell, else *disagree*; with too few seeds for
    any difference to be significant, *cannot separate here*."""
    tasks = sorted({r["task"] for r in runs})
    by = lambda c, t: [r for r in runs if r["cell"] == c and r["task"] == t]  # noqa: E731
    out = []
    for variant, (change, found, detail) in GREFF_FINDINGS.items():
        if not by(variant, tasks[0] if tasks else None) or not by(VANILLA, tasks[0] if tasks else None):
            continue
        per = {t: compare(by(variant, t), by(VANILLA, t), budget) for t in tasks}
        effects = {p["effect"] for p in per.values()}
        if not any(_separable(len(by(variant, t)), len(by(VANILLA, t))) for t in tasks):
            verdict = "cannot separate here"  # too few seeds: not even 0/n against n/n would be significant
        elif found == "hurts":
            verdict = ("disagree" if "better" in effects else "agree" if "worse" in effects
                       else "cannot separate here")  # fmt: skip
        else:
            verdict = "agree" if effects == {"none"} else "disagree"
        here = "; ".join(f"{t}: {p['solved']}/{p['runs']} solved against {_vanilla(runs, t)}, "
                         f"{_effect_words(p)}" for t, p in per.items())  # fmt: skip
        sentence = (f"{variant} ({change}): Greff et al.: {detail}. Here, {here}. "
                    f"{verdict[0].upper() + verdict[1:]}.")  # fmt: skip
        out.append({"cell": variant, "change": change, "greff": found, "greff_detail": detail, "tasks": per,
                    "verdict": verdict, "sentence": sentence})  # fmt: skip
    return out


def _separable(n: int, n0: int) -> bool:
    """Whether n runs against n0 can show any difference at ALPHA: all solved against none can."""
    return n > 0 and n0 > 0 and _stats().fisher_exact([[n, 0], [0, n0]]).pvalue < ALPHA


def _vanilla(runs, task) -> str:
    rs = [r for r in runs if r["cell"] == VANILLA and r["task"] == task]
    return f"{sum(r['solved'] for r in rs)}/{len(rs)} for {VANILLA}"


def _effect_words(p) -> str:
    if p["effect"] == "none":
        return f"not separated (Fisher p = {p['p_success']:.2g}, updates p = {p['p_updates']:.2g})"
    if p["p_success"] < ALPHA:
        return f"{p['effect']} (Fisher p = {p['p_success']:.2g})"
    return (f"{p['effect']} in updates until solved (median {p['median_updates']:.0f} against "
            f"{p['median_updates_vanilla']:.0f}, Mann-Whitney p = {p['p_updates']:.2g})")


def groups(runs: list[dict]) -> list[tuple[tuple, list[dict]]]:
    """Runs grouped by (task, cell, init, T), in that order."""
    keys = sorted({(r["task"], r["cell"], r["init"], r["T"]) for r in runs})
    return [(k, [r for r in runs if (r["task"], r["cell"], r["init"], r["T"]) == k]) for k in keys]


def summary(runs: list[dict]) -> list[dict]:
    """Per (task, cell, init, T): success count with its Wilson interval, updates, metrics and
    wall time of the runs."""
    out = []
    for (task, cell, init, T), rs in groups(runs):
        k = sum(r["solved"] for r in rs)
        out.append({"task": task, "cell": cell, "init": init, "T": T, "solved": k, "runs": len(rs),
                    "ci": wilson(k, len(rs)), "updates": [r["steps"] for r in rs],
                    "metrics": [r["metric"] for r in rs], "seconds": sum(r["seconds"] for r in rs)})  # fmt: skip
    return out
