"""`report/summary.json`: what pretraining and distillation buy, as numbers scripts can read.

    {"ssl_vs_random": [{"arch", "width", "protocol", "pretrained", "random_init", "supervised",
                        "supervised_seeds", "gap_closed", "difference_ci95": [lo, hi], "seeds"}],
     "kd_vs_twin":    [{"teacher", "student", "metric", "student_value", "twin", "difference_ci95": [lo, hi], "seeds"}],
     "claims":        [{"claim", "holds", "evidence"}]}

(The issue's sketch names the student's value "student" as well as its architecture; JSON keeps
one value per key, so the value is `student_value`.) Accuracies are fractions. A difference is paired by seed (a student and its from-scratch twin
share seed and budget; a pretrained network is compared with the random-init evaluation of its
architecture) and its 95% interval is Student's t over the seeds; with one seed there is no
interval (null). A claim holds (`true`) when every interval lies on its side of 0, fails
(`false`) when one lies wholly on the other side, and is undecided (`null`) otherwise.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from dataclasses import dataclass
from typing import Any, Sequence

from vidkd.protocol_specs import HEADLINE
from vidkd.report.results import MAIN_METRIC, SUPERVISED, Group, Run
from vidkd.report.stats import baseline_group, first_epoch_reaching, seeds_phrase, teacher_group, teacher_label

# two-sided 95% quantiles of Student's t by degrees of freedom (beyond the table: the normal 1.96)
T_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262,
         10: 2.228, 12: 2.179, 15: 2.131, 20: 2.086, 30: 2.042}
ABOUT_HALF = 0.6  # "about half the epochs": at most 60% of the twin's
EPOCH_METRICS = ("epochs_to_twin_best",)  # kd_vs_twin metrics counted in epochs; the others are accuracies


@dataclass(frozen=True)
class SslRow:
    """One row of `ssl_vs_random`: a pretrained network against itself at random initialisation."""

    arch: str
    width: float | None
    protocol: str
    pretrained: float
    random_init: float
    supervised: float | None
    supervised_seeds: list[int | None]
    gap_closed: float | None
    difference_ci95: list[float] | None
    seeds: list[int | None]

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, values: dict[str, Any]) -> SslRow:
        return cls(**values)


@dataclass(frozen=True)
class KdRow:
    """One row of `kd_vs_twin`: a student against its same-seed, same-budget from-scratch twin."""

    teacher: str
    student: str
    metric: str
    student_value: float
    twin: float
    difference_ci95: list[float] | None
    seeds: list[int | None]

    @property
    def in_epochs(self) -> bool:
        """Counted in epochs (else an accuracy, shown in points)."""
        return self.metric in EPOCH_METRICS

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, values: dict[str, Any]) -> KdRow:
        return cls(**values)


def t_quantile(df: int) -> float:
    known = [d for d in T_975 if d <= df]
    return T_975[max(known)] if df <= 30 else 1.96


def ci95(differences: Sequence[float]) -> list[float] | None:
    """95% interval of the mean of paired differences; None below two seeds."""
    if len(differences) < 2:
        return None
    mean = statistics.fmean(differences)
    half = t_quantile(len(differences) - 1) * statistics.stdev(differences) / math.sqrt(len(differences))
    return [mean - half, mean + half]


def headline_value(run: Run, protocol: str, key: str | None = None) -> float | None:
    """The headline number of `protocol`, read from `run.evals[key or protocol]`."""
    value = run.evals.get(key or protocol, {}).get(HEADLINE[protocol])
    return float(value) if isinstance(value, (int, float)) else None


def _supervised(run: Run) -> float | None:
    return headline_value(run, "finetune", SUPERVISED)


def _best_pretext(run: Run) -> tuple[float | None, int | None]:
    """(best validation pretext accuracy, the first epoch reaching it)."""
    epochs, values = run.series(MAIN_METRIC)
    if not values:
        return None, None
    best = max(values)
    return best, first_epoch_reaching(epochs, values, best)


def ssl_vs_random(groups: Sequence[Group], random_groups: Sequence[Group]) -> list[SslRow]:
    """Each baseline against the same network at random initialisation, paired by seed.

    A random network evaluated without a seed (`random_<arch>`, older grids) is the floor of every
    seed. `supervised` is the mean over `supervised_seeds` of the random network fine-tuned on every
    training label; `gap_closed` is the share of the random-to-supervised gap the pretrained mean closes.
    """
    rows = []
    for group in groups:
        if group.kind != "baseline":
            continue
        random = next((g for g in random_groups if g.arch == group.arch), None)
        if random is None:
            continue
        by_seed = {run.seed: run for run in random.runs}
        paired_seeds = {run.seed for run in group.runs}
        ceilings = {run.seed: value for run in random.runs if (run.seed in paired_seeds or run.seed is None)
                    and (value := _supervised(run)) is not None}
        supervised = statistics.fmean(ceilings.values()) if ceilings else None
        for protocol in HEADLINE:
            pairs = []
            for run in group.runs:
                reference = by_seed.get(run.seed, by_seed.get(None))
                value = headline_value(run, protocol)
                floor = headline_value(reference, protocol) if reference is not None else None
                if value is not None and floor is not None:
                    pairs.append((run.seed, value, floor))
            if not pairs:
                continue
            pretrained = statistics.fmean(v for _, v, _ in pairs)
            floor = statistics.fmean(f for _, _, f in pairs)
            closed = ((pretrained - floor) / (supervised - floor)
                      if supervised is not None and protocol in ("linear", "knn") and supervised > floor else None)
            rows.append(SslRow(group.arch, group.width, protocol, pretrained, floor, supervised, list(ceilings), closed,
                               ci95([v - f for _, v, f in pairs]), [seed for seed, _, _ in pairs]))
    return rows


def _paired(student: Group, twin: Group) -> list[tuple[Run, Run]]:
    twins = {run.seed: run for run in twin.runs}
    return [(run, twins[run.seed]) for run in student.runs if run.seed in twins]


def _row(teacher: str, student: str, metric: str, pairs: list[tuple[int, float, float]]) -> KdRow:
    return KdRow(teacher, student, metric, statistics.fmean(s for _, s, _ in pairs),
                 statistics.fmean(t for _, _, t in pairs), ci95([s - t for _, s, t in pairs]),
                 [seed for seed, _, _ in pairs])


def kd_vs_twin(groups: Sequence[Group]) -> list[KdRow]:
    """Per student and metric: the student against its same-seed, same-budget from-scratch twin."""
    rows = []
    for group in groups:
        if group.kind != "student":
            continue
        twin = baseline_group(groups, group.arch, group.width)
        if twin is None:
            continue
        pairs = _paired(group, twin)
        best, epochs = [], []
        for student, baseline in pairs:
            s_best, _ = _best_pretext(student)
            t_best, t_epoch = _best_pretext(baseline)
            if s_best is None or t_best is None:
                continue
            best.append((student.seed, s_best, t_best))
            s_epochs, s_values = student.series(MAIN_METRIC)
            reached = first_epoch_reaching(s_epochs, s_values, t_best)
            if reached is not None and t_epoch is not None:
                epochs.append((student.seed, float(reached), float(t_epoch)))
        teacher, arch = teacher_label(group), group.arch
        if best:
            rows.append(_row(teacher, arch, "best_val_pretext_acc", best))
        if epochs:
            rows.append(_row(teacher, arch, "epochs_to_twin_best", epochs))
        for protocol in HEADLINE:
            values = [(s.seed, a, b) for s, t in pairs
                      if (a := headline_value(s, protocol)) is not None and (b := headline_value(t, protocol)) is not None]
            if values:
                rows.append(_row(teacher, arch, f"{protocol}_{HEADLINE[protocol]}", values))
    return rows


def _decided(interval: list[float] | None, above: bool) -> bool | None:
    """True: the whole interval is on the claimed side of 0; False: the whole interval is on the
    other side; None: it straddles 0 (or there is no interval) and the data decide nothing."""
    if interval is None:
        return None
    favourable, unfavourable = (interval[0] > 0, interval[1] < 0) if above else (interval[1] < 0, interval[0] > 0)
    return True if favourable else (False if unfavourable else None)


def _fmt(interval: list[float] | None, scale: float = 100.0, unit: str = " points") -> str:
    if interval is None:
        return "no interval (one seed)"
    return f"95% interval of the difference [{scale * interval[0]:+.1f}, {scale * interval[1]:+.1f}]{unit}"


def claims(kd_rows: Sequence[KdRow], groups: Sequence[Group]) -> list[dict[str, Any]]:
    """The KD paper's four claims, each decided (True/False) only when every interval decides it."""
    out = []

    def verdict(claim: str, checks: list[tuple[bool | None, str]]) -> None:
        if not checks:
            out.append({"claim": claim, "holds": None, "evidence": "no student with a finished twin"})
            return
        results = [c for c, _ in checks]
        holds = False if False in results else (True if all(c is True for c in results) else None)
        out.append({"claim": claim, "holds": holds, "evidence": "; ".join(text for _, text in checks)})

    faster = [r for r in kd_rows if r.metric == "epochs_to_twin_best"]
    verdict("students converge faster than their twins",
            [(_decided(r.difference_ci95, above=False),
              f"{r.teacher}→{r.student}: {r.student_value:.1f} vs {r.twin:.1f} epochs, "
              f"{_fmt(r.difference_ci95, 1.0, ' epochs')}") for r in faster])
    half = []
    for r in faster:
        ratio = r.student_value / r.twin if r.twin else None
        decided = None if r.difference_ci95 is None or ratio is None else ratio <= ABOUT_HALF
        half.append((decided, f"{r.teacher}→{r.student}: {ratio:.2f} of the twin's epochs" if ratio is not None
                     else f"{r.teacher}→{r.student}: twin epochs unknown"))
    verdict("students reach the twin's best in about half the epochs", half)

    beats = []
    for group in groups:
        if group.kind != "student":
            continue
        teacher = teacher_group(groups, group)
        if teacher is None:
            continue
        pairs = [(s.seed, a, b) for s, t in _paired(group, teacher)
                 if (a := _best_pretext(s)[0]) is not None and (b := _best_pretext(t)[0]) is not None]
        if pairs:
            interval = ci95([a - b for _, a, b in pairs])
            beats.append((_decided(interval, above=True),
                          f"{teacher_label(group)}→{group.arch}: best val pretext {100 * statistics.fmean(a for _, a, _ in pairs):.1f}% "
                          f"vs teacher {100 * statistics.fmean(b for _, _, b in pairs):.1f}%, {_fmt(interval)}"))
    if beats:  # the paper's claim is that a student *can* beat its teacher: one decided case suffices
        holds = True if any(c for c, _ in beats) else (None if any(c is None for c, _ in beats) else False)
        out.append({"claim": "a student can beat its teacher", "holds": holds,
                    "evidence": "; ".join(text for _, text in beats)})
    else:
        verdict("a student can beat its teacher", [])

    # a row's teacher is its architecture, then a study's budget and arm ('r3d e32 (relational)')
    cross = [r for r in kd_rows if r.teacher.split(" ")[0] != r.student and r.metric in ("epochs_to_twin_best",
                                                                                        "best_val_pretext_acc")]
    verdict("distillation works across architectures",
            [(_decided(r.difference_ci95, above=r.metric == "best_val_pretext_acc"),
              f"{r.teacher}→{r.student} {r.metric}: "
              f"{_fmt(r.difference_ci95, 1.0, ' epochs') if r.in_epochs else _fmt(r.difference_ci95)}")
             for r in cross])
    return out


