using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Loom.Tests.Shared;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Mvc.Testing;
using Microsoft.Extensions.DependencyInjection;
using Hangfire;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Loom.Api.Tests;

public class StartupTests
{
    private static string WebDll()
    {
        // The host built beside this test assembly (ProjectReference copies it).
        var path = Path.Combine(AppContext.BaseDirectory, "Loom.Web.dll");
        Assert.True(File.Exists(path), $"missing {path}");
        return path;
    }

    private static int FreePort()
    {
        var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        var port = ((IPEndPoint)l.LocalEndpoint).Port;
        l.Stop();
        return port;
    }

    [Fact]
    public async Task UnreachableDatabaseExitsWithCode2AndOneClearLine()
    {
        var port = FreePort(); // nothing listens there
        var psi = new ProcessStartInfo("dotnet", [WebDll(), "--urls", "http://127.0.0.1:0"])
        {
            RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
            WorkingDirectory = AppContext.BaseDirectory,
        };
        psi.Environment["ConnectionStrings__Loom"] = $"Host=127.0.0.1;Port={port};Database=loom;Username=x;Password=y;Timeout=3";
        psi.Environment["Loom__Roles"] = "api";
        psi.Environment["ASPNETCORE_ENVIRONMENT"] = "Production";
        using var process = Process.Start(psi)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        await process.WaitForExitAsync(cts.Token);
        var output = await stdout + await stderr;

        Assert.Equal(2, process.ExitCode);
        Assert.Contains($"127.0.0.1:{port}", output);
        Assert.DoesNotContain("   at ", output); // no stack trace
        Assert.Single(output.Split('\n'), l => l.Contains($"127.0.0.1:{port}"));
    }

    [Fact]
    public async Task ReadyzReportsPendingMigrations()
    {
        await using var database = await TestDatabase.CreateAsync("loom_ready");
        await using var factory = new WebApplicationFactory<Program>().WithWebHostBuilder(b =>
        {
            b.UseSetting("ConnectionStrings:Loom", database.ConnectionString);
            b.ConfigureLogging(l => l.AddProvider(CapturedLogs.Provider));   // as every host here: see HangfireHostTests
            b.UseSetting("Loom:Roles", "api");
            b.UseSetting("Data:MigrateOnStart", "false");
        });
        var client = factory.CreateClient();
        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync("/healthz")).StatusCode);
        var ready = await client.GetAsync("/readyz");
        Assert.Equal(HttpStatusCode.ServiceUnavailable, ready.StatusCode);
        Assert.Contains("pending", await ready.Content.ReadAsStringAsync());
    }

    [Fact]
    public async Task ReadyzRemembersMigrationsOnceSeenApplied()
    {
        await using var database = await TestDatabase.CreateAsync("loom_ready_seen");
        await using var factory = new WebApplicationFactory<Program>().WithWebHostBuilder(b =>
        {
            b.UseSetting("ConnectionStrings:Loom", database.ConnectionString);
            b.ConfigureLogging(l => l.AddProvider(CapturedLogs.Provider));   // as every host here: see HangfireHostTests
            b.UseSetting("Loom:Roles", "api");
        });
        var client = factory.CreateClient();
        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync("/readyz")).StatusCode);

        // Emptying the history table would make EF's check report every migration pending: the probe no longer runs it.
        await using (var conn = new Npgsql.NpgsqlConnection(database.ConnectionString))
        {
            await conn.OpenAsync();
            await using var cmd = new Npgsql.NpgsqlCommand("DELETE FROM __ef_migrations_history", conn);
            Assert.True(await cmd.ExecuteNonQueryAsync() > 0);
        }
        var ready = await client.GetAsync("/readyz");
        Assert.Equal(HttpStatusCode.OK, ready.StatusCode);
        Assert.Contains("\"applied\"", await ready.Content.ReadAsStringAsync());
    }

    [Theory]
    [InlineData("api", false)]
    [InlineData("api,jobs", true)]
    public async Task RolesDecideWhichModulesStart(string roles, bool expectScheduler)
    {
        await using var database = await TestDatabase.CreateAsync("loom_roles");
        await using var factory = new WebApplicationFactory<Program>().WithWebHostBuilder(b =>
        {
            b.UseSetting("ConnectionStrings:Loom", database.ConnectionString);
            b.ConfigureLogging(l => l.AddProvider(CapturedLogs.Provider));   // as every host here: see HangfireHostTests
            b.UseSetting("Loom:Roles", roles);
        });
        _ = factory.Server;
        // Every role may enqueue; only the jobs role runs a Hangfire server.
        Assert.NotNull(factory.Services.GetService<IBackgroundJobClient>());
        Assert.Equal(expectScheduler, factory.Services.GetServices<IHostedService>().Any(s => s.GetType().Name.Contains("BackgroundJobServer")));
        // The portal (web role) is absent in both: its pages are not mapped.
        Assert.Equal(HttpStatusCode.NotFound, (await factory.CreateClient().GetAsync("/")).StatusCode);
    }
}
