"""The static page around a bundle: bundle checks (bundle.py), the page and site build (page.py, `janusweb
build-web`), the HTTP server (server.py) and the `janusweb serve` command (serve.py)."""

from janusweb.site.bundle import PAGE_GRAPHS, check_bundle
from janusweb.site.page import HEADERS_FILE, build_page, build_site
from janusweb.site.serve import serve
from janusweb.site.server import HEADERS, Handler, make_server, resolve, serve_in_thread, site_roots

__all__ = ["PAGE_GRAPHS", "check_bundle", "HEADERS_FILE", "build_page", "build_site", "serve", "HEADERS", "Handler",
           "make_server", "resolve", "serve_in_thread", "site_roots"]
