"""Harvest gender-labelled celebrity photos from public sites and clean them for ``anfe build``.

- :mod:`anfe.scraper.fetcher`: the one polite HTTP client (robots.txt, per-host delay, retries,
  timeouts, size and type checks); it knows nothing of any site.
- :mod:`anfe.scraper.sources`: site adapters that turn a seed into ``(person, gender, image_url)``
  records; they know nothing of retries or disk.
- :mod:`anfe.scraper.output`: safe paths, atomic writes and the JSON-lines manifest that makes a run
  resumable.
- :mod:`anfe.scraper.scrape`: the loop that ties them together (``anfe scrape``).
- :mod:`anfe.scraper.cleaner` and :mod:`anfe.scraper.review`: quarantine bad images and review labels
  (``anfe clean``).
"""
