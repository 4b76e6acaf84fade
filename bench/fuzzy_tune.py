"""Estimate the fuzzy-matching model on FEBRL 1–3 and choose the thresholds, offline (no services).

``python -m bench.fuzzy_tune`` prints, from the labelled tuning datasets:
- ``m`` per comparison level: the share of same-person pairs at that level;
- ``u`` per comparison level: the share of random different-person pairs at that level;
- the prior: same-person pairs among all pairs;
- the blocking recall (same-person pairs sharing a blocking key) and, per merge threshold, the pairwise F1 of the
  clusters the pair decisions form, so ``services/identity/fuzzy.py`` can carry the parameters and the rules
  their default threshold. The model used for the threshold table is the one estimated in the same run.
"""

from __future__ import annotations

import argparse
import itertools
import random
from collections import Counter

from bench.febrl import Record, load, pairwise
from services.identity import fuzzy

TUNING = ("febrl1", "febrl2", "febrl3")
THRESHOLDS = (0.5, 0.8, 0.9, 0.95, 0.99, 0.999, 0.9999)


def profile_data(record: Record) -> dict:
    """A FEBRL record as the data of a ``touchpoint.profile.updated.v1`` event (birth dates that are not eight
    digits are left out: the contract's shape is ``YYYY-MM-DD``)."""
    dob = record.date_of_birth
    data = {
        "identifiers": [{"type": "crm_id", "value": record.rec_id}],
        "given_name": record.given_name,
        "family_name": record.surname,
        "birth_date": f"{dob[:4]}-{dob[4:6]}-{dob[6:]}" if dob and len(dob) == 8 and dob.isdigit() else None,
        "national_id": record.soc_sec_id,
        "address": {"house_number": record.street_number, "street": record.address_1, "extra": record.address_2,
                    "locality": record.suburb, "postcode": record.postcode, "region": record.state},
    }
    data["address"] = {k: v for k, v in data["address"].items() if v} or None
    return {k: v for k, v in data.items() if v}


def _levels(a: dict, b: dict) -> dict[str, int]:
    return {n: c(a[n], b[n]) for n, c in fuzzy.COMPARISONS.items() if a.get(n) and b.get(n)}


def estimate(datasets: dict[str, list[Record]], seed: int = 7) -> fuzzy.Model:
    """m from every same-person pair, u from 200,000 random different-person pairs, over the datasets given."""
    rng = random.Random(seed)
    m_counts: dict[str, Counter] = {n: Counter() for n in fuzzy.COMPARISONS}
    u_counts: dict[str, Counter] = {n: Counter() for n in fuzzy.COMPARISONS}
    same = total = 0
    for records in datasets.values():
        attrs = [fuzzy.attributes(profile_data(r)) for r in records]
        by_entity: dict[str, list[int]] = {}
        for i, r in enumerate(records):
            by_entity.setdefault(r.entity, []).append(i)
        for members in by_entity.values():
            for i, j in itertools.combinations(members, 2):
                for n, lv in _levels(attrs[i], attrs[j]).items():
                    m_counts[n][lv] += 1
                same += 1
        total += len(records) * (len(records) - 1) // 2
        for _ in range(200_000 // len(datasets)):
            i, j = rng.randrange(len(records)), rng.randrange(len(records))
            if records[i].entity != records[j].entity:
                for n, lv in _levels(attrs[i], attrs[j]).items():
                    u_counts[n][lv] += 1
    def shares(counts: Counter, levels: int) -> tuple[float, ...]:
        n = sum(counts.values()) + levels  # add-one smoothing: no level is impossible
        return tuple(round((counts[lv] + 1) / n, 6) for lv in range(levels))
    levels = {n: _level_count(n) for n in fuzzy.COMPARISONS}
    return fuzzy.Model(m={n: shares(m_counts[n], levels[n]) for n in fuzzy.COMPARISONS},
                       u={n: shares(u_counts[n], levels[n]) for n in fuzzy.COMPARISONS},
                       prior=round(same / total, 8))


def _level_count(name: str) -> int:
    compare = fuzzy.COMPARISONS[name]
    return max(compare(a, b) for a, b in (("a", "a"), ("abc", "xyz"), ("1", "2"))) + 1


def offline_clusters(model: fuzzy.Model, records: list[Record], threshold: float) -> tuple[dict[str, str], int]:
    """Clusters of the pair decisions at ``threshold`` over blocked pairs (union–find), and the pairs compared."""
    attrs = [fuzzy.attributes(profile_data(r)) for r in records]
    parent = list(range(len(records)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i
    compared = 0
    for i, j in blocked_pairs(attrs):
        compared += 1
        if fuzzy.score(model, attrs[i], attrs[j]).probability >= threshold:
            parent[find(i)] = find(j)
    return {r.rec_id: str(find(i)) for i, r in enumerate(records)}, compared


def blocked_pairs(attrs: list[dict]) -> set[tuple[int, int]]:
    blocks: dict[str, list[int]] = {}
    for i, a in enumerate(attrs):
        for b in fuzzy.block_keys(a):
            blocks.setdefault(b, []).append(i)
    return {(i, j) for members in blocks.values() for i, j in itertools.combinations(members, 2)}


def blocking_recall(records: list[Record]) -> float:
    attrs = [fuzzy.attributes(profile_data(r)) for r in records]
    pairs = blocked_pairs(attrs)
    true = _true_pairs(records)
    return sum(1 for p in true if p in pairs) / max(len(true), 1)


def _true_pairs(records: list[Record]) -> list[tuple[int, int]]:
    by_entity: dict[str, list[int]] = {}
    for i, r in enumerate(records):
        by_entity.setdefault(r.entity, []).append(i)
    return [p for members in by_entity.values() for p in itertools.combinations(sorted(members), 2)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="*", default=list(TUNING))
    args = parser.parse_args()
    datasets = {name: load(name) for name in args.datasets}
    model = estimate(datasets)
    print("m =", dict(model.m))
    print("u =", dict(model.u))
    print("prior =", model.prior)
    for name, records in datasets.items():
        print(f"{name}: blocking recall {blocking_recall(records):.4f}")
    print("threshold  " + "  ".join(f"{n:>8}" for n in datasets) + "      mean F1")
    for threshold in THRESHOLDS:
        f1s = [pairwise(offline_clusters(model, records, threshold)[0], records).f1 for records in datasets.values()]
        print(f"{threshold:<9}  " + "  ".join(f"{f:8.4f}" for f in f1s) + f"  {sum(f1s) / len(f1s):10.4f}")


if __name__ == "__main__":
    main()
