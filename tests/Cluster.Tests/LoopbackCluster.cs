using System.Globalization;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Npgsql;

namespace Loom.Cluster.Tests;

/// <summary>
/// Loom split by role on loopback, as real processes: two API+web nodes (no engine; one Redis for their rate limits,
/// one key ring in the database for their sign-ins) behind the YARP front (src/Front), two inference nodes (inf-a, inf-b)
/// serving the golden tiny chat model as "tiny-chat", inf-a also serving it a second time as the base model
/// "twin-chat" (an engine and pool of its own), and two (slow-a, slow-b) serving <see cref="SlowChatModel"/>, one
/// database, one blob store (as a cluster shares them). Short heartbeats so a dead node leaves the routing table in seconds.
/// </summary>
public sealed class LoopbackCluster : IAsyncLifetime
{
    public const string Collection = "loopback cluster";
    public const string ModelName = "tiny-chat";
    /// <summary>The second base model of inf-a, served by no other node.</summary>
    public const string TwinName = "twin-chat";
    public static readonly TimeSpan NodeTimeout = TimeSpan.FromSeconds(3);

    private readonly string _root = Path.Combine(Path.GetTempPath(), $"loom-cluster-{Guid.NewGuid():N}");
    private readonly List<NodeProcess> _nodes = [];
    private TestDatabase? _db;
    private RedisServer? _redis;
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
    public string ConnectionString => _db!.ConnectionString;
    private string ModelDir => Path.Combine(_root, "models", ModelName);
    private string SlowModelDir => Path.Combine(_root, "models", SlowChatModel.Name);

    public async Task InitializeAsync()
    {
        _db = await TestDatabase.CreateAsync("loom_cluster");
        _redis = await RedisServer.StartAsync();
        _otlp = await OtlpReceiver.StartAsync();
        GoldenChatModel.CreateIn(ModelDir, GoldenChatModel.GoldenDirectory(RepoRoot()));
        SlowChatModel.CreateIn(SlowModelDir, GoldenChatModel.GoldenDirectory(RepoRoot()));
        // The API node first: it migrates the database and seeds the demo tenant and key.
        Api = Track(await NodeProcess.StartAsync("api-1", "web,api", Settings("api-1", new()
        {
            ["Loom:Seed:Demo"] = "true", ["Loom:Seed:ApiKeyFile"] = Path.Combine(_root, "demo-api-key"), ["Loom:Seed:AdminPassword"] = AdminPassword,
        })));
        var api2 = StartApi2Async(null);
        var nodes = await Task.WhenAll(StartInferenceNodeAsync("inf-a", ModelDir, new()
            {
                ["Inference:Models:0:Name"] = TwinName, ["Inference:Models:0:Directory"] = ModelDir,
                ["Inference:Models:0:PoolBytes"] = (32 << 20).ToString(CultureInfo.InvariantCulture),
            }), StartInferenceNodeAsync("inf-b", ModelDir),
            StartInferenceNodeAsync("slow-a", SlowModelDir), StartInferenceNodeAsync("slow-b", SlowModelDir));
        (InfA, InfB, SlowA, SlowB) = (nodes[0], nodes[1], nodes[2], nodes[3]);
        Api2 = await api2;
        Front = Track(await NodeProcess.StartAsync("front", "", new Dictionary<string, string>
        {
            ["Front:Nodes:0"] = Api.BaseAddress.ToString(), ["Front:Nodes:1"] = Api2.BaseAddress.ToString(),
        }, assembly: "Loom.Front.dll", readyPath: "/front/healthz"));
        var key = (await File.ReadAllTextAsync(Path.Combine(_root, "demo-api-key"))).Trim();
        Client = new HttpClient { BaseAddress = Api.BaseAddress, Timeout = TimeSpan.FromSeconds(60) };
        Client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", key);
    }

    public const string AdminPassword = "Cluster-Test-1";

    /// <summary>Starts api-2 (again, on its old port, after a test killed it).</summary>
    public async Task<NodeProcess> StartApi2Async(int? port)
    {
        Api2 = Track(await NodeProcess.StartAsync("api-2", "web,api", Settings("api-2", new()), port));
        return Api2;
    }

    private async Task<NodeProcess> StartInferenceNodeAsync(string id, string modelDir, Dictionary<string, string>? more = null) =>
        Track(await NodeProcess.StartAsync(id, "inference", Settings(id, new(more ?? new Dictionary<string, string>())
        {
            ["Cluster:NodeId"] = id, ["Cluster:InternalUrl"] = $"http://127.0.0.1:{NodeProcess.FreePort()}",
            ["Inference:ModelDirectory"] = modelDir, ["Inference:MaxContext"] = "1024", ["Inference:PoolBytes"] = (64 << 20).ToString(CultureInfo.InvariantCulture),
            ["Inference:HostAdapterCacheBytes"] = (64 << 20).ToString(CultureInfo.InvariantCulture),
            ["Inference:SwapSpaceBytes"] = "0",
        })));

    private NodeProcess Track(NodeProcess node)
    {
        lock (_nodes) _nodes.Add(node);
        return node;
    }

