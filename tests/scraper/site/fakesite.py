"""A real HTTP server on 127.0.0.1 that imitates the scraped sites, for the scraper's tests.

It serves the HTML templates of this folder in the page structure each adapter expects, real
photos from ../shared/data as image bodies, and scripted faults (status sequences, Retry-After,
hung or oversized bodies, wrong content types). Every request is logged, so tests can assert
what was fetched and when. Sites are mounted under path prefixes of the one server:
``/listal/`` (pages), ``/lisimg/`` (listal images), ``/filmweb/``, ``/fwcdn/``, ``/files/``.
"""

from __future__ import annotations

import json
import ssl
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from string import Template

HERE = Path(__file__).parent


@dataclass
class Reply:
    """One scripted answer."""

    body: bytes = b""
    content_type: str = "text/html; charset=utf-8"
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds before answering (a hung server)
    send_length: bool = True


def template(file: str, **values: str) -> str:
    return Template((HERE / file).read_text(encoding="utf-8")).substitute(values)


def listal_pager(slug: str, current: int, last: int) -> str:
    """listal's ``<div class='pages'>`` content, as on the real pages 1 and 371."""
    link = lambda m: f"/{slug}/pictures/" if m == 1 else f"/{slug}/pictures//{m}"  # noqa: E731
    prev = (
        f"<a href='{link(current - 1)}'>&#171; Prev</a> " if current > 1
        else "<span class='nextprev'>&#171; Prev</span>"
    )  # fmt: skip
    numbers = "".join(
        f"<span class='current'><b>{m}</b></span>"
        if m == current
        else f"<a href='{link(m)}'>{m}</a> "
        for m in range(1, last + 1)
    )
    nxt = (
        f"<a href='{link(current + 1)}'>Next &#187;</a> " if current < last
        else "<span class='nextprev'>Next &#187;</span>"
    )  # fmt: skip
    return prev + numbers + nxt


