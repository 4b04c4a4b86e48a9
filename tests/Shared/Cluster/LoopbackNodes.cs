using System.Globalization;
using System.Net.Http.Headers;
using Npgsql;

namespace Loom.Tests.Shared;

/// <summary>
/// Loom split by role on loopback, as real processes, for tests and benchmarks alike: one database
/// (<see cref="TestDatabase"/>), optionally one Redis (<see cref="RedisServer"/>) for the API nodes' rate limits, one
/// folder for models, blobs and each node's files, and nodes started with <see cref="NodeProcess"/> on the settings
/// every node of one cluster shares (short heartbeats, so a dead node leaves the routing table in seconds; Prometheus
/// scrapes answered fresh). Needs no test framework: a failure throws.
/// </summary>
public sealed class LoopbackNodes : IAsyncDisposable
{
    public const string AdminPassword = "Cluster-Test-1";
    public static readonly TimeSpan NodeTimeout = TimeSpan.FromSeconds(3);

    private readonly List<NodeProcess> _nodes = [];
    private string? _apiKey;

    public string Root { get; } = Path.Combine(Path.GetTempPath(), $"loom-cluster-{Guid.NewGuid():N}");
    public TestDatabase Database { get; }
    public RedisServer? Redis { get; }
    public string ConnectionString => Database.ConnectionString;
    /// <summary>The demo tenant's API key, written by the first API node started with <c>seed: true</c>.</summary>
    public string ApiKey => _apiKey ?? throw new InvalidOperationException("no API node was started with seed: true");

    private LoopbackNodes(TestDatabase database, RedisServer? redis) => (Database, Redis) = (database, redis);

    public static async Task<LoopbackNodes> CreateAsync(string databasePrefix, bool redis)
    {
        var database = await TestDatabase.CreateAsync(databasePrefix);
        try
        {
            return new LoopbackNodes(database, redis ? await RedisServer.StartAsync() : null);
        }
        catch
        {
            await database.DisposeAsync();
            throw;
        }
    }

    /// <summary>Settings every node of this cluster shares, then <paramref name="extra"/>.</summary>
    public Dictionary<string, string> Settings(string node, IReadOnlyDictionary<string, string>? extra = null)
    {
        var s = new Dictionary<string, string>
        {
            ["ConnectionStrings:Loom"] = ConnectionString,
            ["Loom:Blobs:Root"] = Path.Combine(Root, "blobs"),
            ["Api:AdapterCacheDirectory"] = Path.Combine(Root, node, "adapters"),
            ["Cluster:HeartbeatInterval"] = "00:00:00.500",
            ["Cluster:NodeTimeout"] = NodeTimeout.ToString(),
            ["Cluster:RefreshInterval"] = "00:00:00.200",
            ["Api:RateLimits:RequestsPerMinute"] = "100000",
            ["Api:RateLimits:TokensPerMinute"] = "100000000",
            ["Loom:Proxy:KnownProxies:0"] = "127.0.0.1",
            ["Loom:Telemetry:ScrapeCacheMilliseconds"] = "0",
        };
        if (Redis is not null) s["Api:RateLimits:Redis"] = Redis.ConnectionString;
        foreach (var (k, v) in extra ?? new Dictionary<string, string>()) s[k] = v;
        return s;
    }

    /// <summary>Engine settings of the tests' inference nodes: small pools, no swap space.</summary>
    public static Dictionary<string, string> EngineSettings(long poolBytes = 64 << 20) => new()
    {
        ["Inference:MaxContext"] = "1024", ["Inference:PoolBytes"] = poolBytes.ToString(CultureInfo.InvariantCulture),
        ["Inference:HostAdapterCacheBytes"] = (64 << 20).ToString(CultureInfo.InvariantCulture),
        ["Inference:SwapSpaceBytes"] = "0",
    };

