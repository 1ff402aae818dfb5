"""Behaviour of the Python dispatch rules (marllbd.dataplane.dispatch)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from marllbd.dataplane import dispatch as d

U64 = np.uint64


def arrays(
    active: list[int], weight: list[float], up: list[int]
) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.float64], npt.NDArray[np.uint8]]:
    return (
        np.array(active, dtype=np.uint64),
        np.array(weight, dtype=np.float64),
        np.array(up, dtype=np.uint8),
    )


def alias_masses(prob: npt.NDArray[np.uint32], alias: npt.NDArray[np.int32]) -> np.ndarray:
    """Exact selection probability per server implied by an alias table."""
    n = len(prob)
    mass = np.zeros(n)
    for col in range(n):
        accept = float(prob[col]) / 2.0**32
        mass[col] += accept / n
        if alias[col] >= 0:
            mass[alias[col]] += (1.0 - accept) / n
    return mass


def hashes(seed: int, count: int) -> npt.NDArray[np.uint64]:
    return np.random.default_rng(seed).integers(0, 2**64, size=count, dtype=np.uint64)


class TestRuleNames:
    def test_every_name_parses_to_its_rule(self) -> None:
        assert d.RULE_NAMES == (
            "sed", "wcmp", "ecmp", "lsq", "lsq2", "sed2", "peak-ewma", "prequal", "prequal-w",
        )  # fmt: skip
        for name in d.RULE_NAMES:
            assert d.parse_rule(name).value == name

    def test_unknown_name_is_named_with_the_valid_ones(self) -> None:
        with pytest.raises(
            ValueError, match=r"'sde'.*sed, wcmp, ecmp, lsq, lsq2, sed2, peak-ewma, prequal"
        ):
            d.parse_rule("sde")


class TestSed:
    def test_equal_load_prefers_the_higher_weight(self) -> None:
        assert d.sed_pick(*arrays([3, 3, 3], [1.0, 2.5, 2.0], [1, 1, 1])) == 1

    def test_load_outweighs_weight(self) -> None:
        # (5 + 1) / 2 = 3 > (1 + 1) / 1 = 2
        assert d.sed_pick(*arrays([5, 1], [2.0, 1.0], [1, 1])) == 1

    def test_ties_go_to_the_lowest_index(self) -> None:
        # (1 + 1) / 1 == (3 + 1) / 2 == 2
        assert d.sed_pick(*arrays([4, 1, 3], [1.0, 1.0, 2.0], [1, 1, 1])) == 1

    def test_down_and_invalid_weights_are_never_picked(self) -> None:
        active, weight, up = arrays(
            [9, 0, 0, 0, 0, 0], [1.0, 0.0, -1.0, np.nan, np.inf, 1.0], [1, 1, 1, 1, 1, 0]
        )
        assert d.sed_pick(active, weight, up) == 0
        up[0] = 0
        assert d.sed_pick(active, weight, up) == -1

    def test_nothing_up_or_no_servers_gives_minus_one(self) -> None:
        assert d.sed_pick(*arrays([1, 2], [1.0, 1.0], [0, 0])) == -1
        assert d.sed_pick(*arrays([], [], [])) == -1

    def test_mismatched_lengths_are_rejected(self) -> None:
        with pytest.raises(ValueError, match="same length"):
            d.sed_pick(*arrays([1, 2], [1.0], [1, 1]))

    @settings(max_examples=200, deadline=None)
    @given(
        st.lists(
            st.tuples(
                st.integers(0, 50), st.sampled_from([0.5, 1.0, 2.0, 3.0, 0.0]), st.booleans()
            ),
            min_size=1,
            max_size=16,
        )
    )
    def test_pick_has_the_lowest_score_and_lowest_index(
        self, servers: list[tuple[int, float, bool]]
    ) -> None:
        active, weight, up = arrays(*map(list, zip(*servers, strict=True)))
        ok = (up != 0) & (weight > 0)
        pick = d.sed_pick(active, weight, up)
        if not ok.any():
            assert pick == -1
            return
        score = np.where(ok, (active.astype(np.float64) + 1.0) / np.where(ok, weight, 1.0), np.inf)
        assert pick == int(np.flatnonzero(score == score[ok].min())[0])


class TestLsq:
    def test_least_active_up_server_lowest_index_on_ties(self) -> None:
        active, _, up = arrays([4, 2, 7, 2], [], [1, 1, 1, 1])
        assert d.lsq_pick(active, up) == 1
        up[1] = 0
        assert d.lsq_pick(active, up) == 3
        up[3] = 0
        assert d.lsq_pick(active, up) == 0
        up[:] = 0
        assert d.lsq_pick(active, up) == -1


class TestPowerOfTwo:
    ACTIVE = (5, 1, 5, 0, 5)

    def test_candidates_follow_the_documented_hash_split(self) -> None:
        active, weight, up = arrays(list(self.ACTIVE), [1.0] * 5, [1] * 5)
        # k = 5: r1 = (2^31 * 5) >> 32 = 2, r2 = 0 -> servers 2 and 0, equal load.
        assert d.p2_pick(active, weight, up, U64(0x8000_0000), False) == 0
        # r1 = 2, r2 = (2^31 * 4) >> 32 = 2 >= r1 -> 3: servers 2 and 3.
        h = U64(0x8000_0000_8000_0000)
        assert d.p2_pick(active, weight, up, h, False) == 3
        weight[2] = 4.0  # 6 / 4 > 1 / 1
        assert d.p2_pick(active, weight, up, h, True) == 3
        weight[3] = 0.25  # 6 / 4 < 1 / 0.25
        assert d.p2_pick(active, weight, up, h, True) == 2

    def test_candidates_are_distinct(self) -> None:
        # Equal load: the pair's lower index wins, so the last eligible never does.
        active, weight, up = arrays([2] * 6, [1.0] * 6, [1, 0, 1, 1, 0, 1])
        for use_sed in (False, True):
            picks = {d.p2_pick(active, weight, up, h, use_sed) for h in hashes(1, 3000)}
            assert picks == {0, 2, 3}

    def test_sed2_skips_invalid_weights_and_one_eligible_is_the_pick(self) -> None:
        active, weight, up = arrays(list(self.ACTIVE), [np.nan, 1.0, 0.0, -2.0, np.inf], [1] * 5)
        assert {d.p2_pick(active, weight, up, h, True) for h in hashes(2, 200)} == {1}
        # lsq2 ignores weights entirely.
        assert {d.p2_pick(active, weight, up, h, False) for h in hashes(2, 200)} != {1}

    def test_nothing_eligible_gives_minus_one(self) -> None:
        active, weight, up = arrays(list(self.ACTIVE), [1.0] * 5, [0] * 5)
        assert d.p2_pick(active, weight, up, U64(12345), False) == -1
        assert d.p2_pick(active, weight, up, U64(12345), True) == -1

    def test_python_int_hash_below_2_63_equals_uint64_hash(self) -> None:
        active, weight, up = arrays(list(range(20, 0, -1)), [1.0] * 20, [1] * 20)
        for h in hashes(3, 50) >> U64(1):
            by_int = d.p2_pick(active, weight, up, int(h), False)
            assert by_int == d.p2_pick(active, weight, up, h, False)

    @settings(max_examples=200, deadline=None)
    @given(
        st.lists(st.integers(0, 1000), min_size=2, max_size=12, unique=True),
        st.integers(0, 2**64 - 1),
    )
    def test_never_picks_the_unique_worst(self, active_list: list[int], h: int) -> None:
        active, weight, up = arrays(active_list, [1.0] * len(active_list), [1] * len(active_list))
        assert d.p2_pick(active, weight, up, U64(h), False) != int(np.argmax(active))


class TestAlias:
    def test_known_table(self) -> None:
        # q = floor((1/2) * 4 / 3 * 2^32) = 2863311530 for servers 0 and 3.
        prob, alias = d.alias_build(np.array([1.0, 2.0, 2.0, 1.0]), np.ones(4, np.uint8))
        assert prob.tolist() == [2863311530, 0xFFFFFFFF, 0xFFFFFFFF, 2863311530]
        assert alias.tolist() == [1, 1, 1, 2]

    def test_masses_equal_weight_shares_and_down_gets_none(self) -> None:
        weight = np.array([1.0, 3.0, 0.5, 2.0, 7.0, 1.5, np.nan, 0.0])
        up = np.array([1, 1, 1, 0, 1, 1, 1, 1], dtype=np.uint8)
        prob, alias = d.alias_build(weight, up)
        share = np.where(up.astype(bool) & (weight > 0), weight, 0.0)
        share = np.nan_to_num(share) / np.nansum(share)
        np.testing.assert_allclose(alias_masses(prob, alias), share, atol=1e-9, rtol=0)

    def test_sampled_shares_follow_the_weights(self) -> None:
        weight = np.array([1.0, 3.0, 0.5, 2.0, 7.0, 1.5])
        up = np.array([1, 1, 1, 0, 1, 1], dtype=np.uint8)
        prob, alias = d.alias_build(weight, up)
        picks = np.array([d.alias_pick(prob, alias, h) for h in hashes(4, 200_000)])
        freq = np.bincount(picks, minlength=6) / len(picks)
        assert freq[3] == 0.0
        expected = np.where(up == 1, weight, 0.0) / 13.0
        np.testing.assert_allclose(freq, expected, atol=0.005, rtol=0)

    def test_equal_weights_give_full_columns(self) -> None:
        prob, alias = d.alias_build(np.full(5, 2.0), np.ones(5, np.uint8))
        assert (prob == 0xFFFFFFFF).all()
        assert alias.tolist() == list(range(5))

    def test_nothing_eligible_picks_minus_one(self) -> None:
        prob, alias = d.alias_build(
            np.array([0.0, -1.0, np.nan, np.inf, 1.0]), np.array([1, 1, 1, 1, 0], np.uint8)
        )
        assert (prob == 0).all() and (alias == -1).all()
        assert {d.alias_pick(prob, alias, h) for h in hashes(5, 100)} == {-1}
        empty_prob, empty_alias = d.alias_build(np.zeros(0), np.zeros(0, np.uint8))
        assert d.alias_pick(empty_prob, empty_alias, U64(7)) == -1

    @settings(max_examples=100, deadline=None)
    @given(
        st.lists(
            st.tuples(st.floats(1e-3, 1e3), st.booleans()),
            min_size=1,
            max_size=40,
        ).filter(lambda servers: any(up for _, up in servers))
    )
    def test_masses_are_exact_for_any_weights(self, servers: list[tuple[float, bool]]) -> None:
        weight = np.array([w for w, _ in servers])
        up = np.array([u for _, u in servers], dtype=np.uint8)
        prob, alias = d.alias_build(weight, up)
        share = np.where(up == 1, weight, 0.0)
        share /= share.sum()
        np.testing.assert_allclose(alias_masses(prob, alias), share, atol=1e-8, rtol=0)


class TestMaglev:
    M = 65537  # a production-size prime table

    def test_mixing_hash_is_splitmix64(self) -> None:
        # First output of the reference splitmix64 seeded with 0.
        assert int(d._mix64(U64(0))) == 0xE220A8397B1DCDAF

    def test_shares_are_within_one_entry(self) -> None:
        up = np.ones(10, dtype=np.uint8)
        up[[2, 7]] = 0
        counts = np.bincount(d.maglev_build(up, self.M), minlength=10)
        assert counts[2] == 0 and counts[7] == 0
        assert counts[up == 1].max() - counts[up == 1].min() <= 1

    def test_one_server_down_disturbs_few_other_entries(self) -> None:
        up = np.ones(10, dtype=np.uint8)
        before = d.maglev_build(up, self.M)
        up[4] = 0
        after = d.maglev_build(up, self.M)
        kept = before != 4
        moved = np.count_nonzero(after[kept] != before[kept])
        # About 0.3% measured; Maglev trades a little disruption for balance.
        assert moved < 0.01 * np.count_nonzero(kept)
        assert (after[~kept] != 4).all()

    def test_pick_is_table_at_hash_mod_m(self) -> None:
        table = d.maglev_build(np.ones(7, dtype=np.uint8), 251)
        for h in hashes(6, 200):
            assert d.maglev_pick(table, h) == table[int(h) % 251]

    def test_all_down_table_picks_minus_one(self) -> None:
        table = d.maglev_build(np.zeros(4, dtype=np.uint8), 251)
        assert (table == -1).all()
        assert d.maglev_pick(table, U64(99)) == -1

    @pytest.mark.parametrize("m", [0, 1, 250, 65536])
    def test_non_prime_size_is_rejected(self, m: int) -> None:
        with pytest.raises(ValueError, match="prime"):
            d.maglev_build(np.ones(3, dtype=np.uint8), m)
