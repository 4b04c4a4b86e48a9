using System.Diagnostics;
using System.Reflection;
using System.Text;
using System.Text.RegularExpressions;
using Loom.Data;
using Loom.Data.Entities;
using Loom.Tests.Shared;
using Microsoft.AspNetCore.Identity;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Playwright;

namespace Loom.Web.E2E;

/// <summary>
/// Runs the real Loom (built Loom.Web.dll, all four roles: web, api, inference and jobs, so fine-tunes train on the
/// served test model; Development so static web assets resolve from bin) as a child process on a fresh database with
/// demo data, and one headless Chromium for the whole collection.
/// </summary>
public sealed partial class LoomServerFixture : IAsyncLifetime
{
    public const string TenantName = "e2e-tenant";
    public const string AdminUser = "admin";
    public const string AdminPassword = "E2e-admin-pw-0";

    private static readonly TimeSpan StartTimeout = TimeSpan.FromSeconds(120);
    private readonly StringBuilder _log = new();
    private TestDatabase? _database;
    private Process? _server;
    private string? _workDir;

    public string BaseUrl { get; private set; } = "";
    public IPlaywright Playwright { get; private set; } = null!;
    public IBrowser Browser { get; private set; } = null!;

    /// <summary>Screenshots and the server log land here (git-ignored).</summary>
    public static string ArtifactsDirectory =>
        Environment.GetEnvironmentVariable("LOOM_E2E_ARTIFACTS") is { Length: > 0 } dir ? dir : Path.Combine(Metadata("LoomE2EProjectDirectory"), "artifacts");

    public async Task InitializeAsync()
    {
        Directory.CreateDirectory(ArtifactsDirectory);
        _database = await TestDatabase.CreateAsync("loom_e2e");
        _workDir = Directory.CreateTempSubdirectory("loom-e2e-").FullName;
        BaseUrl = await StartServerAsync(_database.ConnectionString);

        Playwright = await Microsoft.Playwright.Playwright.CreateAsync();
        Browser = await Playwright.Chromium.LaunchAsync(new()
        {
            ExecutablePath = Environment.GetEnvironmentVariable("LOOM_E2E_CHROMIUM") is { Length: > 0 } chromium ? chromium : "/usr/bin/chromium",
            Headless = true,
            Args = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
        });
        Assertions.SetDefaultExpectTimeout(20_000);
    }

    /// <summary>A fresh browser context (own cookies) whose relative URLs resolve against Loom.</summary>
    public async Task<IBrowserContext> NewContextAsync()
    {
        var context = await Browser.NewContextAsync(new()
        {
            BaseURL = BaseUrl,
            ViewportSize = new() { Width = 1280, Height = 800 },
            Permissions = ["clipboard-read", "clipboard-write"],
        });
        context.SetDefaultTimeout(30_000);
        return context;
    }

    /// <summary>Adds another tenant with one portal user, straight into Loom's database (the portal has no sign-up).</summary>
    public async Task<Guid> CreateTenantUserAsync(string tenantName, string userName, string password)
    {
        var tenant = new Tenant { Id = Guid.NewGuid(), Name = tenantName, CreatedAt = DateTimeOffset.UtcNow };
        await WithDatabaseAsync(async services =>
        {
            var db = services.GetRequiredService<PlatformDbContext>();
            db.Tenants.Add(tenant);
            await db.SaveChangesAsync();
            var users = services.GetRequiredService<UserManager<LoomUser>>();
            var created = await users.CreateAsync(new LoomUser { Id = Guid.NewGuid(), UserName = userName, TenantId = tenant.Id }, password);
            if (!created.Succeeded)
                throw new InvalidOperationException($"Could not create user '{userName}': {string.Join("; ", created.Errors.Select(e => e.Description))}");
        });
        return tenant.Id;
    }

    /// <summary>Records usage rows for a tenant, as completions would have.</summary>
    public Task AddUsageAsync(Guid tenantId, params (string Model, DateTimeOffset At, int Prompt, int Completion)[] rows) =>
        WithDatabaseAsync(async services =>
        {
            services.GetRequiredService<Loom.Data.Tenancy.TenantContext>().TenantId = tenantId;
            var db = services.GetRequiredService<PlatformDbContext>();
            foreach (var (model, at, prompt, completion) in rows)
                db.UsageRecords.Add(new UsageRecord { TenantId = tenantId, Model = model, PromptTokens = prompt, CompletionTokens = completion, CreatedAt = at });
            await db.SaveChangesAsync();
        });