    /// <summary>An API node (or any roles without an inference node's registration). <paramref name="seed"/>: it
    /// migrates the database first and writes the demo tenant, its key (<see cref="ApiKey"/>) and the admin user.</summary>
    public async Task<NodeProcess> StartApiAsync(string id, string roles = "web,api", IReadOnlyDictionary<string, string>? extra = null, bool seed = false, int? port = null)
    {
        var settings = new Dictionary<string, string>(extra ?? new Dictionary<string, string>());
        var keyFile = Path.Combine(Root, "demo-api-key");
        if (seed)
        {
            settings["Loom:Seed:Demo"] = "true";
            settings["Loom:Seed:ApiKeyFile"] = keyFile;
            settings["Loom:Seed:AdminPassword"] = AdminPassword;
        }
        var node = Track(await NodeProcess.StartAsync(id, roles, Settings(id, settings), port));
        if (seed) _apiKey = (await File.ReadAllTextAsync(keyFile)).Trim();
        return node;
    }

    /// <summary>An inference node registered in the routing table, serving <paramref name="models"/> (the first is its
    /// Inference:ModelDirectory, so its name is its folder's; the others are named as given), each with the same pool.</summary>
    public async Task<NodeProcess> StartInferenceAsync(string id, IReadOnlyList<(string Name, string Directory)> models,
        IReadOnlyDictionary<string, string>? extra = null, long poolBytes = 64 << 20)
    {
        if (models.Count == 0) throw new ArgumentException("an inference node serves at least one model", nameof(models));
        if (Path.GetFileName(models[0].Directory) != models[0].Name)
            throw new ArgumentException($"the first model's folder must be named '{models[0].Name}' (its name is its folder's)", nameof(models));
        var settings = EngineSettings(poolBytes);
        settings["Cluster:NodeId"] = id;
        settings["Cluster:InternalUrl"] = $"http://127.0.0.1:{NodeProcess.FreePort()}";
        settings["Inference:ModelDirectory"] = models[0].Directory;
        for (var i = 1; i < models.Count; i++)
        {
            settings[$"Inference:Models:{i - 1}:Name"] = models[i].Name;
            settings[$"Inference:Models:{i - 1}:Directory"] = models[i].Directory;
            settings[$"Inference:Models:{i - 1}:PoolBytes"] = poolBytes.ToString(CultureInfo.InvariantCulture);
        }
        foreach (var (k, v) in extra ?? new Dictionary<string, string>()) settings[k] = v;
        return Track(await NodeProcess.StartAsync(id, "inference", Settings(id, settings)));
    }

    /// <summary>The YARP front (Loom.Front.dll) over <paramref name="apiNodes"/>.</summary>
    public async Task<NodeProcess> StartFrontAsync(params NodeProcess[] apiNodes)
    {
        var settings = new Dictionary<string, string>();
        for (var i = 0; i < apiNodes.Length; i++) settings[$"Front:Nodes:{i}"] = apiNodes[i].BaseAddress.ToString();
        return Track(await NodeProcess.StartAsync("front", "", settings, assembly: "Loom.Front.dll", readyPath: "/front/healthz"));
    }

    /// <summary>Writes <see cref="SlowChatModel"/> into models/<paramref name="name"/> (a folder named as the model is to
    /// be called); a second name links to the first folder's files.</summary>
    public string SlowModel(string name)
    {
        var dir = Path.Combine(Root, "models", name);
        if (Directory.Exists(dir)) return dir;
        if (_slowModel is null) return _slowModel = SlowChatModel.CreateIn(dir, GoldenChatModel.GoldenDirectory(RepoRoot()));
        Directory.CreateDirectory(dir);
        foreach (var f in Directory.GetFiles(_slowModel)) File.CreateSymbolicLink(Path.Combine(dir, Path.GetFileName(f)), f);
        return dir;
    }

    private string? _slowModel;

    /// <summary>Writes the golden tiny chat model (<see cref="GoldenChatModel"/>) into models/<paramref name="name"/>.</summary>
    public string TinyModel(string name) => GoldenChatModel.CreateIn(Path.Combine(Root, "models", name), GoldenChatModel.GoldenDirectory(RepoRoot()));

    /// <summary>A client of <paramref name="node"/> with the demo tenant's key; no cookies (API clients are spread by the front).</summary>
    public HttpClient Client(NodeProcess node, TimeSpan? timeout = null)
    {
        var http = new HttpClient(new SocketsHttpHandler { UseCookies = false, PooledConnectionLifetime = TimeSpan.FromMinutes(10) })
        {
            BaseAddress = node.BaseAddress, Timeout = timeout ?? TimeSpan.FromSeconds(60),
        };
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", ApiKey);
        return http;
    }

