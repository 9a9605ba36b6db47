"""Retry delays follow min(initial * factor^(n-1), max) plus bounded jitter, by tier."""

from __future__ import annotations

from worker_framework.retry_policy import RetryPolicy, max_jitter_ms, retry_queue_name, tier_ttl_ms


def policy(max_retries=5, initial_delay_ms=1000, backoff_factor=2.0, max_delay_ms=5000):
    return RetryPolicy(max_retries, initial_delay_ms, backoff_factor, max_delay_ms)


def test_base_delays_grow_exponentially_up_to_the_maximum():
    assert [policy().base_delay_ms(n) for n in range(1, 6)] == [1000, 2000, 4000, 5000, 5000]


def test_jittered_delay_stays_between_base_and_tier_ttl():
    retry = policy()
    for n in range(1, 6):
        base = retry.base_delay_ms(n)
        for _ in range(50):
            assert base <= retry.delay_ms(n) <= tier_ttl_ms(base)


def test_jitter_is_a_tenth_of_the_delay_capped_at_one_second():
    assert max_jitter_ms(500) == 50
    assert max_jitter_ms(3_600_000) == 1000


def test_tiers_are_the_distinct_base_delays():
    assert policy().tiers() == [1000, 2000, 4000, 5000]
    assert policy(max_retries=0).tiers() == []


def test_retries_stop_after_max_retries_failed_attempts():
    retry = policy(max_retries=2)
    assert retry.should_retry(1) and retry.should_retry(2)
    assert not retry.should_retry(3)


def test_tier_queue_names_carry_the_delay():
    assert retry_queue_name("email-service", 4000) == "email-service.retry.4000"
