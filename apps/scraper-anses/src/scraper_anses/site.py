"""Where things live on the ANSES site: the URL layout of the office directory.

Together with parser.py (the markup) this is all that knows the site; a move of the
directory is a change here only.
"""

from urllib.parse import urlencode, urljoin, urlsplit

#: Listing of one province; Drupal views number their pages from 0 in ``?page=``.
LISTING_PATH = "/oficinas/{province}"

#: Query parameter of the listing pager.
PAGE_PARAMETER = "page"

#: robots.txt sits at the root of the host whatever prefix the base URL has.
ROBOTS_PATH = "/robots.txt"


def listing_url(base_url: str, province: str, page_index: int) -> str:
    """URL of listing page ``page_index`` (0-based) of ``province``."""
    url = base_url + LISTING_PATH.format(province=province)
    if page_index == 0:
        # The first page is linked without the parameter; asking for it the same way
        # keeps the URL identical to what a browser would fetch.
        return url
    return f"{url}?{urlencode({PAGE_PARAMETER: page_index})}"


def robots_url(base_url: str) -> str:
    """URL of the robots.txt that governs ``base_url``."""
    parts = urlsplit(base_url)
    return f"{parts.scheme}://{parts.netloc}{ROBOTS_PATH}"


def absolute(page_url: str, href: str) -> str:
    """Resolve a link found on ``page_url``; fragments are dropped (same document)."""
    return urljoin(page_url, href).split("#", 1)[0]
