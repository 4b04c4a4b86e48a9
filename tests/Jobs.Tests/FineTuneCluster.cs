using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Hangfire;
using Loom.Data;
using Loom.Data.Entities;
using Loom.Data.Keys;
using Loom.Tests.Shared;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;

namespace Loom.Jobs.Tests;

/// <summary>
/// What the fine-tuning tests across nodes share: a fresh database, one blob store (as a cluster shares it), the tiny
/// chat model of the golden tests under the name "tiny-chat", the settings each node gets (short checkpoint interval,
/// lease and invisibility, so recovery stays quick), and the API calls the tests make.
/// </summary>
public sealed class FineTuneCluster : IAsyncLifetime
{
    public const string ModelName = "tiny-chat";
    public const int CheckpointEvery = 4;
    public static readonly TimeSpan LeaseDuration = TimeSpan.FromSeconds(4);

    private readonly string _root = Path.Combine(Path.GetTempPath(), $"loom-ftc-{Guid.NewGuid():N}");
    public JobsDatabase Db { get; } = new();
    public string BlobRoot => Path.Combine(_root, "blobs");
    public string ModelDir => Path.Combine(_root, "models", ModelName);

    public async Task InitializeAsync()
    {
        await Db.InitializeAsync();
        GoldenChatModel.CreateIn(ModelDir, GoldenChatModel.GoldenDirectory(RepoRoot()));
    }

    public async Task DisposeAsync()
    {
        await Db.DisposeAsync();
        try { if (Directory.Exists(_root)) Directory.Delete(_root, recursive: true); }
        catch (IOException) { /* a killed process's files; the folder is under the temp directory */ }
    }

    /// <summary>Settings of a node named <paramref name="node"/> (its own checkpoint folder, as on its own machine);
    /// with <paramref name="servesModel"/>, its engine serves tiny-chat.</summary>
    public IReadOnlyDictionary<string, string> Settings(string node, bool servesModel, int fineTuneWorkers = 1)
    {
        var s = new Dictionary<string, string>(Db.Settings)
        {
            ["Loom:Blobs:Root"] = BlobRoot,
            ["Api:AdapterCacheDirectory"] = Path.Combine(_root, node, "adapters"),
            ["FineTuning:CheckpointDirectory"] = Path.Combine(_root, node, "checkpoints"),
            ["FineTuning:CheckpointEverySteps"] = CheckpointEvery.ToString(),
            ["FineTuning:MetricsEverySteps"] = "1",
            ["FineTuning:KeepLastCheckpoints"] = "2",
            ["FineTuning:LeaseDuration"] = LeaseDuration.ToString(),
            ["FineTuning:ControlPollInterval"] = "00:00:00.100",
            ["Jobs:FineTuneWorkerCount"] = fineTuneWorkers.ToString(),
        };
        if (servesModel) s["Inference:ModelDirectory"] = ModelDir;
        return s;
    }

    public WebNode Node(string name, string roles, bool servesModel = false) =>
        new(Db.ConnectionString, roles, Settings(name, servesModel).Select(kv => (kv.Key, kv.Value)).ToArray());

    /// <summary>The base model's row, as an inference node registers it when it starts.</summary>
    public async Task RegisterModelAsync(WebNode node) =>
        await node.InTenantAsync(null, async (_, db) =>
        {
            if (!await db.BaseModels.AnyAsync(m => m.Name == ModelName))
                db.BaseModels.Add(new BaseModel { Id = Guid.NewGuid(), Name = ModelName, Path = ModelDir, ContextLength = 256, CreatedAt = DateTimeOffset.UtcNow });
            return await db.SaveChangesAsync();
        });

    public static async Task<HttpClient> TenantClientAsync(WebNode node, HttpClient? over = null)
    {
        var tenant = await node.CreateTenantAsync("ft");
        var client = over ?? node.CreateClient();
        var key = await node.InTenantAsync(tenant.Id, (sp, _) =>
            sp.GetRequiredService<ApiKeyService>().CreateAsync(tenant.Id, new NewApiKey("fine-tuning test", Scopes: ApiKeyScopes.All)));
        client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", key.Secret);
        return client;
    }

