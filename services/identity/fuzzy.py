"""Fuzzy matching of profiles: blocking, Fellegi–Sunter scoring and two thresholds. Pure logic.

Profiles (``touchpoint.profile.ingested.v1``) describe a person by name, birth date, address and national id,
often with typos and no identifier another system shares. Two profiles are compared field by field; each
comparison puts the pair in one *level* (exact, close, …, different), and each level carries the weight
``log2(m / u)``: ``m`` = P(level | same person), ``u`` = P(level | different people). The match weight is the
prior's ``log2(λ / (1 − λ))`` plus the weights of the comparisons both profiles can make (a missing value adds
nothing), and the match probability is ``2^w / (1 + 2^w)`` (Fellegi & Sunter 1969; the model Splink uses).

Only profiles sharing a *blocking key* are compared (phonetic name, birth date, national id, postcode with house
number, …), so a new profile costs a handful of comparisons, not one per stored profile.

The parameters below were estimated on the FEBRL datasets 1–3 (``python -m bench.identity_quality --tune``
prints them): ``m`` from pairs of the same person, ``u`` from random pairs of different people.

Clustering is the closure of pair decisions: a profile scoring at least the merge threshold against a profile of
another customer joins the two customers, so the customers formed do not depend on the order profiles arrive in
(as long as rules allow each merge).
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping

import jellyfish

FIELDS = ("given_name", "family_name", "birth_date", "national_id", "house_number", "street", "locality",
          "postcode", "region")
_NOT_WORD = re.compile(r"[^a-z0-9 ]+")
_SPACES = re.compile(r"\s+")


def _text(value: object) -> str | None:
    """Lower case, accents and punctuation removed, spaces collapsed; None when nothing is left."""
    if not isinstance(value, str):
        return None
    folded = unicodedata.normalize("NFKD", value).encode("ascii", "ignore").decode().lower()
    cleaned = _SPACES.sub(" ", _NOT_WORD.sub(" ", folded)).strip()
    return cleaned or None


def _digits(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    return "".join(ch for ch in value if ch.isalnum()).lower() or None


def attributes(profile: Mapping) -> dict[str, str]:
    """The comparable attributes of a profile's data (the contract's field names), normalised; absent ones
    omitted. This is what identity stores and compares."""
    address = profile.get("address") or {}
    raw = {
        "given_name": _text(profile.get("given_name")),
        "family_name": _text(profile.get("family_name")),
        "birth_date": _digits(profile.get("birth_date")),
        "national_id": _digits(profile.get("national_id")),
        "house_number": _digits(address.get("house_number")),
        "street": _text(address.get("street")),
        "locality": _text(address.get("locality")),
        "postcode": _digits(address.get("postcode")),
        "region": _text(address.get("region")),
    }
    return {k: v for k, v in raw.items() if v}


def block_keys(attrs: Mapping[str, str]) -> set[str]:
    """The blocking keys of a profile: two profiles are compared only when they share one."""
    given, family = attrs.get("given_name"), attrs.get("family_name")
    dob, nid = attrs.get("birth_date"), attrs.get("national_id")
    postcode, house = attrs.get("postcode"), attrs.get("house_number")
    keys = set()
    if given and family:
        keys.add(f"n:{jellyfish.soundex(family)}:{jellyfish.soundex(given)}")
    if dob:
        keys.add(f"d:{dob}")
    if nid:
        keys.add(f"i:{nid}")
    if postcode and house:
        keys.add(f"a:{postcode}:{house}")
    if family and dob:
        keys.add(f"f:{jellyfish.soundex(family)}:{dob[:4]}")
    if given and postcode:
        keys.add(f"g:{jellyfish.soundex(given)}:{postcode}")
    # Wide keys (one name, one postcode) catch pairs with typos everywhere else; the store reads a bounded
    # number of profiles per key, so a common name costs a bounded number of comparisons.
    if given:
        keys.add(f"gn:{given}")
    if family:
        keys.add(f"fn:{family}")
    if postcode:
        keys.add(f"pc:{postcode}")
    return keys


def _similar(thresholds: tuple[float, ...]) -> Callable[[str, str], int]:
    """Levels: 0 equal, then one per Jaro–Winkler threshold reached, last: different."""
    def level(a: str, b: str) -> int:
        if a == b:
            return 0
        sim = jellyfish.jaro_winkler_similarity(a, b)
        for i, t in enumerate(thresholds, start=1):
            if sim >= t:
                return i
        return len(thresholds) + 1
    return level


def _edits(limits: tuple[int, ...]) -> Callable[[str, str], int]:
    """Levels: 0 equal, then one per edit distance (Damerau–Levenshtein) reached, last: different."""
    def level(a: str, b: str) -> int:
        if a == b:
            return 0
        distance = jellyfish.damerau_levenshtein_distance(a, b)
        for i, t in enumerate(limits, start=1):
            if distance <= t:
                return i
        return len(limits) + 1
    return level


def _exact(a: str, b: str) -> int:
    return 0 if a == b else 1


COMPARISONS: dict[str, Callable[[str, str], int]] = {
    "given_name": _similar((0.92, 0.80)),
    "family_name": _similar((0.92, 0.80)),
    "birth_date": _edits((1, 2)),
    "national_id": _edits((1, 2)),
    "house_number": _exact,
    "street": _similar((0.90, 0.80)),
    "locality": _similar((0.90,)),
    "postcode": _edits((1,)),
    "region": _exact,
}


@dataclass(frozen=True)
class Model:
    """``m`` and ``u`` per comparison and level (index = level), and ``prior``: P(two random profiles of the
    tenant are the same person)."""

    m: Mapping[str, tuple[float, ...]]
    u: Mapping[str, tuple[float, ...]]
    prior: float
    weights: Mapping[str, tuple[float, ...]] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "weights", {
            name: tuple(math.log2(max(m, 1e-6) / max(u, 1e-6)) for m, u in zip(self.m[name], self.u[name]))
            for name in COMPARISONS
        })


@dataclass(frozen=True)
class Score:
    probability: float
    weight: float
    levels: dict[str, int]

    def evidence(self) -> dict:
        """What a reviewer sees: the probability, the weight and each comparison's level (0 = equal)."""
        return {"probability": round(self.probability, 6), "match_weight": round(self.weight, 3),
                "levels": dict(sorted(self.levels.items()))}


