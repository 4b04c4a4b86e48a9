using System.Globalization;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;

namespace Loom.Cluster.Tests;

/// <summary>
/// Loom split by role on loopback, as real processes: two API+web nodes (no engine; one Redis for their rate limits,
/// one key ring in the database for their sign-ins) behind the YARP front (src/Front), two inference nodes (inf-a, inf-b)
/// serving the golden tiny chat model as "tiny-chat", inf-a also serving it a second time as the base model
/// "twin-chat" (an engine and pool of its own), and two (slow-a, slow-b) serving <see cref="SlowChatModel"/>, one
/// database, one blob store (as a cluster shares them), started with <see cref="LoopbackNodes"/>. Short heartbeats so a
/// dead node leaves the routing table in seconds.
/// </summary>
public sealed class LoopbackCluster : IAsyncLifetime
{
    public const string Collection = "loopback cluster";
    public const string ModelName = "tiny-chat";
    /// <summary>The second base model of inf-a, served by no other node.</summary>
    public const string TwinName = "twin-chat";
    public static readonly TimeSpan NodeTimeout = LoopbackNodes.NodeTimeout;
    public const string AdminPassword = LoopbackNodes.AdminPassword;

    private LoopbackNodes? _cluster;
    private OtlpReceiver? _otlp;

    /// <summary>api-1, which the tests' <see cref="Client"/> talks to directly.</summary>
    public NodeProcess Api { get; private set; } = null!;
    public NodeProcess Api2 { get; private set; } = null!;
    public NodeProcess Front { get; private set; } = null!;
    public NodeProcess InfA { get; private set; } = null!;
    public NodeProcess InfB { get; private set; } = null!;
    public NodeProcess SlowA { get; private set; } = null!;
    public NodeProcess SlowB { get; private set; } = null!;
    public HttpClient Client { get; private set; } = null!;
    /// <summary>Where every node sends the spans of the requests that arrive sampled.</summary>
    public OtlpReceiver Otlp => _otlp!;
    public string ConnectionString => _cluster!.ConnectionString;

    public async Task InitializeAsync()
    {
        _cluster = await LoopbackNodes.CreateAsync("loom_cluster", redis: true);
        _otlp = await OtlpReceiver.StartAsync();
        var modelDir = _cluster.TinyModel(ModelName);
        var slowModelDir = _cluster.SlowModel(SlowChatModel.Name);
        // The API node first: it migrates the database and seeds the demo tenant and key.
        Api = await _cluster.StartApiAsync("api-1", extra: _otlp.SettingsFor("api-1"), seed: true);
        var api2 = StartApi2Async(null);
        var nodes = await Task.WhenAll(
            StartInferenceNodeAsync("inf-a", [(ModelName, modelDir), (TwinName, modelDir)], new() { ["Inference:Models:0:PoolBytes"] = (32 << 20).ToString(CultureInfo.InvariantCulture) }),
            StartInferenceNodeAsync("inf-b", [(ModelName, modelDir)]),
            StartInferenceNodeAsync("slow-a", [(SlowChatModel.Name, slowModelDir)]), StartInferenceNodeAsync("slow-b", [(SlowChatModel.Name, slowModelDir)]));
        (InfA, InfB, SlowA, SlowB) = (nodes[0], nodes[1], nodes[2], nodes[3]);
        Api2 = await api2;
        Front = await _cluster.StartFrontAsync(Api, Api2);
        Client = new HttpClient { BaseAddress = Api.BaseAddress, Timeout = TimeSpan.FromSeconds(60) };
        Client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", _cluster.ApiKey);
    }

    /// <summary>Starts api-2 (again, on its old port, after a test killed it).</summary>
    public async Task<NodeProcess> StartApi2Async(int? port)
    {
        Api2 = await _cluster!.StartApiAsync("api-2", extra: _otlp!.SettingsFor("api-2"), port: port);
        return Api2;
    }

    private Task<NodeProcess> StartInferenceNodeAsync(string id, (string, string)[] models, Dictionary<string, string>? more = null)
    {
        var extra = new Dictionary<string, string>(_otlp!.SettingsFor(id));
        foreach (var (k, v) in more ?? new Dictionary<string, string>()) extra[k] = v;
        return _cluster!.StartInferenceAsync(id, models, extra);
    }

    public async Task DisposeAsync()
    {
        Client?.Dispose();
        if (_cluster is not null) await _cluster.DisposeAsync();
        if (_otlp is not null) await _otlp.DisposeAsync();
    }

    /// <summary>Uploads a copy of the golden rank-4 adapter under <paramref name="name"/>; returns the engine's id for it.</summary>
    public Task<string> UploadAdapterAsync(string name, string baseModel = ModelName) =>
        _cluster!.UploadAdapterAsync(Client, name, baseModel, Path.Combine(RepoRoot(), "tests", "golden", "lora", "llama3_scaled_bf16_r4"));

    /// <summary>The slow model's node that a base-model request goes to (its key is the model name alone).</summary>
    public (NodeProcess Home, NodeProcess Other) SlowHome() =>
        Routing.Rendezvous.Rank(["slow-a", "slow-b"], n => n, Routing.Rendezvous.Key(SlowChatModel.Name, null))[0] == "slow-a" ? (SlowA, SlowB) : (SlowB, SlowA);

    public static StringContent Chat(string model, int maxTokens, bool stream = false, int n = 1, bool ignoreEos = false) =>
        new(JsonSerializer.Serialize(new
        {
            model, messages = new[] { new { role = "user", content = "Define: harbor" } }, max_tokens = maxTokens, temperature = 0, stream, n, ignore_eos = ignoreEos,
        }), Encoding.UTF8, "application/json");

    /// <summary>The sum of a Prometheus series' samples in a node's /metrics (0 when absent), filtered by a label text.</summary>
    public static Task<double> MetricAsync(NodeProcess node, string name, string? label = null) => LoopbackNodes.MetricAsync(node, name, label);

    /// <summary>The series' sum once it reaches <paramref name="atLeast"/>, or what it shows after 10 s. The nodes answer
    /// every scrape fresh (Loom:Telemetry:ScrapeCacheMilliseconds = 0), but a count can still trail the answer the client
    /// already has: the engine counts a finished request just after writing its last event, and its meters read one
    /// snapshot of the engine's figures for up to 100 ms (so that one scrape's instruments agree).</summary>
    public static async Task<double> MetricAtLeastAsync(NodeProcess node, string name, string? label, double atLeast)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(10);
        while (true)
        {
            var value = await MetricAsync(node, name, label);
            if (value >= atLeast || DateTime.UtcNow > deadline) return value;
            await Task.Delay(200);
        }
    }

    public Task<T> ScalarAsync<T>(string sql, object? p = null) => _cluster!.ScalarAsync<T>(sql, p);

    public static string RepoRoot() => LoopbackNodes.RepoRoot();
}

[CollectionDefinition(LoopbackCluster.Collection)]
public sealed class LoopbackClusterCollection : ICollectionFixture<LoopbackCluster>;