    /// <summary>Uploads the PEFT folder <paramref name="folder"/> as adapter <paramref name="name"/> of
    /// <paramref name="baseModel"/>; the id the engines know it by (its row id).</summary>
    public async Task<string> UploadAdapterAsync(HttpClient client, string name, string baseModel, string folder)
    {
        using var form = new MultipartFormDataContent { { new StringContent(name), "name" }, { new StringContent(baseModel), "base_model" } };
        foreach (var file in new[] { "adapter_config.json", "adapter_model.safetensors" })
            form.Add(new ByteArrayContent(await File.ReadAllBytesAsync(Path.Combine(folder, file))), file, file);
        using var response = await client.PostAsync("/v1/adapters", form);
        if (!response.IsSuccessStatusCode)
            throw new InvalidOperationException($"uploading adapter {name}: {(int)response.StatusCode} {await response.Content.ReadAsStringAsync()}");
        return (await ScalarAsync<Guid>("SELECT \"Id\" FROM adapters WHERE \"Name\" = @p", name)).ToString("N");
    }

    public async Task<T> ScalarAsync<T>(string sql, object? p = null)
    {
        await using var conn = new NpgsqlConnection(ConnectionString);
        await conn.OpenAsync();
        await using var cmd = new NpgsqlCommand(sql, conn);
        if (p is not null) cmd.Parameters.AddWithValue("p", p);
        return (T)(await cmd.ExecuteScalarAsync())!;
    }

    private NodeProcess Track(NodeProcess node)
    {
        lock (_nodes) _nodes.Add(node);
        return node;
    }

    /// <summary>The sum of a Prometheus series' samples in a node's /metrics (0 when absent), filtered by a label text.</summary>
    public static async Task<double> MetricAsync(NodeProcess node, string name, string? label = null)
    {
        using var http = new HttpClient { BaseAddress = node.BaseAddress, Timeout = TimeSpan.FromSeconds(10) };
        return Sum(await http.GetStringAsync("/metrics"), name, label);
    }

    /// <summary>The sum of a series' samples in a Prometheus text exposition, filtered by a label text.</summary>
    public static double Sum(string exposition, string name, string? label = null)
    {
        double sum = 0;
        foreach (var line in exposition.Split('\n'))
        {
            if (!line.StartsWith(name, StringComparison.Ordinal) || line.Length <= name.Length || line[name.Length] is not ('{' or ' ')) continue;
            if (label is not null && !line.Contains(label, StringComparison.Ordinal)) continue;
            var parts = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            var value = line.Contains('}') ? line[(line.LastIndexOf('}') + 1)..].Trim().Split(' ')[0] : parts[1];
            sum += double.Parse(value, CultureInfo.InvariantCulture);
        }
        return sum;
    }

    /// <summary>A process's resident memory now and its peak so far (VmRSS, VmHWM of /proc/PID/status), in bytes.</summary>
    public static (long Rss, long Peak) Memory(NodeProcess node)
    {
        long Field(string[] lines, string name) =>
            lines.FirstOrDefault(l => l.StartsWith(name, StringComparison.Ordinal)) is { } l
                ? long.Parse(l[name.Length..].Trim().Split(' ')[0], CultureInfo.InvariantCulture) * 1024 : 0;
        var status = File.ReadAllLines($"/proc/{node.Pid}/status");
        return (Field(status, "VmRSS:"), Field(status, "VmHWM:"));
    }

    /// <summary>The checkout: above the running assembly (built in the checkout), else above the current directory
    /// (a build under another artifacts folder, run from the checkout).</summary>
    public static string RepoRoot()
    {
        foreach (var start in new[] { AppContext.BaseDirectory, Environment.CurrentDirectory })
        {
            var dir = new DirectoryInfo(start);
            while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Platform.sln"))) dir = dir.Parent;
            if (dir is not null) return dir.FullName;
        }
        throw new InvalidOperationException($"Platform.sln not found above {AppContext.BaseDirectory} or {Environment.CurrentDirectory}");
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var n in _nodes) await n.DisposeAsync();
        if (Redis is not null) await Redis.DisposeAsync();
        await Database.DisposeAsync();
        try { if (Directory.Exists(Root)) Directory.Delete(Root, recursive: true); }
        catch (IOException) { /* a killed process's files; the folder is under the temp directory */ }
    }
}
