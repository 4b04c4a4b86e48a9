using System.Net;
using System.Text;
using Xunit.Abstractions;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.DependencyInjection;

namespace Loom.Api.Tests;

/// <summary>On Kestrel, so the measure holds what a real client's request costs (no in-memory test transport copies).</summary>
public sealed class SmallUploadsKestrelFactory : SmallUploadsFactory
{
    public SmallUploadsKestrelFactory() => UseKestrel(0);

    public string BaseUrl => Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
}

[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class MemoryMeasuredCollection
{
    public const string Name = "memory measured (runs alone)";
}

/// <summary>
/// A rejected bomb costs little memory: bytes allocated by the whole process while the request runs (this
/// collection runs alone, so nothing else allocates much meanwhile) stay under <see cref="BoundBytes"/>.
/// </summary>
[Collection(MemoryMeasuredCollection.Name)]
public class UploadBombMemoryTests(SmallUploadsKestrelFactory factory, ITestOutputHelper output) : IClassFixture<SmallUploadsKestrelFactory>
{
    /// <summary>The stated bound on what one rejected bomb may allocate.</summary>
    private const long BoundBytes = 32L << 20;

    private async Task<HttpClient> ClientAsync()
    {
        var tenant = await factory.CreateTenantAsync($"bomb-{Guid.NewGuid():N}");
        var client = new HttpClient { BaseAddress = new Uri(factory.BaseUrl) };
        client.DefaultRequestHeaders.Authorization = new("Bearer", (await factory.CreateKeyAsync(tenant.Id)).Secret);
        return client;
    }

    private static async Task<long> AllocatedDuringAsync(Func<Task> work)
    {
        GC.Collect();
        var before = GC.GetTotalAllocatedBytes(precise: true);
        await work();
        return GC.GetTotalAllocatedBytes(precise: true) - before;
    }

    [Fact]
    public async Task PaxHeaderDeclaringHalfAGibibyteIsRefusedWithinTheBound()
    {
        var client = await ClientAsync();
        var bomb = ArchiveBuilder.PaxBombTarGz(512L << 20);
        Assert.True(bomb.Length < 8 << 20, $"bomb is {bomb.Length} bytes");
        using var form = UploadLimitsTests.ArchiveForm("bomb", bomb, "adapter.tar.gz");
        await form.LoadIntoBufferAsync();
        HttpResponseMessage? response = null;
        var allocated = await AllocatedDuringAsync(async () => response = await client.PostAsync("/v1/adapters", form));
        output.WriteLine($"PAX bomb of {bomb.Length >> 10} KiB declaring 512 MiB: {allocated >> 10} KiB allocated");
        await ErrorAssert.IsEnvelopeAsync(response!, HttpStatusCode.BadRequest, param: "file");
        Assert.True(allocated < BoundBytes, $"allocated {allocated >> 20} MiB while refusing a {bomb.Length >> 10} KiB PAX bomb (bound {BoundBytes >> 20} MiB)");
    }

    [Fact]
    public async Task SingleLineJsonlOf32MiBIsRefusedWithinTheBound()
    {
        var client = await ClientAsync();
        var line = Encoding.UTF8.GetBytes("{\"prompt\":\"" + new string('x', 32 << 20) + "\",\"completion\":\"b\"}");
        using var form = UploadLimitsTests.JsonlForm(line);
        await form.LoadIntoBufferAsync();
        HttpResponseMessage? response = null;
        var allocated = await AllocatedDuringAsync(async () => response = await client.PostAsync("/v1/files", form));
        output.WriteLine($"single-line JSONL of {line.Length >> 20} MiB: {allocated >> 10} KiB allocated");
        await ErrorAssert.IsEnvelopeAsync(response!, HttpStatusCode.BadRequest, "invalid_file_format", "file");
        Assert.True(allocated < BoundBytes, $"allocated {allocated >> 20} MiB while refusing a {line.Length >> 20} MiB single-line file (bound {BoundBytes >> 20} MiB)");
    }
}
