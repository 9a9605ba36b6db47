"""Scraping the fixture site over real HTTP: records, progress, politeness and error classes."""

import json
import socket

import pytest
from scraper_anses.models import Office
from scraper_fixture_site import Reply, page, redirect
from worker_framework import WorkerError

EXPECTED_BUENOS_AIRES = [
    ("UDAI La Plata", "La Plata", "/oficina/udai-la-plata"),
    ("UDAI Quilmes", "Quilmes", "/oficina/udai-quilmes"),
    ("UDAI Lomas de Zamora", "Lomas de Zamora", "/oficina/udai-lomas-de-zamora"),
    ("UDAI Morón", "Morón", "/oficina/udai-moron"),
    ("UDAI San Isidro", "San Isidro", "/oficina/udai-san-isidro"),
    ("UDAI Bahía Blanca", "Bahía Blanca", "/oficina/udai-bahia-blanca"),
    ("UDAI Mar del Plata", "Mar del Plata", "/oficina/udai-mar-del-plata"),
    ("UDAI Tandil", "Tandil", "/oficina/udai-tandil"),
]


# --- what a healthy walk returns -------------------------------------------------------


def test_every_office_of_every_listing_page_is_returned_in_directory_order(site, run):
    result = run.scrape("buenos-aires")

    assert [(o.name, o.locality, o.source_url) for o in result.offices] == [
        (name, locality, site.url(path)) for name, locality, path in EXPECTED_BUENOS_AIRES
    ]
    assert result.target_id == "buenos-aires"
    assert result.pages == 3
    assert result.office_count == 8


def test_office_records_carry_every_field_from_the_detail_page(site, run):
    result = run.scrape("buenos-aires")

    assert result.offices[2] == Office(
        name="UDAI Lomas de Zamora",
        address="Av. Meeks 789",
        locality="Lomas de Zamora",
        province="Buenos Aires",
        opening_hours="Lunes a viernes de 8 a 14 hs; Atención con turno previo",
        services=[
            "Jubilaciones y pensiones",
            "Asignaciones familiares",
            "Asignación Universal por Hijo",
            "Constancia de CUIL",
            "Créditos ANSES",
        ],
        source_url=site.url("/oficina/udai-lomas-de-zamora"),
    )


def test_result_serialises_with_camel_case_keys(run):
    result = json.loads(run.scrape("jujuy").model_dump_json())

    assert set(result) == {"targetId", "pages", "officeCount", "requestsMade", "offices"}
    assert set(result["offices"][0]) == {
        "name",
        "address",
        "locality",
        "province",
        "openingHours",
        "services",
        "sourceUrl",
    }


def test_progress_is_reported_once_per_listing_page(run):
    run.scrape("buenos-aires")

    assert run.steps() == [
        "Processing page 1/3",
        "Processing page 2/3",
        "Processing page 3/3",
    ]
    assert [update.progress for update in run.reporter.updates] == [0, 33, 66]


def test_redirected_office_is_recorded_under_the_url_it_was_read_from(site, run):
    result = run.scrape("buenos-aires")

    assert site.count("/oficina/udai-mdq") == 1
    assert site.count("/oficina/udai-mar-del-plata") == 1
    assert result.offices[6].source_url == site.url("/oficina/udai-mar-del-plata")


def test_province_whose_listing_says_no_results_has_no_offices(run):
    result = run.scrape("catamarca")

    assert result.offices == []
    assert result.office_count == 0
    assert result.pages == 1


def test_office_listed_on_two_pages_is_read_once(site, run):
    # Page 2 shifted while we walked: its first office is page 1's last one again.
    duplicated = page("listing-buenos-aires-1.html").body.replace(
        b"/oficina/udai-moron", b"/oficina/udai-lomas-de-zamora", 1
    )
    site.serve("/oficinas/buenos-aires?page=1", Reply(body=duplicated))

    result = run.scrape("buenos-aires")

    assert [o.name for o in result.offices].count("UDAI Lomas de Zamora") == 1
    assert site.count("/oficina/udai-lomas-de-zamora") == 1
    assert result.office_count == 7


def test_pages_added_while_walking_are_followed_to_the_new_last_page(site, run):
    grown = page("listing-buenos-aires-1.html").body.replace(
        b'href="?page=2" title="Ir a la \xc3\xbaltima p\xc3\xa1gina"',
        b'href="?page=3" title="Ir a la \xc3\xbaltima p\xc3\xa1gina"',
    )
    assert grown != page("listing-buenos-aires-1.html").body
    site.serve("/oficinas/buenos-aires?page=1", Reply(body=grown))
    site.serve("/oficinas/buenos-aires?page=3", page("listing-jujuy.html"))

    result = run.scrape("buenos-aires")

    assert result.pages == 4
    assert result.office_count == 9
    assert result.offices[-1].name == "UDAI San Salvador de Jujuy"
    assert run.steps() == [
        "Processing page 1/3",
        "Processing page 2/4",
        "Processing page 3/4",
        "Processing page 4/4",
    ]


