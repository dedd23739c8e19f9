"""`janusweb serve PATH`: a built site (index.html + model/) as it is, or a bundle with the page built into a
temporary folder first. Everything that can fail without building is checked first (the bundle, node, the
address); the temporary page is removed on every way out (a stop by SIGINT/SIGTERM is an exception here, see
janusweb/interrupt.py), and one left by a killed server is removed by the next."""

import os
import shutil
import sys
import tempfile
from pathlib import Path

from janusweb.atomic import remove_orphans
from janusweb.errors import UserError
from janusweb.site.bundle import check_bundle
from janusweb.site.page import build_page, check_node
from janusweb.site.server import make_server

PAGE_PREFIX = "janusweb-page-"


def _listen(site: Path, bundle: Path | None, host: str, port: int):
    if not 0 <= port <= 65535:
        raise UserError(f"port {port} is not a TCP port (0..65535; 0 picks a free one)")
    try:
        return make_server(site, bundle, host, port)
    except OSError as e:  # address in use, not an address of this machine, unknown host name
        raise UserError(f"cannot listen on {host}:{port}: {e.strerror or e}") from e


def serve(path: Path, host: str, port: int) -> None:
    path = Path(path)
    built = (path / "index.html").is_file() and (path / "model").is_dir()
    check_bundle(path / "model" if built else path)
    if built:
        server, tmp = _listen(path, None, host, port), None
    else:
        check_node()
        tmp = Path(tempfile.gettempdir()) / f"{PAGE_PREFIX}{os.getpid()}-{os.urandom(4).hex()}"
        server = _listen(tmp, path, host, port)  # bound before anything is built: a taken port leaves nothing
        remove_orphans(tmp.parent, PAGE_PREFIX)
    try:
        if tmp:
            tmp.mkdir()
            build_page(tmp)
        sys.stdout.write(f"serving {path} at http://{host}:{server.server_address[1]}/ (Ctrl-C stops)\n")
        sys.stdout.flush()
        server.serve_forever()
    finally:
        server.server_close()
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
