"""The ANSES office directory's markup: every selector lives here, nowhere else.

The site is a Drupal site: the province listing is a Drupal view (``.view-oficinas``) with
one ``.views-row`` per office and a Bootstrap pager whose links carry ``?page=N``
(0-based); each office is an ``oficina`` node whose fields are rendered as
``.field--name-field-<name> .field__item``. README.md says which parts of this are known and
which are assumed. When the site changes its markup, this module is the one to change.
"""

import re
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from selectolax.lexbor import LexborHTMLParser, LexborNode

from scraper_anses.errors import PageStructureError
from scraper_anses.site import PAGE_PARAMETER, absolute

# --- listing page ----------------------------------------------------------------------
#: The view that lists one province's offices; absent means the page is not a listing.
LISTING_VIEW = "div.view-oficinas"
#: One office in the listing.
LISTING_ROW = "div.view-content div.views-row"
#: The office's link to its detail page, inside a row.
LISTING_ROW_LINK = ".views-field-title a[href]"
#: Drupal's "no results" area: the only way a listing may legitimately list nothing.
LISTING_EMPTY = "div.view-empty"
#: Links of the pager (numbers, next, last); absent when everything fits on one page.
PAGER = "nav.pager"
PAGER_LINK = "ul.pagination a[href]"

# --- detail page -----------------------------------------------------------------------
#: The office node; absent means the page is not an office.
DETAIL_NODE = "article.node--type-oficina"
#: The page title carries the office's name (Drupal renders it outside the node).
DETAIL_NAME = "h1.page-title"
#: Single-valued fields of the node, by record field.
DETAIL_FIELDS: dict[str, str] = {
    "address": ".field--name-field-direccion .field__item",
    "locality": ".field--name-field-localidad .field__item",
    "province": ".field--name-field-provincia .field__item",
    "opening_hours": ".field--name-field-horario .field__item",
}
#: Fields whose lines (<br>, paragraphs) are kept apart, joined with this separator.
MULTILINE_FIELDS = frozenset({"opening_hours"})
LINE_SEPARATOR = "; "
#: The services field and its items; an office without services still renders the field.
DETAIL_SERVICES = ".field--name-field-servicios"
DETAIL_SERVICE_ITEM = ".field__item"

_WHITESPACE = re.compile(r"\s+")
#: Elements that start a new line of their own inside a multi-line field.
_LINE_BLOCKS = "p, div, li"


@dataclass(frozen=True)
class ListingPage:
    """What one listing page says: its office links (absolute, in order) and the page count."""

    office_urls: list[str]
    page_count: int


@dataclass(frozen=True)
class OfficeDetail:
    """The fields of one office's detail page, normalised to single-spaced text."""

    name: str
    address: str
    locality: str
    province: str
    opening_hours: str
    services: list[str]


def parse_listing(html: str, page_url: str) -> ListingPage:
    """Read a listing page; raise PageStructureError naming what is missing."""
    tree = LexborHTMLParser(html)
    view = tree.css_first(LISTING_VIEW)
    if view is None:
        raise PageStructureError(page_url, f"listing view {LISTING_VIEW!r} not found")
    rows = view.css(LISTING_ROW)
    if not rows and view.css_first(LISTING_EMPTY) is None:
        raise PageStructureError(
            page_url, f"no office rows {LISTING_ROW!r} and no empty-result area {LISTING_EMPTY!r}"
        )
    office_urls: list[str] = []
    for position, row in enumerate(rows, start=1):
        link = row.css_first(LISTING_ROW_LINK)
        href = (link.attributes.get("href") or "").strip() if link is not None else ""
        if not href:
            raise PageStructureError(
                page_url, f"office row {position} has no link {LISTING_ROW_LINK!r}"
            )
        office_urls.append(absolute(page_url, href))
    return ListingPage(office_urls=office_urls, page_count=_page_count(view, page_url))


def _page_count(view: LexborNode, page_url: str) -> int:
    pager = view.css_first(PAGER)
    if pager is None:
        return 1
    indexes: list[int] = []
    for link in pager.css(PAGER_LINK):
        query = parse_qs(urlsplit(link.attributes.get("href") or "").query)
        for value in query.get(PAGE_PARAMETER, []):
            if value.isdigit():
                indexes.append(int(value))
    if not indexes:
        # A pager without page links would make us stop after page 1 and return a
        # silently partial province.
        raise PageStructureError(
            page_url, f"pager {PAGER!r} has no links {PAGER_LINK!r} with ?{PAGE_PARAMETER}=N"
        )
    return max(indexes) + 1


def parse_detail(html: str, page_url: str) -> OfficeDetail:
    """Read an office's detail page; raise PageStructureError naming the missing field."""
    tree = LexborHTMLParser(html)
    node = tree.css_first(DETAIL_NODE)
    if node is None:
        raise PageStructureError(page_url, f"office node {DETAIL_NODE!r} not found")
    name = _required_text(tree.css_first(DETAIL_NAME), page_url, "name", DETAIL_NAME)
    fields = {
        field: _required_text(
            node.css_first(selector), page_url, field, selector, multiline=field in MULTILINE_FIELDS
        )
        for field, selector in DETAIL_FIELDS.items()
    }
    services_field = node.css_first(DETAIL_SERVICES)
    if services_field is None:
        raise PageStructureError(page_url, f"field 'services' ({DETAIL_SERVICES!r}) not found")
    services = [_text(item) for item in services_field.css(DETAIL_SERVICE_ITEM)]
    return OfficeDetail(
        name=name,
        address=fields["address"],
        locality=fields["locality"],
        province=fields["province"],
        opening_hours=fields["opening_hours"],
        services=[service for service in services if service],
    )


def _required_text(
    node: LexborNode | None, page_url: str, field: str, selector: str, *, multiline: bool = False
) -> str:
    if node is None:
        text = ""
    elif multiline:
        text = _lines(node)
    else:
        text = _text(node)
    if not text:
        what = "is empty" if node is not None else "not found"
        raise PageStructureError(page_url, f"field {field!r} ({selector!r}) {what}")
    return text


def _text(node: LexborNode) -> str:
    # The separator keeps "8 a 14 hs<br>Sábados" from gluing into "hsSábados".
    return _WHITESPACE.sub(" ", node.text(separator=" ")).strip()


def _lines(node: LexborNode) -> str:
    # Line breaks carry meaning here ("Lunes a viernes ...<br>Sábados cerrado"); the
    # source's own newlines between blocks count too.
    for line_break in node.css("br"):
        line_break.replace_with("\n")
    for block in node.css(_LINE_BLOCKS):
        block.insert_before("\n")
        block.insert_after("\n")
    lines = (_WHITESPACE.sub(" ", line).strip() for line in node.text().splitlines())
    return LINE_SEPARATOR.join(line for line in lines if line)
