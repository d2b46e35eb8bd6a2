"""Release timing: none, fixed, exponential (Poisson mixing) and pool (k distinct providers per release)."""

from __future__ import annotations

import math
import random
from typing import Any

import pytest

from cutout.model.timestamps import parse_us
from tests.api.conftest import Caller, World, indicator

T0 = parse_us("2026-11-26T00:00:00Z")
SECOND = 1_000_000


class Clock:
    def __init__(self, start: int) -> None:
        self.now = start

    def __call__(self) -> int:
        return self.now


def ranks(values: list[float]) -> list[float]:
    order = sorted(range(len(values)), key=values.__getitem__)
    out = [0.0] * len(values)
    i = 0
    while i < len(order):  # ties share their mean rank
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            out[order[k]] = (i + j) / 2
        i = j + 1
    return out


def spearman(xs: list[float], ys: list[float]) -> float:
    rx, ry = ranks(xs), ranks(ys)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry, strict=True))
    return cov / math.sqrt(sum((a - mx) ** 2 for a in rx) * sum((b - my) ** 2 for b in ry))


def _submit_one_a_second(world: World, n: int, clock: Clock) -> None:
    for i in range(n):
        clock.now = T0 + i * SECOND
        assert world.provider.send([indicator(i, name=f"item {i}")]).status_code == 202


def _release_order(world: World, clock: Clock, until: int, step: int) -> list[int]:
    """Step the clock, releasing what falls due; the submission index of each item in release order."""
    seen: list[int] = []
    while clock.now < until:
        clock.now += step
        world.exchange.release_due(clock.now)
    for obj in world.consumer.inbox(limit=10_000).json()["objects"]:
        seen.append(int(obj["name"].split()[1]))
    return seen


@pytest.fixture
def timed(world: World) -> tuple[World, Clock]:
    clock = Clock(T0)
    world.exchange.clock = clock
    world.exchange.rng = random.Random(20261126)
    return world, clock


def test_none_releases_at_once(timed: tuple[World, Clock]) -> None:
    world, _ = timed
    world.exchange.add_agreement("Provider One", "Consumer One", release="none")
    world.provider.send([indicator()])
    assert len(world.consumer.inbox().json()["objects"]) == 1


def test_fixed_delay_keeps_submission_order(timed: tuple[World, Clock]) -> None:
    world, clock = timed
    world.exchange.add_agreement("Provider One", "Consumer One", release="fixed", delay=600)
    _submit_one_a_second(world, 40, clock)
    assert world.consumer.inbox().json()["objects"] == []
    order = _release_order(world, clock, T0 + 700 * SECOND, 2 * SECOND)
    assert len(order) == 40
    assert spearman(list(range(40)), [float(order.index(i)) for i in range(40)]) > 0.99


def test_exponential_delay_decorrelates_release_from_submission(timed: tuple[World, Clock]) -> None:
    """Items arrive once a second; each waits Exp(mean m). For N arrivals spread over N seconds, the correlation
    of submission and release times is about 1/sqrt(1 + 12 m² / N²); the rank correlation must stay under that
    plus three standard errors (3/sqrt(N-1)). A fixed delay gives 1 (the test above)."""
    world, clock = timed
    n, mean = 150, 600
    world.exchange.add_agreement("Provider One", "Consumer One", release="exponential", delay=mean)
    _submit_one_a_second(world, n, clock)
    order = _release_order(world, clock, T0 + (n + 12 * mean) * SECOND, 5 * SECOND)
    assert sorted(order) == list(range(n)), "every item is released exactly once"
    rho = spearman(list(range(n)), [float(order.index(i)) for i in range(n)])
    bound = 1 / math.sqrt(1 + 12 * mean**2 / n**2) + 3 / math.sqrt(n - 1)
    assert abs(rho) < bound, (rho, bound)


def _providers(world: World, names: list[str], k: int, epoch: int) -> dict[str, Caller]:
    callers = {}
    for name in names:
        _, token = world.exchange.add_party(name, provider=True, consumer=False)
        world.exchange.add_agreement(name, "Consumer One", release="pool", pool_k=k, epoch=epoch)
        callers[name] = Caller(world.client, name, token)
    return callers


def test_pool_waits_for_k_providers(timed: tuple[World, Clock]) -> None:
    world, clock = timed
    p = _providers(world, ["Alpha", "Bravo"], k=2, epoch=60)
    p["Alpha"].send([indicator(1, name="from first")])
    for _ in range(3):  # epochs pass: one provider is not enough
        clock.now += 60 * SECOND
        world.exchange.release_due(clock.now)
    assert world.consumer.inbox().json()["objects"] == []
    p["Bravo"].send([indicator(2, name="from second")])
    assert world.consumer.inbox().json()["objects"] == []  # not before the epoch
    clock.now += 60 * SECOND
    world.exchange.release_due(clock.now)
    assert sorted(o["name"] for o in world.consumer.inbox().json()["objects"]) == ["from first", "from second"]


def test_no_pool_release_ever_holds_fewer_than_k_providers(timed: tuple[World, Clock]) -> None:
    world, clock = timed
    k = 3
    names = ["Alpha", "Bravo", "Charlie", "Delta"]
    p = _providers(world, names, k=k, epoch=60)
    rng = random.Random(5)
    added_after = None
    released_batches: list[set[str]] = []
    for step in range(60):
        clock.now = T0 + step * 20 * SECOND
        for name in names:
            if rng.random() < 0.15:
                p[name].send([indicator(name=f"from p{names.index(name)} {step}")])  # party names are redacted
        world.exchange.release_due(clock.now)
        params: dict[str, Any] = {"limit": 10_000}
        if added_after:
            params["added_after"] = added_after
        r = world.consumer.inbox(**params)
        objs = r.json()["objects"]
        if objs:
            added_after = r.headers["X-TAXII-Date-Added-Last"]
            released_batches.append({o["name"].split()[1] for o in objs})
    assert released_batches, "the random schedule released something"
    for batch in released_batches:
        assert len(batch) >= k, batch
