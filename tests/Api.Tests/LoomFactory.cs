using Loom.Data;
using Loom.Data.Entities;
using Loom.Data.Keys;
using Loom.Data.Tenancy;
using Loom.Tests.Shared;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Mvc.Testing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Loom.Api.Tests;

/// <summary>
/// Loom in-process (WebApplicationFactory) on a fresh PostgreSQL database built by the app's own
/// migrations at start. One per test class (IClassFixture); the database is dropped afterwards.
/// </summary>
public class LoomFactory : WebApplicationFactory<Program>, IAsyncLifetime
{
    private TestDatabase? _database;

    public TestDatabase Database => _database ?? throw new InvalidOperationException("not initialised");

    /// <summary>Extra configuration a test class needs (e.g. a small body limit).</summary>
    protected virtual IEnumerable<KeyValuePair<string, string?>> Settings => [];

    public async Task InitializeAsync()
    {
        _database = await DatabaseAsync();
        StartServer(); // start the host now: applies migrations
    }

    /// <summary>The database this host runs on: a fresh one, unless a test class shares another host's.</summary>
    protected virtual Task<TestDatabase> DatabaseAsync() => TestDatabase.CreateAsync("loom_api");

    /// <summary>Whether disposing this host drops its database.</summary>
    protected virtual bool OwnsDatabase => true;

    protected override void ConfigureWebHost(IWebHostBuilder builder)
    {
        builder.UseEnvironment("Testing");
        builder.UseSetting("ConnectionStrings:Loom", Database.ConnectionString);
        builder.UseSetting("Loom:Roles", "api");
        foreach (var (k, v) in Settings) builder.UseSetting(k, v);
        builder.ConfigureLogging(l => l.AddProvider(CapturedLogs.Provider));
    }

    public async Task<Tenant> CreateTenantAsync(string name)
    {
        await using var scope = Services.CreateAsyncScope();
        var db = scope.ServiceProvider.GetRequiredService<PlatformDbContext>();
        var tenant = new Tenant { Id = Guid.NewGuid(), Name = name, CreatedAt = DateTimeOffset.UtcNow };
        db.Tenants.Add(tenant);
        await db.SaveChangesAsync();
        return tenant;
    }

    /// <summary>A key of <paramref name="tenantId"/>, with every scope unless told otherwise (as the portal can make).</summary>
    public async Task<CreatedApiKey> CreateKeyAsync(Guid tenantId, string name = "test key", ApiKeyScopes scopes = ApiKeyScopes.All, DateTimeOffset? expiresAt = null)
    {
        await using var scope = Services.CreateAsyncScope();
        scope.ServiceProvider.GetRequiredService<TenantContext>().TenantId = tenantId;
        var created = await scope.ServiceProvider.GetRequiredService<ApiKeyService>().CreateAsync(tenantId, new NewApiKey(name, Scopes: scopes, ExpiresAt: expiresAt));
        CapturedLogs.AddSecret(created.Secret);
        return created;
    }

    /// <summary>Runs work in a scope whose tenant context is <paramref name="tenantId"/> (null: no tenant).</summary>
    public async Task<T> InTenantAsync<T>(Guid? tenantId, Func<PlatformDbContext, Task<T>> work)
    {
        await using var scope = Services.CreateAsyncScope();
        scope.ServiceProvider.GetRequiredService<TenantContext>().TenantId = tenantId;
        return await work(scope.ServiceProvider.GetRequiredService<PlatformDbContext>());
    }

    public HttpClient ClientWithKey(string secret)
    {
        var client = CreateClient();
        client.DefaultRequestHeaders.Authorization = new("Bearer", secret);
        return client;
    }

    async Task IAsyncLifetime.DisposeAsync()
    {
        await base.DisposeAsync();
        if (_database is not null && OwnsDatabase) await _database.DisposeAsync();
    }
}