# --- politeness ----------------------------------------------------------------------


def test_robots_txt_is_read_first_and_every_request_is_counted(site, run):
    result = run.scrape("buenos-aires")

    assert site.requests[0] == "/robots.txt"
    assert site.requests.count("/robots.txt") == 1
    assert result.requests_made == len(site.requests) == 13


def test_every_request_passes_the_rate_limiter_shared_by_all_tasks(site, run):
    first = run.scrape("buenos-aires", task_id="t1")
    second = run.scrape("jujuy", task_id="t2")

    limiter = run.worker._limiter
    assert limiter is not None
    assert limiter.acquired == first.requests_made + second.requests_made == len(site.requests)


def test_detail_pages_are_fetched_by_at_most_max_concurrency_threads(site, make_run):
    run = make_run(scraper_anses_max_concurrency=2)

    run.scrape("buenos-aires")

    assert 1 <= site.max_in_flight <= 2


def test_requests_carry_the_configured_user_agent(site, make_run):
    run = make_run(scraper_anses_user_agent="PoliteTester/2.0 (+ops@example.org)")

    run.scrape("jujuy")

    assert site.user_agents == {"PoliteTester/2.0 (+ops@example.org)"}


def test_target_disallowed_by_robots_txt_is_permanent_and_never_fetched(site, run):
    with pytest.raises(WorkerError) as raised:
        run.scrape("tierra-del-fuego")

    assert raised.value.permanent
    assert "robots.txt" in str(raised.value)
    assert site.count("/oficinas/tierra-del-fuego") == 0


def test_office_disallowed_by_robots_txt_is_permanent_and_never_fetched(site, run):
    listing = page("listing-jujuy.html").body.replace(
        b"/oficina/udai-san-salvador-de-jujuy", b"/oficina/udai-privada"
    )
    site.serve("/oficinas/jujuy", Reply(body=listing))

    with pytest.raises(WorkerError) as raised:
        run.scrape("jujuy")

    assert raised.value.permanent
    assert "/oficina/udai-privada" in str(raised.value)
    assert site.count("/oficina/udai-privada") == 0


def test_redirect_into_a_disallowed_path_is_not_followed(site, run):
    site.serve("/oficina/udai-san-salvador-de-jujuy", redirect("/admin/oficinas"))

    with pytest.raises(WorkerError) as raised:
        run.scrape("jujuy")

    assert raised.value.permanent
    assert site.count("/admin/oficinas") == 0


def test_crawl_delay_in_robots_txt_slows_the_shared_rate_limit(site, run):
    site.serve(
        "/robots.txt",
        Reply(body=b"User-agent: *\nCrawl-delay: 7\nDisallow: /oficinas/tierra-del-fuego\n"),
    )

    with pytest.raises(WorkerError):
        run.scrape("tierra-del-fuego")  # disallowed: only robots.txt is fetched, no wait

    limiter = run.worker._limiter
    assert limiter is not None
    assert limiter.interval_s == 7.0


def test_missing_robots_txt_allows_the_scrape(site, run):
    site.serve("/robots.txt", Reply(status=404))

    assert run.scrape("jujuy").office_count == 1


def test_unavailable_robots_txt_is_transient_and_nothing_else_is_fetched(site, run):
    site.serve("/robots.txt", Reply(status=500))

    with pytest.raises(WorkerError) as raised:
        run.scrape("jujuy")

    assert not raised.value.permanent
    assert site.requests == ["/robots.txt"]


def test_short_retry_after_is_waited_out_and_the_page_fetched_again(site, run):
    site.serve(
        "/oficinas/jujuy",
        Reply(status=429, headers={"Retry-After": "1"}),
        page("listing-jujuy.html"),
    )

    result = run.scrape("jujuy")

    assert site.count("/oficinas/jujuy") == 2
    assert result.office_count == 1


def test_long_retry_after_becomes_a_transient_error_for_a_scheduled_retry(site, run):
    site.serve("/oficinas/jujuy", Reply(status=429, headers={"Retry-After": "3600"}))

    with pytest.raises(WorkerError) as raised:
        run.scrape("jujuy")

    assert not raised.value.permanent
    assert "Retry-After 3600" in str(raised.value)
    assert site.count("/oficinas/jujuy") == 1


def test_long_retry_after_keeps_later_tasks_off_the_site_until_it_is_over(site, run):
    site.serve("/oficinas/jujuy", Reply(status=503, headers={"Retry-After": "3600"}))
    with pytest.raises(WorkerError):
        run.scrape("jujuy", task_id="t1")
    requests_so_far = len(site.requests)

    with pytest.raises(WorkerError) as raised:
        run.scrape("buenos-aires", task_id="t2")

    assert not raised.value.permanent
    assert "asked for a pause" in str(raised.value)
    assert len(site.requests) == requests_so_far