    /// <summary>Prompt/completion lines teaching a fixed answer per word.</summary>
    public static string Examples(int count) => FineTuneFiles.Examples(count);

    public static Task<string> UploadAsync(HttpClient client, string content) => Loom.Tests.Shared.FineTuneFiles.UploadAsync(client, content);

    /// <summary>Creates a job on tiny-chat (or <paramref name="model"/>; rank 2, a high learning rate so the adapter
    /// moves) and returns its id.</summary>
    public static async Task<string> CreateJobAsync(HttpClient client, string file, int seed, int epochs, string model = ModelName)
    {
        var response = await client.PostAsJsonAsync("/v1/fine_tuning/jobs", new
        {
            model, training_file = file, seed, hyperparameters = new { n_epochs = epochs, learning_rate_multiplier = 20, rank = 2 },
        });
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.IsSuccessStatusCode, text);
        return JsonDocument.Parse(text).RootElement.GetProperty("id").GetString()!;
    }

    public static async Task<JsonElement> GetAsync(HttpClient client, string path) =>
        JsonDocument.Parse(await client.GetStringAsync(path)).RootElement.Clone();

    public static Guid JobGuid(string id) => Guid.ParseExact(id["ftjob-".Length..], "N");

    public Task<FineTuneJob> RowAsync(string id) => WithDbAsync(db => db.FineTuneJobs.IgnoreQueryFilters().AsNoTracking().SingleAsync(j => j.Id == JobGuid(id)));

    public Task<List<FineTuneCheckpoint>> CheckpointsAsync(string id) =>
        WithDbAsync(db => db.FineTuneCheckpoints.IgnoreQueryFilters().AsNoTracking().Where(c => c.JobId == JobGuid(id)).OrderBy(c => c.Step).ToListAsync());

    /// <summary>The SHA-256 of the fine-tuned adapter's blob (equal hashes: bitwise equal adapters).</summary>
    public async Task<string> AdapterHashAsync(string id)
    {
        var row = await RowAsync(id);
        Assert.NotNull(row.ResultAdapterId);
        return await WithDbAsync(db => db.Adapters.IgnoreQueryFilters().Where(a => a.Id == row.ResultAdapterId).Select(a => a.BlobSha256).SingleAsync());
    }

    /// <summary>Kinds of the job's events, oldest first, with their data.</summary>
    public Task<List<(string Kind, string Payload)>> EventsAsync(string id) =>
        WithDbAsync(async db => (await db.JobEvents.IgnoreQueryFilters().AsNoTracking().Where(e => e.JobId == id).OrderBy(e => e.Seq)
            .Select(e => new { e.Kind, e.Payload }).ToListAsync()).Select(e => (e.Kind, e.Payload)).ToList());

    public async Task<T> WithDbAsync<T>(Func<PlatformDbContext, Task<T>> work)
    {
        await using var scope = Db.Services.CreateAsyncScope();
        return await work(scope.ServiceProvider.GetRequiredService<PlatformDbContext>());
    }

    /// <summary>Waits for the job to reach a final status; returns the row.</summary>
    public async Task<FineTuneJob> FinishedAsync(string id, TimeSpan limit, Func<string>? diagnostics = null)
    {
        Assert.True(await JobsDatabase.UntilAsync(async () => FineTuneStatusIsFinal((await RowAsync(id)).Status), limit),
            $"job {id} is {(await RowAsync(id)).Status} after {limit}: {diagnostics?.Invoke()}");
        return await RowAsync(id);
    }

    private static bool FineTuneStatusIsFinal(string s) => FineTuneStatus.IsFinal(s);

    public JobStorage Storage => Db.Services.GetRequiredService<JobStorage>();

    public static string RepoRoot()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Platform.sln"))) dir = dir.Parent;
        return dir?.FullName ?? throw new InvalidOperationException("Platform.sln not found above the test directory");
    }
}