    /// <summary>Creates an API key of the tenant (inference scope unless told) and returns its secret.</summary>
    public async Task<string> CreateApiKeyAsync(Guid tenantId, ApiKeyScopes scopes = ApiKeyScopes.Inference)
    {
        var secret = "";
        await WithDatabaseAsync(async services =>
        {
            services.GetRequiredService<Loom.Data.Tenancy.TenantContext>().TenantId = tenantId;
            var created = await services.GetRequiredService<Loom.Data.Keys.ApiKeyService>().CreateAsync(tenantId, new Loom.Data.Keys.NewApiKey("e2e", Scopes: scopes));
            secret = created.Secret;
        });
        return secret;
    }

    /// <summary>Appends an event to a job's stream through Loom's own publisher (insert + NOTIFY), as the jobs tier does.</summary>
    public async Task<long> PublishJobEventAsync(Guid tenantId, string jobId, string kind, object payload)
    {
        long seq = 0;
        await WithDatabaseAsync(async services =>
        {
            var publisher = new Loom.Jobs.Events.JobEventPublisher(services.GetRequiredService<IServiceScopeFactory>(), TimeProvider.System);
            seq = (await publisher.PublishAsync(tenantId, jobId, kind, payload)).Seq;
        });
        return seq;
    }

    /// <summary>Records a fine-tuning job of the tenant on the served model, as if it were running, without queueing a run:
    /// its events are then only those a test publishes. Returns its public id (ftjob-...).</summary>
    public async Task<string> AddRunningFineTuneAsync(Guid tenantId, int totalSteps)
    {
        var id = Guid.NewGuid();
        await WithDatabaseAsync(async services =>
        {
            services.GetRequiredService<Loom.Data.Tenancy.TenantContext>().TenantId = tenantId;
            var db = services.GetRequiredService<PlatformDbContext>();
            var model = await Microsoft.EntityFrameworkCore.EntityFrameworkQueryableExtensions.SingleAsync(db.BaseModels.Where(m => m.Name == ModelName));
            db.FineTuneJobs.Add(new FineTuneJob
            {
                Id = id, TenantId = tenantId, Model = ModelName, BaseModelId = model.Id, TrainingFileId = Guid.NewGuid(), Seed = 1, Epochs = 1,
                BatchSize = 1, LearningRateMultiplier = 1, Rank = 4, Alpha = 8, TargetModules = "q_proj,v_proj", Status = FineTuneStatus.Running,
                TotalSteps = totalSteps, CreatedAt = DateTimeOffset.UtcNow, StartedAt = DateTimeOffset.UtcNow,
            });
            await db.SaveChangesAsync();
        });
        return $"ftjob-{id:N}";
    }

    /// <summary>The id of the demo tenant (the one <see cref="AdminUser"/> belongs to).</summary>
    public async Task<Guid> DemoTenantIdAsync()
    {
        var id = Guid.Empty;
        await WithDatabaseAsync(async services =>
            id = await Microsoft.EntityFrameworkCore.EntityFrameworkQueryableExtensions.SingleAsync(
                services.GetRequiredService<PlatformDbContext>().Tenants.Where(t => t.Name == TenantName).Select(t => t.Id)));
        return id;
    }

    /// <summary>Runs <paramref name="work"/> with Loom's data services on Loom's database, in one scope.</summary>
    public async Task WithDatabaseAsync(Func<IServiceProvider, Task> work)
    {
        var configuration = new ConfigurationBuilder()
            .AddInMemoryCollection(new Dictionary<string, string?> { [$"ConnectionStrings:{DataModule.ConnectionStringName}"] = _database!.ConnectionString })
            .Build();
        await using var provider = new ServiceCollection().AddLogging().AddData(configuration).BuildServiceProvider();
        await using var scope = provider.CreateAsyncScope();
        await work(scope.ServiceProvider);
    }