SSL_MARGIN = 0.10  # the benchmark's bar: a linear probe at least 10 points above random initialisation
GAP_SHARE = 1 / 3  # and at least a third of the way from random initialisation to the supervised ceiling


def ssl_claims(ssl_rows: Sequence[SslRow]) -> list[dict[str, Any]]:
    """What pretraining buys, decided per architecture by the paired intervals over seeds."""
    out = []

    def verdict(claim: str, rows: list[SslRow], decide) -> None:
        if not rows:
            return
        checks = [(decide(r), f"{r.arch}: {100 * r.pretrained:.1f}% vs {100 * r.random_init:.1f}%, "
                              f"{_fmt(r.difference_ci95)}") for r in rows]
        results = [c for c, _ in checks]
        holds = False if False in results else (True if all(c is True for c in results) else None)
        out.append({"claim": claim, "holds": holds, "evidence": "; ".join(text for _, text in checks)})

    def by_margin(row: SslRow) -> bool | None:
        interval = row.difference_ci95
        if interval is None:
            return None
        if interval[0] > 0 and row.pretrained - row.random_init >= SSL_MARGIN:
            return True
        return False if interval[1] < SSL_MARGIN else None

    rows = {protocol: [r for r in ssl_rows if r.protocol == protocol] for protocol in HEADLINE}
    verdict(f"pretraining beats random init by at least {100 * SSL_MARGIN:.0f} points of linear-probe top-1",
            rows["linear"], by_margin)
    verdict("pretraining beats random init on kNN top-1", rows["knn"],
            lambda r: _decided(r.difference_ci95, above=True))
    verdict("pretraining beats random init when fine-tuning on few labels", rows["finetune"],
            lambda r: _decided(r.difference_ci95, above=True))
    closing = [r for r in rows["linear"] if r.gap_closed is not None]
    if closing:  # a share of means: decided like the rest only with two seeds or more
        decided = all(len(r.seeds) >= 2 for r in closing)
        out.append({"claim": "the linear probe closes at least a third of the gap to the supervised ceiling",
                    "holds": all(r.gap_closed >= GAP_SHARE for r in closing) if decided else None,
                    "evidence": "; ".join(f"{r.arch}: {100 * r.gap_closed:.0f}% of the gap (random "
                                          f"{100 * r.random_init:.1f}%, pretrained {100 * r.pretrained:.1f}%, "
                                          f"supervised {100 * r.supervised:.1f}%{_of_seeds(r)})"
                                          for r in closing)})
    return out


def _of_seeds(row: SslRow) -> str:
    """'; means over seeds', or where the ceiling has fewer seeds than the pair: '; supervised: seed 0'."""
    ceiling = [seed for seed in row.supervised_seeds or [] if seed is not None]
    if ceiling and sorted(ceiling) != sorted(row.seeds):
        return f"; means over seeds, supervised: {seeds_phrase(ceiling)}"
    return "; means over seeds"


def build_summary(groups: Sequence[Group], random_groups: Sequence[Group]) -> dict[str, Any]:
    kd_rows = kd_vs_twin(groups)
    ssl_rows = ssl_vs_random(groups, random_groups)
    return {"ssl_vs_random": [r.to_json() for r in ssl_rows], "kd_vs_twin": [r.to_json() for r in kd_rows],
            "claims": ssl_claims(ssl_rows) + claims(kd_rows, groups)}
