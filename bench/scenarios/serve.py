"""`janusweb serve`'s HTTP server under load on loopback: keep-alive clients, large-file ranges, every body checked.

N keep-alive clients for a bounded time; 5 % of requests the 100 MB file (half of them a random byte range, as a
resuming page asks), the rest small files (0.5-256 KB); the server (janusweb.site.server, in its own process)
sampled once a second for open descriptors and resident memory. Verdicts: no error; descriptors back to where they
started once the clients are gone.
"""

from janusweb.bench.scenario import Metric, Param, Result, Scenario, Verdict

MB = 1e6


class Serve(Scenario):
    """janusweb serve's HTTP server under load: keep-alive clients, byte ranges of a large file, every body checked."""
    name = "serve"
    params = (Param("clients", int, (8,), "keep-alive clients at once"),
              Param("seconds", float, 30.0, "how long the clients run", multi=False))
    metrics = (
        Metric("requests", "", "requests answered", int),
        Metric("requests_per_s", "/s", "requests per second"),
        Metric("mb_per_s", "MB/s", "body bytes per second"),
        Metric("large_file_requests", "", "requests of the 100 MB file", int),
        Metric("connections", "", "connections opened (a client reconnects after an error)", int),
        Metric("errors", "", "failed or wrong answers", int),
        Metric("server_fds_start", "", "server's open descriptors before", int),
        Metric("server_fds_peak", "", "server's open descriptors, peak", int),
        Metric("server_fds_after", "", "server's open descriptors after the clients left", int),
        Metric("server_rss_peak_bytes", "bytes", "server's resident memory, peak"),
        Metric("server_rss_after_bytes", "bytes", "server's resident memory after"),
    )

    def run(self, ctx, case: dict, session) -> Result:
        from janusweb.bench import serve_load
        r = serve_load.run(case["clients"], case["seconds"])
        workers, samples = r["workers"], r["samples"]
        requests, nbytes = sum(w.requests for w in workers), sum(w.bytes for w in workers)
        figures = {"requests": requests, "requests_per_s": requests / r["wall_s"], "mb_per_s": nbytes / r["wall_s"] / MB,
                   "large_file_requests": sum(w.big for w in workers),
                   "connections": sum(w.connections for w in workers), "errors": sum(w.errors for w in workers),
                   "server_fds_start": samples[0][0], "server_fds_peak": max(s[0] for s in samples),
                   "server_fds_after": r["after"][0], "server_rss_peak_bytes": max(s[1] for s in samples) * 2**20,
                   "server_rss_after_bytes": r["after"][1] * 2**20}
        first = next((w.first_error for w in workers if w.first_error), None)
        return Result(figures, {"device": "cpu", "runner": "janusweb.site.server on 127.0.0.1"},
                      {"first_error": first, "wall_s": r["wall_s"]})

    def verdicts(self, ctx, rows: list) -> list:
        out = []
        for r in rows:
            if r.ran:
                m, where = r.metrics, f"clients={r.case['clients']}"
                out += [Verdict("no_errors", "every answer right", m["errors"], "= 0", m["errors"] == 0, where),
                        Verdict("fds_back", "descriptors back to the start", m["server_fds_after"],
                                f"<= {m['server_fds_start']}", m["server_fds_after"] <= m["server_fds_start"], where)]
        return out
