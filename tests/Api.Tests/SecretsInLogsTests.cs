using System.Text.RegularExpressions;
using Loom.Data.Entities;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;

namespace Loom.Api.Tests;

/// <summary>Loom started with demo seeding: the seeder makes an admin password and a full-scope key.</summary>
public sealed class DemoSeedFactory : LoomFactory
{
    public string DataDir { get; } = Path.Combine(Path.GetTempPath(), $"loom-seed-{Guid.NewGuid():N}");
    public string KeyFile => Path.Combine(DataDir, "demo-api-key");

    protected override IEnumerable<KeyValuePair<string, string?>> Settings =>
    [
        new("Loom:Seed:Demo", "true"),
        new("Loom:Seed:ApiKeyFile", KeyFile),
        new("Loom:Seed:TenantName", $"demo-{Guid.NewGuid():N}"),
        new("Loom:Seed:AdminUser", $"admin-{Guid.NewGuid():N}"[..20]),
    ];
}

public class DemoSeedTests(DemoSeedFactory factory) : IClassFixture<DemoSeedFactory>
{
    [Fact]
    public async Task DemoKeyHoldsEveryScopeAndItsSecretIsOnlyInTheFile()
    {
        var secret = File.ReadAllText(factory.KeyFile).Trim();
        CapturedLogs.AddSecret(secret);
        var password = File.ReadAllText(Path.Combine(factory.DataDir, "demo-admin")).Split('\n').Single(l => l.StartsWith("password: ", StringComparison.Ordinal))["password: ".Length..];
        CapturedLogs.AddSecret(password);

        var client = factory.ClientWithKey(secret);
        Assert.Equal(System.Net.HttpStatusCode.OK, (await client.GetAsync("/v1/api_keys")).StatusCode);
        var key = await factory.InTenantAsync(null, db => db.ApiKeys.IgnoreQueryFilters().SingleAsync(k => k.Name == "demo key" && k.Prefix == secret.Substring(0, 12)));
        Assert.Equal(ApiKeyScopes.All, key.Scopes);
        Assert.DoesNotContain(CapturedLogs.All, l => l.Contains(secret, StringComparison.Ordinal) || l.Contains(password, StringComparison.Ordinal));
    }
}

/// <summary>
/// Scans the logs of every Loom host this test run started (the collection runs alone, after the parallel
/// ones) for API key secrets and passwords: the ones the tests made, and anything shaped like a secret.
/// </summary>
[Collection(MemoryMeasuredCollection.Name)]
public class SecretsInLogsTests
{
    private static readonly Regex SecretShape = new("sk-loom-[0-9A-Za-z]{43}", RegexOptions.Compiled);
    private static readonly Regex PasswordField = new(@"(?i)password\s*[=:]\s*\S{6,}", RegexOptions.Compiled);

    [Fact]
    public void NoSecretOrPasswordReachesTheLogs()
    {
        var lines = CapturedLogs.All;
        // The scan means something only if hosts ran and logged (every factory adds the sink).
        Assert.Contains(lines, l => l.Contains("Loom started with roles", StringComparison.Ordinal));
        Assert.True(CapturedLogs.KnownSecrets.Count > 0, "no secrets were recorded by the tests");
        var leaks = lines.Where(l => SecretShape.IsMatch(l) || PasswordField.IsMatch(l)
                                     || CapturedLogs.KnownSecrets.Any(s => l.Contains(s, StringComparison.Ordinal))).Take(5).ToList();
        Assert.True(leaks.Count == 0, "secrets in logs:\n" + string.Join("\n", leaks));
    }
}
