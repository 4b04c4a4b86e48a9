using System.Diagnostics;
using System.Text;
using System.Text.Json;
using Loom.Cluster.Routing;
using Loom.Tests.Shared;

namespace Loom.Benchmarks;

/// <summary>
/// Suite <c>cluster</c>: Loom split by role as real processes on loopback (<see cref="LoopbackNodes"/>: PostgreSQL from
/// LOOM_TEST_PG, as the tests use it), serving <see cref="SlowChatModel"/> (24.5 M parameters, f32, the model the
/// cluster tests generate) with 16 random rank-8 adapters. One trace (fixed seed: adapter, prompt and output length
/// per request) is sent by a closed loop of 16 streaming clients to three set-ups side by side in every round:
/// <list type="bullet">
/// <item>local: one process with the api and inference roles (the engine in-process);</item>
/// <item>one node: an API node without an engine reaching one inference node over the RPC;</item>
/// <item>two nodes: the same API node reaching two inference nodes, requests routed by rendezvous hashing on
/// (base model, adapter).</item>
/// </list>
/// The base model has a name per set-up ("bench-local", "bench-one" on inf-1, "bench-two" on inf-1 and inf-2), so the
/// three run on the same processes without restarts; every engine has the same settings. Reports per set-up generated
/// tokens/s and time to first token (p50), the scaling factor (two nodes / one), the routing overhead (one node against
/// local) and the adapter-affinity hit rate (requests placed on the node their adapter hashes to, and each engine's own
/// request count against the count the hashing predicts). Medians over the rounds.
/// Suite <c>cluster load</c>: <see cref="ClusterLoadBenchmark"/>.
/// </summary>
internal static class ClusterBenchmark
{
    private const int AdapterCount = 16, Clients = 16;
    private static readonly string[] Setups = ["local", "one", "two"];

    private sealed record TraceRequest(int Adapter, string Prompt, int MaxTokens);

    private sealed record RunResult(double Seconds, long Tokens, List<double> Ttft, int Errors)
    {
        public double TokensPerSecond => Tokens / Seconds;
        public double TtftP50 => Percentile(Ttft, 50);
    }

    public static void Run(string[] args)
    {
        if (LoopbackNodesAvailable() is { } problem)
        {
            Console.WriteLine(problem);
            Environment.Exit(2);
        }
        if (args.Length > 0 && args[0] == "load") ClusterLoadBenchmark.RunAsync(args[1..]).GetAwaiter().GetResult();
        else RunAsync(args).GetAwaiter().GetResult();
    }

    private static string? LoopbackNodesAvailable() =>
        string.IsNullOrEmpty(Environment.GetEnvironmentVariable(TestDatabase.EnvironmentVariable))
            ? $"cluster: set {TestDatabase.EnvironmentVariable} to a PostgreSQL connection string whose role may CREATE DATABASE (deploy/local/test.sh starts one)"
            : null;