    private Dictionary<string, string> Settings(string node, Dictionary<string, string> extra)
    {
        var s = new Dictionary<string, string>
        {
            ["ConnectionStrings:Loom"] = ConnectionString,
            ["Loom:Blobs:Root"] = Path.Combine(_root, "blobs"),
            ["Api:AdapterCacheDirectory"] = Path.Combine(_root, node, "adapters"),
            ["Cluster:HeartbeatInterval"] = "00:00:00.500",
            ["Cluster:NodeTimeout"] = NodeTimeout.ToString(),
            ["Cluster:RefreshInterval"] = "00:00:00.200",
            ["Api:RateLimits:RequestsPerMinute"] = "100000",
            ["Api:RateLimits:TokensPerMinute"] = "100000000",
            ["Api:RateLimits:Redis"] = _redis!.ConnectionString,
            ["Loom:Proxy:KnownProxies:0"] = "127.0.0.1",
        };
        foreach (var (k, v) in _otlp!.SettingsFor(node)) s[k] = v;
        foreach (var (k, v) in extra) s[k] = v;
        return s;
    }

    public async Task DisposeAsync()
    {
        Client?.Dispose();
        foreach (var n in _nodes) await n.DisposeAsync();
        if (_redis is not null) await _redis.DisposeAsync();
        if (_otlp is not null) await _otlp.DisposeAsync();
        if (_db is not null) await _db.DisposeAsync();
        try { if (Directory.Exists(_root)) Directory.Delete(_root, recursive: true); }
        catch (IOException) { /* a killed process's files; the folder is under the temp directory */ }
    }

    /// <summary>Uploads a copy of the golden rank-4 adapter under <paramref name="name"/>; returns the engine's id for it.</summary>
    public async Task<string> UploadAdapterAsync(string name, string baseModel = ModelName)
    {
        var dir = Path.Combine(RepoRoot(), "tests", "golden", "lora", "llama3_scaled_bf16_r4");
        using var form = new MultipartFormDataContent { { new StringContent(name), "name" }, { new StringContent(baseModel), "base_model" } };
        form.Add(new ByteArrayContent(File.ReadAllBytes(Path.Combine(dir, "adapter_config.json"))), "adapter_config.json", "adapter_config.json");
        form.Add(new ByteArrayContent(File.ReadAllBytes(Path.Combine(dir, "adapter_model.safetensors"))), "adapter_model.safetensors", "adapter_model.safetensors");
        var response = await Client.PostAsync("/v1/adapters", form);
        Assert.True(response.IsSuccessStatusCode, await response.Content.ReadAsStringAsync());
        return await ScalarAsync<Guid>("SELECT \"Id\" FROM adapters WHERE \"Name\" = @p", name) is var id ? id.ToString("N") : "";
    }

    /// <summary>The slow model's node that a base-model request goes to (its key is the model name alone).</summary>
    public (NodeProcess Home, NodeProcess Other) SlowHome() =>
        Routing.Rendezvous.Rank(["slow-a", "slow-b"], n => n, Routing.Rendezvous.Key(SlowChatModel.Name, null))[0] == "slow-a" ? (SlowA, SlowB) : (SlowB, SlowA);

    public static StringContent Chat(string model, int maxTokens, bool stream = false, int n = 1, bool ignoreEos = false) =>
        new(JsonSerializer.Serialize(new
        {
            model, messages = new[] { new { role = "user", content = "Define: harbor" } }, max_tokens = maxTokens, temperature = 0, stream, n, ignore_eos = ignoreEos,
        }), Encoding.UTF8, "application/json");

    /// <summary>The sum of a Prometheus series' samples in a node's /metrics (0 when absent), filtered by a label text.</summary>
    public static async Task<double> MetricAsync(NodeProcess node, string name, string? label = null)
    {
        using var http = new HttpClient { BaseAddress = node.BaseAddress, Timeout = TimeSpan.FromSeconds(10) };
        var text = await http.GetStringAsync("/metrics");
        double sum = 0;
        foreach (var line in text.Split('\n'))
        {
            if (!line.StartsWith(name, StringComparison.Ordinal) || line.Length <= name.Length || line[name.Length] is not ('{' or ' ')) continue;
            if (label is not null && !line.Contains(label, StringComparison.Ordinal)) continue;
            var parts = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            var value = line.Contains('}') ? line[(line.LastIndexOf('}') + 1)..].Trim().Split(' ')[0] : parts[1];
            sum += double.Parse(value, CultureInfo.InvariantCulture);
        }
        return sum;
    }

    /// <summary>The series' sum once it reaches <paramref name="atLeast"/>, or what it shows after 10 s: the
    /// Prometheus endpoint answers a scrape from a cache for a few hundred milliseconds, so a count read right after
    /// the requests it should include can be the one cached before them.</summary>
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

    public async Task<T> ScalarAsync<T>(string sql, object? p = null)
    {
        await using var conn = new NpgsqlConnection(ConnectionString);
        await conn.OpenAsync();
        await using var cmd = new NpgsqlCommand(sql, conn);
        if (p is not null) cmd.Parameters.AddWithValue("p", p);
        return (T)(await cmd.ExecuteScalarAsync())!;
    }

    public static string RepoRoot()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Platform.sln"))) dir = dir.Parent;
        return dir?.FullName ?? throw new InvalidOperationException("Platform.sln not found above " + AppContext.BaseDirectory);
    }
}

[CollectionDefinition(LoopbackCluster.Collection)]
public sealed class LoopbackClusterCollection : ICollectionFixture<LoopbackCluster>;
