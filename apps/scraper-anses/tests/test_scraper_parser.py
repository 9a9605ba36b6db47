"""The parser reads the directory's markup exactly, and names what is missing when it can't."""

import pytest
from scraper_anses.errors import PageStructureError
from scraper_anses.parser import parse_detail, parse_listing
from scraper_fixture_site import FIXTURES

PAGE_URL = "https://www.anses.gob.ar/oficinas/buenos-aires"


def read(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


def test_listing_yields_absolute_office_links_in_page_order():
    listing = parse_listing(read("listing-buenos-aires-0.html"), PAGE_URL)

    assert listing.office_urls == [
        "https://www.anses.gob.ar/oficina/udai-la-plata",
        "https://www.anses.gob.ar/oficina/udai-quilmes",
        "https://www.anses.gob.ar/oficina/udai-lomas-de-zamora",
    ]


@pytest.mark.parametrize("page_index", [0, 1, 2])
def test_listing_page_count_comes_from_the_pager_on_every_page(page_index):
    listing = parse_listing(read(f"listing-buenos-aires-{page_index}.html"), PAGE_URL)

    assert listing.page_count == 3


def test_listing_without_pager_is_a_single_page():
    listing = parse_listing(read("listing-jujuy.html"), "https://www.anses.gob.ar/oficinas/jujuy")

    assert listing.page_count == 1
    assert listing.office_urls == ["https://www.anses.gob.ar/oficina/udai-san-salvador-de-jujuy"]


def test_listing_with_the_sites_no_results_area_is_legitimately_empty():
    listing = parse_listing(read("listing-catamarca-empty.html"), PAGE_URL)

    assert listing.office_urls == []
    assert listing.page_count == 1


def test_redesigned_listing_is_a_structure_error_naming_page_and_selector():
    with pytest.raises(PageStructureError) as raised:
        parse_listing(read("listing-malformed-redesigned.html"), PAGE_URL)

    assert raised.value.permanent
    assert raised.value.page_url == PAGE_URL
    assert PAGE_URL in str(raised.value)
    assert "div.view-oficinas" in str(raised.value)


def test_listing_with_neither_rows_nor_empty_area_is_not_silently_empty():
    with pytest.raises(PageStructureError) as raised:
        parse_listing(read("listing-malformed-empty-view.html"), PAGE_URL)

    assert "div.view-content div.views-row" in raised.value.missing
    assert "div.view-empty" in raised.value.missing


def test_listing_row_without_link_names_the_row():
    with pytest.raises(PageStructureError) as raised:
        parse_listing(read("listing-malformed-row-without-link.html"), PAGE_URL)

    assert "office row 2" in raised.value.missing
    assert ".views-field-title a[href]" in raised.value.missing


def test_pager_without_page_links_is_a_structure_error():
    html = read("listing-buenos-aires-0.html").replace("?page=", "?pagina=")

    with pytest.raises(PageStructureError) as raised:
        parse_listing(html, PAGE_URL)

    assert "nav.pager" in raised.value.missing


def test_detail_page_yields_every_field_of_the_record():
    detail = parse_detail(read("detail-udai-mar-del-plata.html"), "https://x/oficina/mdp")

    assert detail.name == "UDAI Mar del Plata"
    assert detail.address == "Av. Independencia 1515"
    assert detail.locality == "Mar del Plata"
    assert detail.province == "Buenos Aires"
    assert detail.opening_hours == "Lunes a viernes de 8 a 14 hs; Sábados cerrado"
    assert detail.services == [
        "Jubilaciones y pensiones",
        "Asignaciones familiares",
        "Asignación Universal por Hijo",
        "Constancia de CUIL",
    ]


def test_detail_page_with_an_empty_services_field_has_no_services():
    detail = parse_detail(read("detail-udai-tandil.html"), "https://x/oficina/udai-tandil")

    assert detail.services == []


def test_detail_page_missing_a_field_names_the_field_its_selector_and_the_page():
    url = "https://www.anses.gob.ar/oficina/udai-sin-direccion"

    with pytest.raises(PageStructureError) as raised:
        parse_detail(read("detail-malformed-no-address.html"), url)

    message = str(raised.value)
    assert url in message
    assert "'address'" in message
    assert ".field--name-field-direccion .field__item" in message
    assert raised.value.permanent


def test_detail_page_with_an_empty_field_is_a_structure_error():
    html = read("detail-udai-quilmes.html").replace(">Quilmes</div>", ">   </div>")

    with pytest.raises(PageStructureError) as raised:
        parse_detail(html, "https://x/oficina/udai-quilmes")

    assert "'locality'" in raised.value.missing
    assert "is empty" in raised.value.missing


def test_page_that_is_not_an_office_is_a_structure_error():
    with pytest.raises(PageStructureError) as raised:
        parse_detail(read("detail-malformed-not-an-office.html"), "https://x/oficina/udai-salta")

    assert "article.node--type-oficina" in raised.value.missing
