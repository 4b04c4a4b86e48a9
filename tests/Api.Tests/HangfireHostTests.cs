using Hangfire;
using Hangfire.Logging;
using Loom.Data;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;

namespace Loom.Api.Tests;

/// <summary>
/// Hangfire keeps its configuration in statics (the job activator, the log provider) that every host in a process
/// overwrites. Several Loom hosts share a process in the tests (and could in an embedding application): each must build
/// its jobs from its own services, and Hangfire's logging must keep working when another host is disposed.
/// </summary>
public class HangfireHostTests
{
    [Fact]
    public async Task JobsAreBuiltFromTheirOwnHostsServicesWhateverHostConfiguredHangfireLast()
    {
        await using var first = new LoomFactory();
        await ((IAsyncLifetime)first).InitializeAsync();
        first.Services.GetRequiredService<IGlobalConfiguration>();
        var second = new LoomFactory();
        try
        {
            await ((IAsyncLifetime)second).InitializeAsync();
            second.Services.GetRequiredService<IGlobalConfiguration>(); // the second host configures Hangfire last

            foreach (var host in new[] { first, second })
            {
                using var scope = host.Services.GetRequiredService<JobActivator>().BeginScope((JobActivatorContext)null!);
                var db = (PlatformDbContext)scope.Resolve(typeof(PlatformDbContext));
                Assert.Equal(host.Database.Name, new NpgsqlConnectionStringBuilder(db.Database.GetConnectionString()).Database);
            }
        }
        finally
        {
            await ((IAsyncLifetime)second).DisposeAsync();
        }

        // The host that configured Hangfire last is gone; Hangfire's loggers (made on demand) still work for the first.
        // (Test classes run in parallel: the line goes to the most recent live host, which may be another class's; every
        // host in this process logs into CapturedLogs, StartupTests' own factories included.)
        var marker = $"hangfire still logs {Guid.NewGuid():N}";
        Assert.True(LogProvider.GetLogger("Loom.Tests.Hangfire").Log(LogLevel.Warn, () => marker, null));
        Assert.Contains(CapturedLogs.All, line => line.Contains(marker));
    }
}