def score(model: Model, a: Mapping[str, str], b: Mapping[str, str]) -> Score:
    weight = math.log2(model.prior / (1 - model.prior))
    levels = {}
    for name, compare in COMPARISONS.items():
        x, y = a.get(name), b.get(name)
        if x and y:
            level = levels[name] = compare(x, y)
            weight += model.weights[name][level]
    probability = 1.0 / (1.0 + 2.0 ** -weight) if weight > -1000 else 0.0
    return Score(probability, weight, levels)


@dataclass(frozen=True)
class StoredProfile:
    """A profile identity keeps: the event that carried it, the customer it belongs to, its attributes."""

    key: tuple[str, str, str]  # tenant, source, event id
    customer: str
    attrs: Mapping[str, str]


class Candidates:
    """The profiles that may match a batch's profiles: those already stored that share a blocking key with one of
    them, and the batch's own as they are added. ``customer_of`` maps a stored customer id to its current one."""

    def __init__(self, stored: Iterable[StoredProfile]) -> None:
        self.by_block: dict[tuple[str, str], dict[tuple[str, str, str], StoredProfile]] = {}
        for profile in stored:
            self.add(profile)

    def add(self, profile: StoredProfile) -> None:
        """Index a profile under its blocking keys (a profile already indexed keeps its first entry)."""
        tenant = profile.key[0]
        for block in block_keys(profile.attrs):
            self.by_block.setdefault((tenant, block), {}).setdefault(profile.key, profile)

    def around(self, tenant: str, attrs: Mapping[str, str]) -> list[StoredProfile]:
        seen: dict[tuple[str, str, str], StoredProfile] = {}
        for block in sorted(block_keys(attrs)):
            for key, profile in self.by_block.get((tenant, block), {}).items():
                seen.setdefault(key, profile)
        return list(seen.values())


def best_by_customer(model: Model, attrs: Mapping[str, str], candidates: Iterable[StoredProfile],
                     canonical: Callable[[str], str], exclude: str) -> dict[str, Score]:
    """The best score of each (current) customer other than ``exclude`` among ``candidates``."""
    best: dict[str, Score] = {}
    for candidate in candidates:
        customer = canonical(candidate.customer)
        if customer == exclude:
            continue
        s = score(model, attrs, candidate.attrs)
        if customer not in best or s.weight > best[customer].weight:
            best[customer] = s
    return best


# Estimated on FEBRL 1–3 by ``python -m bench.fuzzy_tune`` (see the module docstring); levels as in COMPARISONS.
DEFAULT_MODEL = Model(
    m={
        "given_name": (0.601478, 0.143947, 0.02886, 0.225716),
        "family_name": (0.572198, 0.211437, 0.033692, 0.182672),
        "birth_date": (0.906597, 0.027904, 0.001284, 0.064215),
        "national_id": (0.862077, 0.073864, 0.003119, 0.06094),
        "house_number": (0.813764, 0.186236),
        "street": (0.529714, 0.372096, 0.000467, 0.097723),
        "locality": (0.64941, 0.261482, 0.089108),
        "postcode": (0.766462, 0.202897, 0.030641),
        "region": (0.944495, 0.055505),
    },
    u={
        "given_name": (0.003597, 0.001096, 0.005639, 0.989668),
        "family_name": (0.003352, 0.000666, 0.002428, 0.993553),
        "birth_date": (3.2e-05, 0.001029, 0.014305, 0.984634),
        "national_id": (5e-06, 1e-05, 0.00024, 0.999745),
        "house_number": (0.013854, 0.986146),
        "street": (0.000279, 0.000522, 0.013291, 0.985908),
        "locality": (0.000856, 0.00049, 0.998653),
        "postcode": (0.000946, 0.013158, 0.985896),
        "region": (0.223895, 0.776105),
    },
    prior=0.00035192,
)