class FakeSite:
    """The server; ``add`` a path's replies (a list is answered in turn, the last one repeats)."""

    def __init__(self, port: int = 0, tls: ssl.SSLContext | None = None) -> None:
        self.routes: dict[str, list[Reply]] = {}
        self.hits: Counter[str] = Counter()
        self.log: list[tuple[float, str, dict[str, str]]] = []
        self.lock = threading.Lock()
        self.next_id = 1000
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                site._serve(self)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        if tls is not None:  # HTTPS; a connection whose handshake fails is dropped at accept
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        scheme = "https" if tls is not None else "http"
        self.base = f"{scheme}://127.0.0.1:{self.server.server_address[1]}"
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.add("/robots.txt", b"User-agent: *\nDisallow: /private/\n", "text/plain")

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def url(self, path: str) -> str:
        return self.base + path

    def add(self, path: str, body: bytes | str | list[Reply] | Reply, content_type: str = "",
            **kw) -> str:  # fmt: skip
        if isinstance(body, list):
            replies = body
        elif isinstance(body, Reply):
            replies = [body]
        else:
            data = body.encode() if isinstance(body, str) else body
            replies = [Reply(data, content_type or "text/html; charset=utf-8", **kw)]
        with self.lock:
            self.routes[path] = replies
        return self.url(path)

    def photo(self, path: str, file: Path, **kw) -> str:
        return self.add(path, file.read_bytes(), "image/jpeg", **kw)

    def times(self, path: str) -> list[float]:
        return [t for t, p, _ in self.log if p == path]

    def _serve(self, h: BaseHTTPRequestHandler) -> None:
        path = h.path
        with self.lock:
            self.hits[path] += 1
            self.log.append((time.monotonic(), path, dict(h.headers)))
            replies = self.routes.get(path) or self.routes.get(path.split("?")[0])
            if replies and len(replies) > 1:
                reply = replies.pop(0)
            else:
                reply = replies[0] if replies else Reply(b"not found", "text/plain", 404)
        if reply.delay:
            time.sleep(reply.delay)
        try:
            h.send_response(reply.status)
            h.send_header("Content-Type", reply.content_type)
            if reply.send_length:
                h.send_header("Content-Length", str(len(reply.body)))
            for k, v in reply.headers.items():
                h.send_header(k, v)
            h.end_headers()
            h.wfile.write(reply.body)
        except (BrokenPipeError, ConnectionResetError):
            pass

    # -- site builders --------------------------------------------------------------------------

    def listal_person(
        self, slug: str, name: str, photos: list[Path], per_page: int = 2,
        broken_large: tuple[int, ...] = (),
    ) -> str:  # fmt: skip
        """Picture pages, viewimage pages and images of one listal person; returns the seed URL.

        The pages have the structure of the real saved ones (../shared/fixtures/scraper/listal):
        single-quoted absolute ``http://www.listal.com/viewimage/<id>`` links, thumbnails
        ``<id>/176full.jpg`` without a slug, the pager's ``/<slug>/pictures//<n>`` (double
        slash, root-relative as on listal) and an unlinked "Next" on the last page. The large
        image ``<id>/10000full.jpg`` answers 404 for the photos whose index is in
        ``broken_large``; the viewimage page shows ``image/<id>/1030full[-<slug>].jpg`` (with
        a slug for odd ids, without for even ones).
        """
        pages = [photos[i : i + per_page] for i in range(0, len(photos), per_page)] or [[]]
        index = 0
        for n, chunk in enumerate(pages, 1):
            thumbs = []
            for photo in chunk:
                self.next_id += 1
                image_id = str(self.next_id)
                thumb = self.photo(f"/lisimg/{image_id}/176full.jpg", photo)
                large = f"/lisimg/{image_id}/10000full.jpg"
                if index in broken_large:
                    self.add(large, b"not found", "text/plain", status=404)
                else:
                    self.photo(large, photo)
                index += 1
                suffix = f"-{slug}" if int(image_id) % 2 else ""
                shown = self.photo(f"/lisimg/image/{image_id}/1030full{suffix}.jpg", photo)
                thumbs.append(template("listal_thumb.html", id=image_id, thumb=thumb))
                self.add(
                    f"/listal/viewimage/{image_id}",
                    template("listal_viewimage.html", name=name, slug=slug, image=shown,
                             thumb=thumb),
                )  # fmt: skip
            html = template(
                "listal_pictures.html", name=name, slug=slug, count=str(len(photos)),
                thumbs="\n".join(thumbs), pager=listal_pager(slug, n, len(pages)),
            )  # fmt: skip
            self.add(f"/listal/{slug}/pictures//{n}", html)
            if n == 1:
                self.add(f"/listal/{slug}/pictures", html)
                self.add(f"/listal/{slug}/pictures/", html)
        self.add(f"/listal/{slug}", f"<a href='/{slug}/pictures' class='picturesbutton'>")
        return self.url(f"/listal/{slug}")

    def filmweb_person(
        self, person: str, name: str, photos: list[Path], per_page: int = 2, api: bool = False
    ) -> str:
        """Person page (portrait = first photo) and gallery pages; returns the seed URL.

        Gallery photos are film stills as public code shows them,
        ``fwcdn.pl/fph/<a>/<b>/<film id>/<photo id>_<n>.<size>.jpg``. With ``api``, the person
        API ``/api/v1/person/<id>/info`` answers with the name and the portrait's ``imagePath``
        (served at ``/ppo/…``, the size ``$`` as 3); otherwise it answers 404.
        """
        person_id = person.rsplit("-", 1)[1]
        portrait = self.photo(f"/fwcdn/ppo/{person}/portrait.jpg", photos[0])
        if api:
            image_path = f"/{person_id[-2:]}/{person_id}/7530135.$.jpg"
            self.photo("/ppo" + image_path.replace("$", "3"), photos[0])
            info = json.dumps({"name": name, "imagePath": image_path})
            self.add(f"/filmweb/api/v1/person/{person_id}/info", info, "application/json")
        rest = photos[1:]
        pages = [rest[i : i + per_page] for i in range(0, len(rest), per_page)] or [[]]
        gallery = f"/filmweb/person/{person}/photos"
        self.add(
            f"/filmweb/person/{person}",
            template("filmweb_person.html", name=name, portrait=portrait, gallery=gallery),
        )
        for n, chunk in enumerate(pages, 1):
            items = []
            for k, photo in enumerate(chunk):
                self.next_id += 1
                film = self.next_id
                src = self.photo(f"/fwcdn/fph/{film % 100}/{film // 100}/{film}/{700 + k}_1.3.jpg",
                                 photo)  # fmt: skip
                items.append(template("filmweb_photo.html", link=f"{gallery}/{n}-{k}", src=src,
                                      name=name))  # fmt: skip
            pager = " ".join(
                f'<a href="{gallery}?page={m}">{m}</a>' for m in range(1, len(pages) + 1)
            )
            html = template("filmweb_photos.html", name=name, photos="\n".join(items), pager=pager)
            self.add(f"{gallery}?page={n}", html)
            if n == 1:
                self.add(gallery, html)
        return self.url(f"/filmweb/person/{person}")