def test_service_unavailable_with_retry_after_gives_up_after_a_few_short_waits(site, run):
    site.serve(
        "/oficina/udai-san-salvador-de-jujuy", Reply(status=503, headers={"Retry-After": "0"})
    )

    with pytest.raises(WorkerError) as raised:
        run.scrape("jujuy")

    assert not raised.value.permanent
    assert site.count("/oficina/udai-san-salvador-de-jujuy") == 3


# --- error classes -------------------------------------------------------------------


def test_unknown_province_is_a_permanent_error_naming_it(site, run):
    with pytest.raises(WorkerError) as raised:
        run.scrape("atlantida")

    assert raised.value.permanent
    assert "'atlantida'" in str(raised.value)
    assert "404" in str(raised.value)


@pytest.mark.parametrize("status", [500, 502, 503])
def test_server_errors_are_transient(site, run, status):
    site.serve("/oficinas/buenos-aires?page=1", Reply(status=status))

    with pytest.raises(WorkerError) as raised:
        run.scrape("buenos-aires")

    assert not raised.value.permanent
    assert f"HTTP {status}" in str(raised.value)


def test_a_failed_office_page_succeeds_on_the_next_attempt(site, run):
    site.serve("/oficina/udai-quilmes", Reply(status=500), page("detail-udai-quilmes.html"))

    with pytest.raises(WorkerError) as first:
        run.scrape("buenos-aires", task_id="t1")
    second = run.scrape("buenos-aires", task_id="t1")

    assert not first.value.permanent
    assert second.office_count == 8


def test_forbidden_office_page_is_permanent(site, run):
    site.serve("/oficina/udai-san-salvador-de-jujuy", Reply(status=403))

    with pytest.raises(WorkerError) as raised:
        run.scrape("jujuy")

    assert raised.value.permanent
    assert "HTTP 403" in str(raised.value)


def test_office_page_that_vanished_mid_walk_is_transient(site, run):
    site.serve("/oficina/udai-san-salvador-de-jujuy", Reply(status=404))

    with pytest.raises(WorkerError) as raised:
        run.scrape("jujuy")

    assert not raised.value.permanent


def test_page_slower_than_the_timeout_is_transient(site, make_run):
    run = make_run(scraper_anses_timeout_s=0.3)
    site.serve("/oficina/udai-san-salvador-de-jujuy", Reply(stall=True))

    with pytest.raises(WorkerError) as raised:
        run.scrape("jujuy")

    assert not raised.value.permanent
    assert "timed out after 0.3 s" in str(raised.value)


def test_unreachable_site_is_transient(make_run):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    run = make_run(scraper_anses_base_url=f"http://127.0.0.1:{closed_port}")

    with pytest.raises(WorkerError) as raised:
        run.scrape("jujuy")

    assert not raised.value.permanent
    assert "cannot connect" in str(raised.value)


def test_redirect_loop_is_permanent(site, run):
    site.serve("/oficina/udai-san-salvador-de-jujuy", redirect("/oficina/udai-loop"))
    site.serve("/oficina/udai-loop", redirect("/oficina/udai-san-salvador-de-jujuy"))

    with pytest.raises(WorkerError) as raised:
        run.scrape("jujuy")

    assert raised.value.permanent
    assert "redirects" in str(raised.value)


def test_redirect_off_the_site_is_permanent(site, run):
    site.serve("/oficina/udai-san-salvador-de-jujuy", redirect("http://elsewhere.invalid/x"))

    with pytest.raises(WorkerError) as raised:
        run.scrape("jujuy")

    assert raised.value.permanent
    assert "elsewhere.invalid" in str(raised.value)


def test_malformed_listing_is_a_permanent_error_naming_page_and_selector(site, run):
    site.serve("/oficinas/salta", page("listing-malformed-redesigned.html"))

    with pytest.raises(WorkerError) as raised:
        run.scrape("salta")

    assert raised.value.permanent
    assert site.url("/oficinas/salta") in str(raised.value)
    assert "div.view-oficinas" in str(raised.value)


def test_malformed_office_page_is_a_permanent_error_naming_page_and_field(site, run):
    listing = page("listing-jujuy.html").body.replace(
        b"/oficina/udai-san-salvador-de-jujuy", b"/oficina/udai-sin-direccion"
    )
    site.serve("/oficinas/chaco", Reply(body=listing))
    site.serve("/oficina/udai-sin-direccion", page("detail-malformed-no-address.html"))

    with pytest.raises(WorkerError) as raised:
        run.scrape("chaco")

    assert raised.value.permanent
    assert site.url("/oficina/udai-sin-direccion") in str(raised.value)
    assert "'address'" in str(raised.value)


def test_later_listing_page_that_changed_markup_fails_the_whole_task(site, run):
    site.serve("/oficinas/buenos-aires?page=2", page("listing-malformed-redesigned.html"))

    with pytest.raises(WorkerError) as raised:
        run.scrape("buenos-aires")

    assert raised.value.permanent
    assert site.url("/oficinas/buenos-aires?page=2") in str(raised.value)