    private static async Task RunAsync(string[] args)
    {
        var quick = args.Contains("--quick");
        var rounds = Option(args, "--rounds") ?? (quick ? 1 : 3);
        var requests = quick ? 32 : 96;
        var trace = Trace(requests, seed: 7);
        Console.WriteLine($"cluster: {Machine.Describe()}");
        Console.WriteLine($"commit {Commit()}, {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC; {rounds} round(s) of {requests} requests " +
                          $"(output {trace.Min(r => r.MaxTokens)}-{trace.Max(r => r.MaxTokens)} tokens, {trace.Sum(r => r.MaxTokens)} in all), {Clients} clients, {AdapterCount} adapters");

        var started = Stopwatch.StartNew();
        await using var nodes = await LoopbackNodes.CreateAsync("loom_bench_cluster", redis: false);
        var (one, two, local) = (nodes.SlowModel("bench-one"), nodes.SlowModel("bench-two"), nodes.SlowModel("bench-local"));
        var api = await nodes.StartApiAsync("api", seed: true);
        var localSettings = LoopbackNodes.EngineSettings();
        localSettings["Inference:ModelDirectory"] = local;
        var started3 = await Task.WhenAll(nodes.StartInferenceAsync("inf-1", [("bench-one", one), ("bench-two", two)]),
            nodes.StartInferenceAsync("inf-2", [("bench-two", two)]), nodes.StartApiAsync("local", "web,api,inference", localSettings));
        var (inf1, inf2, localNode) = (started3[0], started3[1], started3[2]);
        Console.WriteLine($"processes ready in {started.Elapsed.TotalSeconds:F0} s: api (web,api) {api.BaseAddress}, inf-1 (bench-one, bench-two), " +
                          $"inf-2 (bench-two), local (web,api,inference: bench-local)");

        using var apiClient = nodes.Client(api, TimeSpan.FromMinutes(5));
        using var localClient = nodes.Client(localNode, TimeSpan.FromMinutes(5));
        var twoIds = new string[AdapterCount];
        for (var i = 0; i < AdapterCount; i++)
        {
            var folder = SlowChatModel.WriteAdapter(Path.Combine(nodes.Root, "adapters", $"a{i}"), rank: 8, seed: 200 + i);
            await nodes.UploadAdapterAsync(apiClient, $"one-{i}", "bench-one", folder);
            twoIds[i] = await nodes.UploadAdapterAsync(apiClient, $"two-{i}", "bench-two", folder);
            await nodes.UploadAdapterAsync(localClient, $"local-{i}", "bench-local", folder);
        }
        // Where the hashing sends each adapter's requests among the nodes serving bench-two.
        var home = twoIds.Select(id => Rendezvous.Rank(["inf-1", "inf-2"], n => n, Rendezvous.Key("bench-two", id))[0]).ToArray();
        Console.WriteLine($"adapters hashing to inf-1: {home.Count(h => h == "inf-1")} of {AdapterCount}; requests of the trace hashing to inf-1: " +
                          $"{trace.Count(r => home[r.Adapter] == "inf-1")} of {requests}");

        HttpClient ClientOf(string setup) => setup == "local" ? localClient : apiClient;
        // Warm-up: each set-up serves every adapter once (registration, first loads into the pool, JIT).
        foreach (var setup in Setups)
            await ClosedLoopAsync(ClientOf(setup), setup, Trace(AdapterCount, seed: 99).Select((r, i) => r with { Adapter = i }).ToList());

        var results = Setups.ToDictionary(s => s, _ => new List<RunResult>());
        var hits = new List<(double Affinity, double Routed, double OnOne, double OnTwo)>();
        for (var round = 0; round < rounds; round++)
        {
            // Rotate the order so that no set-up always runs first (or last) on a drifting machine.
            foreach (var setup in Setups.Skip(round % Setups.Length).Concat(Setups.Take(round % Setups.Length)))
            {
                var before = setup == "two" ? await CountsAsync(api, inf1, inf2) : default;
                var r = await ClosedLoopAsync(ClientOf(setup), setup, trace);
                results[setup].Add(r);
                var line = $"  round {round + 1} {setup,-5} {r.Seconds,6:F2} s, {r.TokensPerSecond,6:F1} tokens/s, TTFT p50 {r.TtftP50 * 1e3,5:F0} ms, p90 {Percentile(r.Ttft, 90) * 1e3,5:F0} ms" +
                           (r.Errors > 0 ? $", {r.Errors} failed" : "");
                if (setup == "two")
                {
                    var after = await CountsAsync(api, inf1, inf2);
                    var h = (after.Affinity - before.Affinity, after.Routed - before.Routed, after.OnOne - before.OnOne, after.OnTwo - before.OnTwo);
                    hits.Add(h);
                    line += $"; placed by affinity {h.Item1} of {h.Item2}, inf-1 served {h.Item3} (hashing says {trace.Count(x => home[x.Adapter] == "inf-1")}), inf-2 {h.Item4}";
                }
                Console.WriteLine(line);
            }
        }

        Console.WriteLine();
        Console.WriteLine($"| set-up | tokens/s | TTFT p50 | wall time | failed |");
        Console.WriteLine("|---|---|---|---|---|");
        foreach (var setup in Setups)
        {
            var rs = results[setup];
            Console.WriteLine($"| {Describe(setup)} | {Median(rs.Select(r => r.TokensPerSecond)):F1} | {Median(rs.Select(r => r.TtftP50)) * 1e3:F0} ms | " +
                              $"{Median(rs.Select(r => r.Seconds)):F2} s | {rs.Sum(r => r.Errors)} |");
        }
        var scaling = results["two"].Zip(results["one"], (a, b) => a.TokensPerSecond / b.TokensPerSecond).ToList();
        var overhead = results["one"].Zip(results["local"], (a, b) => a.TokensPerSecond / b.TokensPerSecond).ToList();
        var ttft = results["one"].Zip(results["local"], (a, b) => a.TtftP50 - b.TtftP50).ToList();
        Console.WriteLine($"scaling, two inference nodes / one (median of per-round ratios): {Median(scaling):F2}x  [{string.Join(", ", scaling.Select(x => x.ToString("F2")))}]");
        Console.WriteLine($"routing overhead, API node + one inference node / in-process: tokens/s {Median(overhead):F2}x  [{string.Join(", ", overhead.Select(x => x.ToString("F2")))}], " +
                          $"TTFT p50 {Median(ttft) * 1e3:+0;-0} ms  [{string.Join(", ", ttft.Select(x => (x * 1e3).ToString("+0;-0")))}]");
        var expected = trace.Count(x => home[x.Adapter] == "inf-1");
        Console.WriteLine($"adapter affinity (two nodes): placed on the adapter's rendezvous node {hits.Sum(h => h.Affinity)} of {hits.Sum(h => h.Routed)} requests " +
                          $"({hits.Sum(h => h.Affinity) / Math.Max(1, hits.Sum(h => h.Routed)):P1}); inf-1's engine served {string.Join(", ", hits.Select(h => h.OnOne))} per round " +
                          $"where the hashing sends {expected}, inf-2's {string.Join(", ", hits.Select(h => h.OnTwo))} where it sends {requests - expected}");
        Console.WriteLine($"load average at the end: {File.ReadAllText("/proc/loadavg").Trim()}");
    }

