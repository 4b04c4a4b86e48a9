using Loom.Data;
using Loom.Data.Entities;
using Loom.Data.Keys;
using Loom.Data.Tenancy;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Mvc.Testing;
using Microsoft.Extensions.DependencyInjection;

namespace Loom.Jobs.Tests;

/// <summary>A Loom process in-process (WebApplicationFactory) on a test database, with the roles asked for.</summary>
public sealed class WebNode(string connectionString, string roles, params (string Key, string Value)[] settings) : WebApplicationFactory<Program>
{
    protected override void ConfigureWebHost(IWebHostBuilder builder)
    {
        builder.UseEnvironment("Testing");
        builder.UseSetting("ConnectionStrings:Loom", connectionString);
        builder.UseSetting("Loom:Roles", roles);
        foreach (var (k, v) in settings) builder.UseSetting(k, v);
    }

    public async Task<Tenant> CreateTenantAsync(string name)
    {
        await using var scope = Services.CreateAsyncScope();
        var tenant = new Tenant { Id = Guid.NewGuid(), Name = $"{name}-{Guid.NewGuid():N}", CreatedAt = DateTimeOffset.UtcNow };
        var db = scope.ServiceProvider.GetRequiredService<PlatformDbContext>();
        db.Tenants.Add(tenant);
        await db.SaveChangesAsync();
        return tenant;
    }

    public async Task<string> CreateKeyAsync(Guid tenantId)
    {
        await using var scope = Services.CreateAsyncScope();
        scope.ServiceProvider.GetRequiredService<TenantContext>().TenantId = tenantId;
        return (await scope.ServiceProvider.GetRequiredService<ApiKeyService>().CreateAsync(tenantId, "test key")).Secret;
    }

    /// <summary>Runs work in a scope acting for <paramref name="tenantId"/>.</summary>
    public async Task<T> InTenantAsync<T>(Guid? tenantId, Func<IServiceProvider, PlatformDbContext, Task<T>> work)
    {
        await using var scope = Services.CreateAsyncScope();
        scope.ServiceProvider.GetRequiredService<TenantContext>().TenantId = tenantId;
        return await work(scope.ServiceProvider, scope.ServiceProvider.GetRequiredService<PlatformDbContext>());
    }
}
