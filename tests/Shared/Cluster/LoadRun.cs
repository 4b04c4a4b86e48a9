using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Text;
using System.Text.Json;

namespace Loom.Tests.Shared;

/// <summary>One response of the run: status, whether a refusal carried Retry-After and OpenAI's error envelope, and
/// what went wrong when it was neither a 200 nor such a refusal (a 500, another status, a timeout, a reset).
/// <paramref name="Seconds"/>: how long it took; <paramref name="DoneAt"/>: when it was answered, on the phase's clock.</summary>
public sealed record LoadResponse(int Status, double Seconds, double DoneAt, int CompletionTokens, bool RetryAfter, bool Envelope, string? Unexpected);

/// <summary>A node's resident memory over the run (bytes): when the overload began, the most sampled, at the end, and
/// the kernel's high-water mark for the whole process life.</summary>
public sealed record NodeMemory(string Node, long AtStart, long Peak, long AtEnd, long HighWater);

/// <summary>An engine's state once the run has drained: the pool's accounting check, KV pages still held, sequences
/// left, generations refused at the admission bound.</summary>
public sealed record EnginePool(string Node, double AuditFailures, double KvPages, double Sequences, double Refused);

public sealed record LoadRunResult(double Capacity, double Offered, TimeSpan Duration, IReadOnlyList<LoadResponse> Responses,
    IReadOnlyList<NodeMemory> Memory, IReadOnlyList<EnginePool> Pools, bool Drained)
{
    public int Count(int status) => Responses.Count(r => r.Status == status);
    public IReadOnlyList<LoadResponse> Refusals => [.. Responses.Where(r => r.Status is 429 or 503)];
    public IReadOnlyList<LoadResponse> Unexpected => [.. Responses.Where(r => r.Unexpected is not null)];
    public double Served => Count(200) / Duration.TotalSeconds;

    public IEnumerable<string> Describe()
    {
        var ok = Responses.Where(r => r.Status == 200).Select(r => r.Seconds).Order().ToArray();
        double Pct(double p) => ok.Length == 0 ? double.NaN : ok[Math.Clamp((int)Math.Ceiling(p / 100 * ok.Length) - 1, 0, ok.Length - 1)];
        yield return $"capacity {Capacity:F1} requests/s (closed loop), offered {Offered:F1}/s for {Duration.TotalSeconds:F0} s: {Responses.Count} requests, " +
                     $"{Count(200)} x 200 ({Served:F1}/s served), {Count(429)} x 429, {Count(503)} x 503, {Unexpected.Count} other; " +
                     $"refusals with Retry-After {Refusals.Count(r => r.RetryAfter)}/{Refusals.Count}, in the error envelope {Refusals.Count(r => r.Envelope)}/{Refusals.Count}; " +
                     $"200s took p50 {Pct(50):F2} s, p99 {Pct(99):F2} s, max {(ok.Length > 0 ? ok[^1] : double.NaN):F2} s";
        foreach (var u in Unexpected.Take(5)) yield return $"  unexpected: {u.Unexpected}";
        foreach (var m in Memory)
            yield return $"  {m.Node,-6} RSS at the start of the overload {Mib(m.AtStart)}, peak sampled {Mib(m.Peak)}, at the end {Mib(m.AtEnd)} (process high-water mark {Mib(m.HighWater)})";
        foreach (var p in Pools)
            yield return $"  {p.Node,-6} after the run: pool audit failures {p.AuditFailures}, KV pages held {p.KvPages}, sequences left {p.Sequences}, generations refused at the bound {p.Refused}";
        if (!Drained) yield return "  the engines still held sequences 60 s after the last response";
    }

    public static string Mib(long bytes) => $"{bytes / (1024.0 * 1024):F0} MiB";
}

/// <summary>
/// The overload run: measures the cluster's capacity (requests answered per second by a closed loop of as many clients
/// as the engines have places, <see cref="OverloadCluster.MaxGenerationsPerEngine"/> each, through the front, counted
/// over a window after 10 s of warm-up), then sends
/// requests at <c>overload</c> times that rate, at even intervals, for <c>duration</c>, sampling every node's resident
/// memory; then waits for the engines to drain and reads each one's pool audit. Every request is a chat completion of
/// 8 tokens (a prompt of 2-7 words) on the base model or one of its adapters (drawn with a fixed seed).
/// </summary>
public static class LoadRun
{
    private const int MaxTokens = 8;