    private static string Describe(string setup) => setup switch
    {
        "local" => "in-process engine (web,api,inference)",
        "one" => "API node + 1 inference node (gRPC)",
        _ => "API node + 2 inference nodes (gRPC)",
    };

    private static async Task<(double Affinity, double Routed, double OnOne, double OnTwo)> CountsAsync(NodeProcess api, NodeProcess inf1, NodeProcess inf2) =>
        (await LoopbackNodes.MetricAsync(api, "loom_cluster_requests_total", "placement=\"affinity\""),
         await LoopbackNodes.MetricAsync(api, "loom_cluster_requests_total"),
         await LoopbackNodes.MetricAsync(inf1, "loom_engine_requests_total", "model=\"bench-two\""),
         await LoopbackNodes.MetricAsync(inf2, "loom_engine_requests_total", "model=\"bench-two\""));

    /// <summary>The trace: adapter uniform over the adapters, a prompt of 8-47 words, 16-63 output tokens.</summary>
    private static List<TraceRequest> Trace(int count, int seed)
    {
        var random = new Random(seed);
        var words = "harbor river stone lantern meadow copper violet engine signal orchard thunder quiet marble falcon cedar ember".Split(' ');
        return [.. Enumerable.Range(0, count).Select(_ => new TraceRequest(random.Next(AdapterCount),
            string.Join(' ', Enumerable.Range(0, 8 + random.Next(40)).Select(_ => words[random.Next(words.Length)])), 16 + random.Next(48)))];
    }

    /// <summary>The trace sent by <see cref="Clients"/> clients, each taking the next request when its last is done.</summary>
    private static async Task<RunResult> ClosedLoopAsync(HttpClient client, string setup, List<TraceRequest> trace)
    {
        var next = -1;
        long tokens = 0;
        var errors = 0;
        var ttft = new List<double>();
        var clock = Stopwatch.StartNew();
        await Task.WhenAll(Enumerable.Range(0, Clients).Select(async _ =>
        {
            int i;
            while ((i = Interlocked.Increment(ref next)) < trace.Count)
            {
                var (first, generated, error) = await StreamAsync(client, $"{setup}-{trace[i].Adapter}", trace[i]);
                if (error is not null)
                {
                    if (Interlocked.Increment(ref errors) <= 3) Console.WriteLine($"    {setup}: {error}");
                    continue;
                }
                Interlocked.Add(ref tokens, generated);
                lock (ttft) ttft.Add(first);
            }
        }));
        return new RunResult(clock.Elapsed.TotalSeconds, tokens, ttft, errors);
    }

    /// <summary>A streamed chat completion: seconds to the first event, completion tokens (from the usage chunk), or an error.</summary>
    private static async Task<(double Ttft, int Tokens, string? Error)> StreamAsync(HttpClient client, string model, TraceRequest r)
    {
        var body = JsonSerializer.Serialize(new
        {
            model, messages = new[] { new { role = "user", content = r.Prompt } }, max_tokens = r.MaxTokens, temperature = 0, ignore_eos = true,
            stream = true, stream_options = new { include_usage = true },
        });
        var clock = Stopwatch.StartNew();
        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions") { Content = new StringContent(body, Encoding.UTF8, "application/json") };
        using var response = await client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        if (!response.IsSuccessStatusCode) return (0, 0, $"{(int)response.StatusCode}: {await response.Content.ReadAsStringAsync()}");
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
        double first = -1;
        var tokens = -1;
        while (await reader.ReadLineAsync() is { } line)
        {
            if (!line.StartsWith("data: ", StringComparison.Ordinal)) continue;
            if (first < 0) first = clock.Elapsed.TotalSeconds;
            var data = line["data: ".Length..];
            if (data == "[DONE]") break;
            using var doc = JsonDocument.Parse(data);
            if (doc.RootElement.TryGetProperty("error", out var error)) return (0, 0, error.ToString());
            if (doc.RootElement.TryGetProperty("usage", out var usage) && usage.ValueKind == JsonValueKind.Object)
                tokens = usage.GetProperty("completion_tokens").GetInt32();
        }
        return tokens == r.MaxTokens ? (first, tokens, null) : (0, 0, $"{tokens} completion tokens, {r.MaxTokens} asked");
    }

    internal static int? Option(string[] args, string name) =>
        Array.IndexOf(args, name) is var i and >= 0 && i + 1 < args.Length ? int.Parse(args[i + 1], System.Globalization.CultureInfo.InvariantCulture) : null;

    private static double Percentile(IReadOnlyList<double> xs, double p)
    {
        if (xs.Count == 0) return double.NaN;
        var s = xs.Order().ToArray();
        return s[Math.Clamp((int)Math.Ceiling(p / 100 * s.Length) - 1, 0, s.Length - 1)];
    }

    private static double Median(IEnumerable<double> xs) => Percentile(xs.ToArray(), 50);

    internal static string Commit() => LinePlot.Commit();
}
