using Xunit.Abstractions;

namespace Loom.Cluster.Tests;

/// <summary>The portal's model pickers offer the base models a live engine serves, as /v1/models does: a registry row
/// whose last node is gone (here one no node ever served) is not offered.</summary>
[Collection(LoopbackCluster.Collection)]
public sealed class PortalPickerTests(LoopbackCluster cluster, ITestOutputHelper output)
{
    private const string Retired = "retired-chat";

    [Fact]
    public async Task ThePickersListOnlyBaseModelsALiveEngineServes()
    {
        await cluster.ScalarAsync<int>("INSERT INTO base_models (\"Id\", \"Name\", \"Path\", \"ContextLength\", \"WeightFormat\", \"CreatedAt\") " +
                                       "VALUES (gen_random_uuid(), @p, '/nowhere', 1024, 'Auto', now()) RETURNING 1", Retired);
        using var http = new HttpClient(new HttpClientHandler { AllowAutoRedirect = false, UseCookies = false }) { Timeout = TimeSpan.FromSeconds(60) };
        var cookie = await PortalSignIn.AdminCookieAsync(http, cluster.Api.BaseAddress);
        string[] served = [SlowChatModel.Name, LoopbackCluster.ModelName, LoopbackCluster.TwinName];

        var upload = PortalSignIn.Options(await PortalSignIn.PageAsync(http, cluster.Api.BaseAddress, "/adapters", cookie), "adapter-base");
        output.WriteLine($"adapter upload picker: {string.Join(", ", upload)}");
        Assert.Equal(served, upload.Order(StringComparer.Ordinal).ToArray());

        var playground = PortalSignIn.Options(await PortalSignIn.PageAsync(http, cluster.Api.BaseAddress, "/playground", cookie), "pg-model");
        output.WriteLine($"playground picker: {string.Join(", ", playground)}");
        Assert.DoesNotContain(Retired, playground);
        Assert.All(served, m => Assert.Contains(m, playground));
    }
}
