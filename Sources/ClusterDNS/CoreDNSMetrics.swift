/// CoreDNS's metric names and labels (plugin/metrics, cache, forward, autopath), so the
/// standard CoreDNS dashboards work against nodenet's `/metrics`. Rendered at scrape time from
/// the per-socket atomic counters (the hot path never touches a metrics library): Prometheus
/// text exposition format with HELP and TYPE for every family. Labels as CoreDNS sets them for
/// the usual `.:53` server block: `server="dns://:53"`, `zone="."`, `view=""`.
public enum CoreDNSMetrics {
    public static func render(_ s: DNSStats, upstreams: [UpstreamStats], cacheEntries: (success: Int, denial: Int), port: Int) -> String {
        let server = "dns://:\(port)"
        var out = ""
        func family(_ name: String, _ type: String, _ help: String, _ samples: [(String, Double)]) {
            out += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n"
            for (labels, v) in samples { out += "\(name)\(labels.isEmpty ? "" : "{\(labels)}") \(format(v))\n" }
        }
        let base = "server=\"\(server)\",view=\"\",zone=\".\""
        var requests: [(String, Double)] = []
        for (p, proto) in ["udp", "tcp"].enumerated() {
            for (f, fam) in ["1", "2"].enumerated() {
                for (t, type) in DNSStats.typeNames.enumerated() {
                    let n = s.requestsByType[DNSStats.requestSlot(tcp: p == 1, v6: f == 1, type: t)]
                    if n > 0 { requests.append(("family=\"\(fam)\",proto=\"\(proto)\",\(base),type=\"\(type)\"", Double(n))) }
                }
            }
        }
        family("coredns_dns_requests_total", "counter", "Counter of DNS requests made per zone, protocol and family.", requests)
        let rcodes: [(String, Int)] = [("NOERROR", s.noError), ("NXDOMAIN", s.nxDomain), ("SERVFAIL", s.servFail), ("FORMERR", s.formErr),
                                       ("REFUSED", s.refused), ("NOTIMP", s.notImp), ("OTHER", s.otherRCode)]
        family("coredns_dns_responses_total", "counter", "Counter of response status codes.",
               rcodes.filter { $0.1 > 0 }.map { ("plugin=\"\",rcode=\"\($0.0)\",\(base)", Double($0.1)) })
        out += "# HELP coredns_dns_request_duration_seconds Histogram of the time (in seconds) each request took per zone.\n"
        out += "# TYPE coredns_dns_request_duration_seconds histogram\n"
        let nb = DNSStats.durationBounds.count + 1
        for (t, type) in DNSStats.typeNames.enumerated() {
            let counts = s.durationBuckets[(t * nb)..<((t + 1) * nb)]
            let total = counts.reduce(0, +)
            guard total > 0 else { continue }
            let labels = "\(base),type=\"\(type)\""
            var cumulative = 0
            for (k, bound) in DNSStats.durationBounds.enumerated() {
                cumulative += counts[counts.startIndex + k]
                out += "coredns_dns_request_duration_seconds_bucket{\(labels),le=\"\(format(bound))\"} \(cumulative)\n"
            }
            out += "coredns_dns_request_duration_seconds_bucket{\(labels),le=\"+Inf\"} \(total)\n"
            out += "coredns_dns_request_duration_seconds_sum{\(labels)} \(format(Double(s.durationMicrosByType[t]) / 1e6))\n"
            out += "coredns_dns_request_duration_seconds_count{\(labels)} \(total)\n"
        }
        let cacheBase = "server=\"\(server)\",view=\"\",zones=\".\""
        family("coredns_cache_entries", "gauge", "The number of elements in the cache.",
               [("server=\"\(server)\",type=\"denial\",view=\"\",zones=\".\"", Double(cacheEntries.denial)),
                ("server=\"\(server)\",type=\"success\",view=\"\",zones=\".\"", Double(cacheEntries.success))])
        family("coredns_cache_hits_total", "counter", "The count of cache hits.",
               [("server=\"\(server)\",type=\"denial\",view=\"\",zones=\".\"", Double(s.cacheDenialHits)),
                ("server=\"\(server)\",type=\"success\",view=\"\",zones=\".\"", Double(s.cacheHits - s.cacheDenialHits))])
        family("coredns_cache_misses_total", "counter", "The count of cache misses.", [(cacheBase, Double(s.cacheMisses))])
        family("coredns_cache_prefetch_total", "counter", "The number of times the cache has prefetched a cached item.",
               [(cacheBase, Double(s.prefetches))])
        family("coredns_cache_served_stale_total", "counter", "The number of requests served from stale cache entries.",
               [(cacheBase, Double(s.staleAnswers))])
        family("coredns_forward_requests_total", "counter", "Counter of requests made per upstream.",
               upstreams.map { ("to=\"\($0.server)\"", Double($0.requests)) })
        family("coredns_forward_healthcheck_failures_total", "counter", "Counter of the number of failed healthchecks.",
               upstreams.map { ("to=\"\($0.server)\"", Double($0.failures)) })
        family("coredns_forward_healthcheck_broken_total", "counter", "Counter of the number of complete failures of the healthchecks.",
               [("", upstreams.isEmpty || upstreams.contains(where: \.healthy) ? 0 : 1)])
        family("coredns_autopath_success_total", "counter", "Counter of requests that did autopath.",
               [("server=\"\(server)\"", Double(s.autopathAnswers))])
        return out
    }

    static func format(_ v: Double) -> String {
        if v == v.rounded(), abs(v) < 1e15 { return String(Int64(v)) }
        return "\(v)"
    }
}
