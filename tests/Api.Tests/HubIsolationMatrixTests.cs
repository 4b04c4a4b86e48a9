using System.Collections.Concurrent;
using System.Reflection;
using Loom.Jobs.Events;
using Loom.Web.Realtime;
using Microsoft.AspNetCore.Http.Connections;
using Microsoft.AspNetCore.SignalR.Client;
using Microsoft.Extensions.DependencyInjection;

namespace Loom.Api.Tests;

/// <summary>Loom with the web role beside api and inference, so the JobsHub is mapped.</summary>
public sealed class HubLoomFactory : ChatModelFactory
{
    protected override IEnumerable<KeyValuePair<string, string?>> Settings =>
        base.Settings.Where(s => s.Key != "Loom:Roles").Append(new("Loom:Roles", "api,inference,web"));
}

/// <summary>
/// The hub's side of the isolation matrix: tenant B calls every method the JobsHub offers (found by reflection, so a new
/// hub method is covered without editing this test) with tenant A's job id, and must get none of A's events, neither
/// in the answers nor pushed afterwards, while A's own connection receives them (the control that lets the test fail).
/// </summary>
public class HubIsolationMatrixTests(HubLoomFactory factory) : IClassFixture<HubLoomFactory>
{
    private sealed record Client(HubConnection Connection, ConcurrentQueue<JobEventMessage> Pushed) : IAsyncDisposable
    {
        public ValueTask DisposeAsync() => Connection.DisposeAsync();
    }

    private async Task<Client> ConnectAsync(string key)
    {
        var connection = new HubConnectionBuilder()
            .WithUrl(new Uri(factory.Server.BaseAddress, JobsHub.Path.TrimStart('/')), o =>
            {
                o.HttpMessageHandlerFactory = _ => factory.Server.CreateHandler();
                o.Transports = HttpTransportType.LongPolling;
                o.AccessTokenProvider = () => Task.FromResult<string?>(key);
            })
            .Build();
        var pushed = new ConcurrentQueue<JobEventMessage>();
        connection.On<JobEventMessage>(JobsHub.EventMethod, pushed.Enqueue);
        await connection.StartAsync();
        return new Client(connection, pushed);
    }

    /// <summary>The hub's own methods, each with arguments naming <paramref name="jobId"/> from the start of its stream.</summary>
    private static IEnumerable<(string Name, object?[] Args)> HubCalls(string jobId) =>
        typeof(JobsHub).GetMethods(BindingFlags.Public | BindingFlags.Instance | BindingFlags.DeclaredOnly)
            .Where(m => !m.IsSpecialName)
            .Select(m => (m.Name, m.GetParameters().Select(p => p.ParameterType switch
            {
                var t when t == typeof(string) => (object?)jobId,
                var t when t == typeof(long) => 0L,
                var t when t == typeof(int) => 0,
                var t => t.IsValueType ? Activator.CreateInstance(t) : null,
            }).ToArray()));

    [Fact]
    public async Task TenantBCallingEveryHubMethodWithTenantAsJobIdGetsNoneOfItsEvents()
    {
        var tenantA = await factory.CreateTenantAsync($"hubiso-a-{Guid.NewGuid():N}");
        var tenantB = await factory.CreateTenantAsync($"hubiso-b-{Guid.NewGuid():N}");
        var keyA = (await factory.CreateKeyAsync(tenantA.Id, "a key")).Secret;
        var keyB = (await factory.CreateKeyAsync(tenantB.Id, "b key")).Secret;
        var publisher = factory.Services.GetRequiredService<IJobEventPublisher>();
        string job = $"ftjob-{Guid.NewGuid():N}";
        await publisher.PublishAsync(tenantA.Id, job, "created", new { secret = "a-only-1" });
        await publisher.PublishAsync(tenantA.Id, job, "step", new { secret = "a-only-2" });

        await using var a = await ConnectAsync(keyA);
        await using var b = await ConnectAsync(keyB);

        var calls = HubCalls(job).ToList();
        Assert.Contains(calls, c => c.Name == nameof(JobsHub.Subscribe));
        Assert.Contains(calls, c => c.Name == nameof(JobsHub.SubscribeTenant));
        foreach (var (name, args) in calls)
        {
            // As A, the job's backlog is there (so the same call as B proves something).
            var mine = await a.Connection.InvokeCoreAsync<object?>(name, args);
            var theirs = await b.Connection.InvokeCoreAsync<object?>(name, args);
            if (mine is not null || theirs is not null)
            {
                string mineText = System.Text.Json.JsonSerializer.Serialize(mine);
                string theirsText = System.Text.Json.JsonSerializer.Serialize(theirs);
                Assert.Contains("a-only-1", mineText, StringComparison.Ordinal);
                Assert.DoesNotContain("a-only", theirsText, StringComparison.Ordinal);
            }
        }
        // Re-subscribe both (Unsubscribe may have run last) and publish: only A hears it.
        await a.Connection.InvokeAsync<JobEventBatch>(nameof(JobsHub.Subscribe), job, 2L);
        await b.Connection.InvokeAsync<JobEventBatch>(nameof(JobsHub.Subscribe), job, 0L);
        await b.Connection.InvokeAsync(nameof(JobsHub.SubscribeTenant));
        await publisher.PublishAsync(tenantA.Id, job, "step", new { secret = "a-only-3" });
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (!a.Pushed.Any(e => e.Seq == 3) && DateTime.UtcNow < deadline) await Task.Delay(50);
        Assert.Contains(a.Pushed, e => e.Seq == 3 && e.JobId == job);
        await Task.Delay(1000); // B's long poll would have delivered by now what A's did
        Assert.Empty(b.Pushed);

        // B publishing under its own tenant with the same job id never reaches A's stream either.
        await publisher.PublishAsync(tenantB.Id, job, "step", new { secret = "b-only" });
        deadline = DateTime.UtcNow.AddSeconds(30);
        while (!b.Pushed.Any() && DateTime.UtcNow < deadline) await Task.Delay(50);
        Assert.NotEmpty(b.Pushed);
        Assert.All(b.Pushed, e => Assert.Contains("b-only", e.Payload.ToString(), StringComparison.Ordinal));
        Assert.DoesNotContain(a.Pushed, e => e.Payload.ToString().Contains("b-only", StringComparison.Ordinal));
    }
}
