// HTTP overhead of Loom's streamed API: the same workload through POST /v1/completions (SSE, loopback,
// a separate Loom process) and through the engine in this process, one after the other, on one model.
// Run with tests/Benchmarks.Http/run.sh, which starts PostgreSQL and Loom (see BENCHMARKS.md).
using System.Diagnostics;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Loom.Inference;
using Loom.Inference.Engine;
using Loom.Inference.Sampling;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;

var baseUrl = Environment.GetEnvironmentVariable("LOOM_URL") ?? "http://127.0.0.1:5090";
var key = File.ReadAllText(Environment.GetEnvironmentVariable("LOOM_KEY_FILE") ?? throw new InvalidOperationException("LOOM_KEY_FILE is not set")).Trim();
var modelDir = Environment.GetEnvironmentVariable("LOOM_MODEL_DIR") ?? throw new InvalidOperationException("LOOM_MODEL_DIR is not set");
int requests = int.Parse(Environment.GetEnvironmentVariable("BENCH_REQUESTS") ?? "16"), concurrency = int.Parse(Environment.GetEnvironmentVariable("BENCH_CONCURRENCY") ?? "4");
int maxTokens = int.Parse(Environment.GetEnvironmentVariable("BENCH_MAX_TOKENS") ?? "96");
string[] prompts = ["harbor (noun):", "cat (noun):", "run (verb):", "bright (adjective):", "table (noun):", "quickly (adverb):", "river (noun):", "write (verb):"];

// The engine exactly as the server builds it: the module's own registration and options.
var config = new ConfigurationBuilder().AddInMemoryCollection([new("Inference:ModelDirectory", modelDir)]).Build();
using var services = new ServiceCollection().AddLogging().AddInference(config).BuildServiceProvider();
var engine = services.GetRequiredService<IInferenceEngine>();
var modelName = engine.Model.Name;

using var http = new HttpClient { BaseAddress = new Uri(baseUrl), Timeout = TimeSpan.FromMinutes(10) };
http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", key);

async Task<(int Tokens, double FirstMs)> ViaEngine(string prompt)
{
    var sw = Stopwatch.StartNew();
    double first = -1;
    var tokens = 0;
    await foreach (var e in engine.GenerateAsync(new GenerationRequest { Prompt = prompt, Sampling = new SamplingParams { Temperature = 0, MaxTokens = maxTokens, IgnoreEos = true } }))
    {
        if (first < 0) first = sw.Elapsed.TotalMilliseconds;
        if (e.Usage is { } u) tokens = u.CompletionTokens;
    }
    return (tokens, first);
}

async Task<(int Tokens, double FirstMs)> ViaHttp(string prompt)
{
    var body = JsonSerializer.Serialize(new { model = modelName, prompt, max_tokens = maxTokens, temperature = 0, stream = true, stream_options = new { include_usage = true }, ignore_eos = true });
    var sw = Stopwatch.StartNew();
    using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/completions") { Content = new StringContent(body, Encoding.UTF8, "application/json") };
    using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
    if (!response.IsSuccessStatusCode) throw new InvalidOperationException($"{(int)response.StatusCode}: {await response.Content.ReadAsStringAsync()}");
    using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
    double first = -1;
    var tokens = 0;
    while (await reader.ReadLineAsync() is { } line)
    {
        if (!line.StartsWith("data: ", StringComparison.Ordinal)) continue;
        if (first < 0) first = sw.Elapsed.TotalMilliseconds;
        if (line == "data: [DONE]") break;
        using var doc = JsonDocument.Parse(line.AsMemory(6));
        if (doc.RootElement.TryGetProperty("usage", out var u) && u.ValueKind == JsonValueKind.Object) tokens = u.GetProperty("completion_tokens").GetInt32();
    }
    return (tokens, first);
}

async Task<(double TokensPerSecond, double MedianFirstMs)> Run(Func<string, Task<(int, double)>> one)
{
    var next = -1;
    var results = new List<(int Tokens, double First)>();
    var sw = Stopwatch.StartNew();
    await Task.WhenAll(Enumerable.Range(0, concurrency).Select(async _ =>
    {
        int i;
        while ((i = Interlocked.Increment(ref next)) < requests)
        {
            var r = await one(prompts[i % prompts.Length]);
            lock (results) results.Add(r);
        }
    }));
    var seconds = sw.Elapsed.TotalSeconds;
    if (Environment.GetEnvironmentVariable("BENCH_VERBOSE") is not null) Console.WriteLine($"  {results.Sum(r => r.Tokens)} tokens in {seconds:F2} s");
    return (results.Sum(r => r.Tokens) / seconds, results.Select(r => r.First).Order().ElementAt(results.Count / 2));
}

async Task<double> IdleFirstByte(Func<string, Task<(int, double)>> one, int samples = 10)
{
    var firsts = new List<double>();
    for (var i = 0; i < samples; i++) firsts.Add((await one(prompts[i % prompts.Length])).Item2);
    return firsts.Order().ElementAt(samples / 2);
}

Console.WriteLine($"model {modelName} ({modelDir}); {requests} requests x {maxTokens} tokens (ignore_eos), {concurrency} at a time, temperature 0");
await Run(ViaEngine); // warm-up (JIT, caches)
await Run(ViaHttp);
// Interleaved rounds, so load from elsewhere on the machine falls on both sides alike; medians reported.
var rounds = int.Parse(Environment.GetEnvironmentVariable("BENCH_ROUNDS") ?? "5");
var engineRuns = new List<(double TokensPerSecond, double MedianFirstMs)>();
var httpRuns = new List<(double TokensPerSecond, double MedianFirstMs)>();
for (var r = 0; r < rounds; r++)
{
    engineRuns.Add(await Run(ViaEngine));
    httpRuns.Add(await Run(ViaHttp));
    Console.WriteLine($"round {r + 1}: in-process {engineRuns[^1].TokensPerSecond:F1} tokens/s, HTTP {httpRuns[^1].TokensPerSecond:F1} tokens/s");
}
var engineRun = engineRuns.OrderBy(x => x.TokensPerSecond).ElementAt(rounds / 2);
var httpRun = httpRuns.OrderBy(x => x.TokensPerSecond).ElementAt(rounds / 2);
var savedMax = maxTokens;
maxTokens = 1;
var engineFirst = await IdleFirstByte(ViaEngine);
var httpFirst = await IdleFirstByte(ViaHttp);
maxTokens = savedMax;

Console.WriteLine($"in-process engine : {engineRun.TokensPerSecond,8:F1} tokens/s");
Console.WriteLine($"streamed HTTP API : {httpRun.TokensPerSecond,8:F1} tokens/s");
Console.WriteLine($"HTTP / in-process : {httpRun.TokensPerSecond / engineRun.TokensPerSecond,8:P1}   (target >= 90%)");
var pairs = engineRuns.Zip(httpRuns, (e, h) => h.TokensPerSecond / e.TokensPerSecond).Order().ToList();
Console.WriteLine($"HTTP / in-process, median of the rounds' own ratios: {pairs[pairs.Count / 2]:P1} (rounds: {string.Join(", ", pairs.Select(p => p.ToString("P0")))})");
Console.WriteLine($"time to first byte at idle (1-token completion, median of 10): HTTP {httpFirst:F1} ms, in-process first event {engineFirst:F1} ms");
return 0;