    private async Task<string> StartServerAsync(string connectionString)
    {
        var dll = Environment.GetEnvironmentVariable("LOOM_E2E_WEB_DLL") is { Length: > 0 } overridden ? overridden : Metadata("LoomWebAssembly");
        if (!File.Exists(dll)) throw new FileNotFoundException("Loom.Web.dll is not built; build tests/Web.E2E (it builds src/Web).", dll);

        var start = new ProcessStartInfo(Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { Length: > 0 } host ? host : "dotnet")
        {
            WorkingDirectory = Path.GetDirectoryName(dll)!,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        start.ArgumentList.Add(dll);
        var env = start.Environment;
        env["ASPNETCORE_ENVIRONMENT"] = "Development";
        env["ASPNETCORE_URLS"] = "http://127.0.0.1:0";
        env["ConnectionStrings__Loom"] = connectionString;
        env["Loom__Roles"] = "web,api,inference,jobs";
        // Fine-tunes of a few steps on the tiny model: a metrics event every step, a checkpoint every two.
        env["FineTuning__MetricsEverySteps"] = "1";
        env["FineTuning__CheckpointEverySteps"] = "2";
        env["FineTuning__CheckpointDirectory"] = Path.Combine(_workDir!, "checkpoints");
        env["FineTuning__ControlPollInterval"] = "00:00:00.100";
        env["Jobs__Schema"] = "hangfire";
        env["Jobs__WorkerCount"] = "2";
        // Tests write usage rows for days long past straight into the table; the roll-up would close those days
        // without them (it recomputes only its look-back window), so it runs once a year here instead of every 10 minutes.
        env["Jobs__UsageRollupCron"] = "0 0 1 1 *";
        env["Inference__ModelDirectory"] = CreateModelDirectory();
        env["Inference__PoolBytes"] = (16 << 20).ToString();
        env["Loom__Seed__Demo"] = "true";
        env["Loom__Seed__TenantName"] = TenantName;
        env["Loom__Seed__AdminUser"] = AdminUser;
        env["Loom__Seed__AdminPassword"] = AdminPassword;
        env["Loom__Seed__ApiKeyFile"] = Path.Combine(_workDir!, "demo-api-key");
        env["Logging__LogLevel__Default"] = "Information";
        env["Logging__LogLevel__Microsoft.EntityFrameworkCore"] = "Warning";
        env["Logging__LogLevel__Microsoft.Hosting.Lifetime"] = "Information";

        var listening = new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously);
        void OnLine(string? line)
        {
            if (line is null) return;
            lock (_log) _log.AppendLine(line);
            if (ListeningLine().Match(line) is { Success: true } m) listening.TrySetResult(m.Groups[1].Value);
        }

        _server = new Process { StartInfo = start, EnableRaisingEvents = true };
        _server.OutputDataReceived += (_, e) => OnLine(e.Data);
        _server.ErrorDataReceived += (_, e) => OnLine(e.Data);
        _server.Exited += (_, _) => listening.TrySetException(new InvalidOperationException($"Loom exited with code {_server.ExitCode} before listening.\n{ServerLog}"));
        _server.Start();
        _server.BeginOutputReadLine();
        _server.BeginErrorReadLine();

        try
        {
            return (await listening.Task.WaitAsync(StartTimeout)).TrimEnd('/');
        }
        catch (TimeoutException)
        {
            throw new TimeoutException($"Loom did not report listening within {StartTimeout}.\n{ServerLog}");
        }
    }

    public string ServerLog { get { lock (_log) return _log.ToString(); } }

    /// <summary>The name the served model goes by in the API (its folder's name).</summary>
    public const string ModelName = "e2e-chat";

    /// <summary>The demo tenant's API key, as the seeder wrote it.</summary>
    public string DemoApiKey => File.ReadAllText(Path.Combine(_workDir!, "demo-api-key")).Trim();

    /// <summary>The repository's root folder.</summary>
    public static string RepoRoot => Path.GetFullPath(Path.Combine(Metadata("LoomE2EProjectDirectory"), "..", ".."));

    /// <summary>A PEFT LoRA adapter (rank 4) for the served model, from the golden tests.</summary>
    public static string GoldenAdapterDirectory => Path.Combine(RepoRoot, "tests", "golden", "lora", "llama3_scaled_bf16_r4");

    /// <summary>The tiny generated Llama of the golden tests, with a Llama-3 chat template.</summary>
    private string CreateModelDirectory() =>
        GoldenChatModel.CreateIn(Path.Combine(_workDir!, ModelName), GoldenChatModel.GoldenDirectory(Path.Combine(Metadata("LoomE2EProjectDirectory"), "..", "..")));

    public async Task DisposeAsync()
    {
        if (Browser is not null) await Browser.CloseAsync();
        Playwright?.Dispose();
        if (_server is { HasExited: false })
        {
            _server.Kill(entireProcessTree: true);
            await _server.WaitForExitAsync();
        }
        _server?.Dispose();
        await File.WriteAllTextAsync(Path.Combine(ArtifactsDirectory, "loom-server.log"), ServerLog);
        if (_database is not null) await _database.DisposeAsync();
        if (_workDir is not null) Directory.Delete(_workDir, recursive: true);
    }

    private static string Metadata(string key) =>
        typeof(LoomServerFixture).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>().SingleOrDefault(a => a.Key == key)?.Value
        ?? throw new InvalidOperationException($"Assembly metadata '{key}' is missing (set by Web.E2E.csproj).");

    [GeneratedRegex(@"Now listening on: (http://\S+)")]
    private static partial Regex ListeningLine();
}

[CollectionDefinition(Name)]
public sealed class LoomCollection : ICollectionFixture<LoomServerFixture>
{
    public const string Name = "Loom server";
}