    public static async Task<LoadRunResult> RunAsync(OverloadCluster cluster, TimeSpan duration, double overload, TimeSpan capacityWindow, Action<string> log)
    {
        using var http = cluster.Nodes.Client(cluster.Front, TimeSpan.FromSeconds(120));
        var random = new Random(17);
        var words = "harbor river stone lantern meadow copper violet engine signal orchard thunder quiet marble falcon".Split(' ');
        string Body(string? name = null)
        {
            string model, prompt;
            lock (random)
            {
                model = name ?? cluster.ModelNames[random.Next(cluster.ModelNames.Count)];
                prompt = string.Join(' ', Enumerable.Range(0, 2 + random.Next(6)).Select(_ => words[random.Next(words.Length)]));
            }
            return JsonSerializer.Serialize(new
            {
                model, messages = new[] { new { role = "user", content = prompt } }, max_tokens = MaxTokens, temperature = 0, ignore_eos = true,
            });
        }

        var responses = new ConcurrentQueue<LoadResponse>();
        var concurrency = cluster.Inference.Count * OverloadCluster.MaxGenerationsPerEngine; // every place of every engine
        // One closed loop without a pause: the answers completed within the window after the warm-up, per second (a loop
        // that started empty or drained at the end of the window would count its ramp as capacity lost).
        // First a request on each model name, two at a time: each adapter's first request registers it on its node and
        // loads it, and the first requests of a process compile its code paths; that is start-up, not capacity.
        var first = new ConcurrentQueue<LoadResponse>();
        await Parallel.ForEachAsync(cluster.ModelNames, new ParallelOptions { MaxDegreeOfParallelism = 2 }, async (name, _) =>
            await SendAsync(http, Body(name), first, Stopwatch.StartNew()));
        foreach (var r in first.Where(r => r.Unexpected is not null)) responses.Enqueue(r);
        var warmUp = TimeSpan.FromSeconds(10);
        log($"capacity: {concurrency} clients in a closed loop, {warmUp.TotalSeconds:F0} s of warm-up, then {capacityWindow.TotalSeconds:F0} s counted");
        var loop = Stopwatch.StartNew();
        await ClosedLoopAsync(http, () => Body(), concurrency, warmUp + capacityWindow, responses, loop);
        var capacity = responses.Count(r => r.Status == 200 && r.DoneAt >= warmUp.TotalSeconds && r.DoneAt < (warmUp + capacityWindow).TotalSeconds)
                       / capacityWindow.TotalSeconds;
        if (capacity <= 0) throw new InvalidOperationException("the closed loop got no 200: " + string.Join("; ", responses.Where(r => r.Unexpected is not null).Take(3).Select(r => r.Unexpected)));
        var rate = overload * capacity;
        var counted = responses.Where(r => r.Status == 200 && r.DoneAt >= warmUp.TotalSeconds).Select(r => r.Seconds).Order().ToArray();
        log($"first request on each of {cluster.ModelNames.Count} model names: up to {first.Max(r => r.Seconds):F1} s; capacity {capacity:F1} requests/s with " +
            $"{concurrency} clients (latency p50 {(counted.Length > 0 ? counted[counted.Length / 2] : double.NaN):F2} s); offering {rate:F1}/s for {duration.TotalSeconds:F0} s");

        var memory = cluster.All.ToDictionary(n => n.Name, n => new List<long> { LoopbackNodes.Memory(n).Rss });
        using var stop = new CancellationTokenSource();
        var sampler = Task.Run(async () =>
        {
            while (!stop.IsCancellationRequested)
            {
                foreach (var n in cluster.All)
                {
                    var rss = LoopbackNodes.Memory(n).Rss;
                    lock (memory) memory[n.Name].Add(rss);
                }
                try { await Task.Delay(1000, stop.Token); } catch (OperationCanceledException) { }
            }
        });

        var overloadResponses = new ConcurrentQueue<LoadResponse>();
        var inFlight = new List<Task>();
        var clock = Stopwatch.StartNew();
        var lastReport = TimeSpan.Zero;
        for (long i = 0; clock.Elapsed < duration; i++)
        {
            var due = TimeSpan.FromSeconds(i / rate) - clock.Elapsed;
            if (due > TimeSpan.Zero) await Task.Delay(due);
            inFlight.Add(SendAsync(http, Body(), overloadResponses, clock));
            if (clock.Elapsed - lastReport >= TimeSpan.FromSeconds(30))
            {
                lastReport = clock.Elapsed;
                var seen = overloadResponses.ToArray();
                string rss;
                lock (memory) rss = string.Join(", ", cluster.All.Select(n => $"{n.Name} {LoadRunResult.Mib(memory[n.Name][^1])}"));
                log($"  {clock.Elapsed.TotalSeconds:F0} s: sent {i + 1}, answered {seen.Length} ({seen.Count(r => r.Status == 200)} x 200, " +
                    $"{seen.Count(r => r.Status is 429 or 503)} refused, {seen.Count(r => r.Unexpected is not null)} other); RSS " + rss);
            }
        }
        var offeredFor = clock.Elapsed;
        await Task.WhenAll(inFlight);
        await stop.CancelAsync();
        await sampler;
        foreach (var n in cluster.All) memory[n.Name].Add(LoopbackNodes.Memory(n).Rss);

        // Drained: no sequence left in either engine; then the audit and the pages still held.
        var drained = false;
        var waited = Stopwatch.StartNew();
        while (!drained && waited.Elapsed < TimeSpan.FromSeconds(60))
        {
            double left = 0;
            foreach (var n in cluster.Inference)
                left += await LoopbackNodes.MetricAsync(n, "loom_engine_sequences_running") + await LoopbackNodes.MetricAsync(n, "loom_engine_sequences_waiting");
            drained = left == 0;
            if (!drained) await Task.Delay(250);
        }
        await Task.Delay(300); // past the engine meters' snapshot (100 ms), so the figures below are read after the drain
        var pools = new List<EnginePool>();
        foreach (var n in cluster.Inference)
            pools.Add(new EnginePool(n.Name, await LoopbackNodes.MetricAsync(n, "loom_engine_pool_audit_failures"),
                await LoopbackNodes.MetricAsync(n, "loom_engine_pool_pages", "owner=\"kv\""),
                await LoopbackNodes.MetricAsync(n, "loom_engine_sequences_running") + await LoopbackNodes.MetricAsync(n, "loom_engine_sequences_waiting"),
                await LoopbackNodes.MetricAsync(n, "loom_cluster_refused_total")));
        var memories = cluster.All.Select(n => new NodeMemory(n.Name, memory[n.Name][0], memory[n.Name].Max(), memory[n.Name][^1], LoopbackNodes.Memory(n).Peak)).ToList();
        return new LoadRunResult(capacity, rate, offeredFor, [.. responses.Where(r => r.Unexpected is not null), .. overloadResponses], memories, pools, drained);
    }

    /// <summary><paramref name="clients"/> clients each sending the next request when the last is answered.</summary>
    private static Task ClosedLoopAsync(HttpClient http, Func<string> body, int clients, TimeSpan window, ConcurrentQueue<LoadResponse> into, Stopwatch clock) =>
        Task.WhenAll(Enumerable.Range(0, clients).Select(async _ =>
        {
            while (clock.Elapsed < window) await SendAsync(http, body(), into, clock);
        }));

    private static async Task SendAsync(HttpClient http, string body, ConcurrentQueue<LoadResponse> into, Stopwatch clock)
    {
        await Task.Yield();
        var sw = Stopwatch.StartNew();
        try
        {
            using var content = new StringContent(body, Encoding.UTF8, "application/json");
            using var response = await http.PostAsync("/v1/chat/completions", content);
            var text = await response.Content.ReadAsStringAsync();
            var status = (int)response.StatusCode;
            var retryAfter = response.Headers.RetryAfter is { Delta: { } d } && d > TimeSpan.Zero;
            var envelope = IsErrorEnvelope(text);
            var tokens = 0;
            string? unexpected = null;
            if (status == 200)
            {
                try
                {
                    using var doc = JsonDocument.Parse(text);
                    tokens = doc.RootElement.GetProperty("usage").GetProperty("completion_tokens").GetInt32();
                    if (tokens != MaxTokens) unexpected = $"200 with {tokens} completion tokens, not {MaxTokens}";
                }
                catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException)
                {
                    unexpected = $"200 with a body that is not a completion: {Clip(text)}";
                }
            }
            else if (status is not (429 or 503) || !retryAfter || !envelope)
                unexpected = $"{status}{(retryAfter ? "" : " without Retry-After")}: {Clip(text)}";
            into.Enqueue(new LoadResponse(status, sw.Elapsed.TotalSeconds, clock.Elapsed.TotalSeconds, tokens, retryAfter, envelope, unexpected));
        }
        catch (Exception e) when (e is HttpRequestException or TaskCanceledException or IOException)
        {
            into.Enqueue(new LoadResponse(0, sw.Elapsed.TotalSeconds, clock.Elapsed.TotalSeconds, 0, false, false, $"{e.GetType().Name} after {sw.Elapsed.TotalSeconds:F1} s: {e.Message}"));
        }
    }

    private static bool IsErrorEnvelope(string text)
    {
        try
        {
            using var doc = JsonDocument.Parse(text);
            return doc.RootElement.TryGetProperty("error", out var e) && e.ValueKind == JsonValueKind.Object
                && e.TryGetProperty("message", out var m) && m.ValueKind == JsonValueKind.String && e.TryGetProperty("type", out _) && e.TryGetProperty("code", out _);
        }
        catch (JsonException) { return false; }
    }

    private static string Clip(string s) => s.Length <= 300 ? s : s[..300] + "…";

    /// <summary>Seconds of the overload from an environment variable (whole seconds), else the default.</summary>
    public static TimeSpan DurationFrom(string variable, TimeSpan fallback) =>
        Environment.GetEnvironmentVariable(variable) is { Length: > 0 } s
            ? int.TryParse(s, NumberStyles.None, CultureInfo.InvariantCulture, out var seconds) && seconds is > 0 and <= 3600
                ? TimeSpan.FromSeconds(seconds)
                : throw new InvalidOperationException($"{variable} must be whole seconds from 1 to 3600, not '{s}'")
            : fallback;
}
