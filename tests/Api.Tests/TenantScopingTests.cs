using System.Net;
using System.Text.Json;
using Loom.Data.Entities;
using Microsoft.EntityFrameworkCore;

namespace Loom.Api.Tests;

/// <summary>Tenant B can never see tenant A's keys, adapters, files or usage: not by list, id, count or API.</summary>
public class TenantScopingTests(LoomFactory factory) : IClassFixture<LoomFactory>, IAsyncLifetime
{
    private Tenant _a = null!, _b = null!;
    private Adapter _adapterA = null!;
    private FileObject _fileA = null!;
    private string _keyA = "", _keyB = "";
    private Guid _keyIdA;

    public async Task InitializeAsync()
    {
        _a = await factory.CreateTenantAsync($"a-{Guid.NewGuid():N}");
        _b = await factory.CreateTenantAsync($"b-{Guid.NewGuid():N}");
        var ka = await factory.CreateKeyAsync(_a.Id, "a key");
        (_keyA, _keyIdA) = (ka.Secret, ka.Key.Id);
        _keyB = (await factory.CreateKeyAsync(_b.Id, "b key")).Secret;

        await factory.InTenantAsync(_a.Id, async db =>
        {
            var model = new BaseModel { Id = Guid.NewGuid(), Name = $"base-{Guid.NewGuid():N}", Path = "/models/x", ContextLength = 2048, CreatedAt = DateTimeOffset.UtcNow };
            db.BaseModels.Add(model);
            _adapterA = new Adapter
            {
                Id = Guid.NewGuid(), TenantId = _a.Id, Name = "a-secret-adapter", BaseModelId = model.Id, Rank = 8, Alpha = 16,
                TargetModules = "q_proj,v_proj", BlobSha256 = new string('0', 64), SizeBytes = 1, CreatedAt = DateTimeOffset.UtcNow,
            };
            _fileA = new FileObject { Id = Guid.NewGuid(), TenantId = _a.Id, FileName = "a.jsonl", Purpose = "fine-tune", Bytes = 10, BlobSha256 = new string('1', 64), CreatedAt = DateTimeOffset.UtcNow };
            db.Adapters.Add(_adapterA);
            db.Files.Add(_fileA);
            db.UsageRecords.Add(new UsageRecord { TenantId = _a.Id, Model = "a-secret-adapter", PromptTokens = 3, CompletionTokens = 4, LatencyMs = 5, CreatedAt = DateTimeOffset.UtcNow });
            return await db.SaveChangesAsync();
        });
    }

    public Task DisposeAsync() => Task.CompletedTask;

    [Fact]
    public async Task TenantSeesOwnRows()
    {
        var counts = await factory.InTenantAsync(_a.Id, async db =>
            (await db.ApiKeys.CountAsync(), await db.Adapters.CountAsync(), await db.Files.CountAsync(), await db.UsageRecords.CountAsync()));
        Assert.Equal((1, 1, 1, 1), counts);
    }

    [Fact]
    public async Task OtherTenantSeesNothingThroughAnyQuery()
    {
        await factory.InTenantAsync(_b.Id, async db =>
        {
            Assert.DoesNotContain(await db.ApiKeys.ToListAsync(), k => k.TenantId == _a.Id);
            Assert.Empty(await db.Adapters.ToListAsync());
            Assert.Empty(await db.Files.ToListAsync());
            Assert.Empty(await db.UsageRecords.ToListAsync());
            Assert.Null(await db.Adapters.FindAsync(_adapterA.Id));
            Assert.Null(await db.Files.FindAsync(_fileA.Id));
            Assert.Null(await db.ApiKeys.FindAsync(_keyIdA));
            Assert.False(await db.Adapters.AnyAsync(a => a.Name == "a-secret-adapter"));
            Assert.Equal(0, await db.Files.Where(f => f.TenantId == _a.Id).CountAsync());
            Assert.Equal(0L, await db.UsageRecords.SumAsync(u => (long)u.PromptTokens));
            return 0;
        });
    }

    [Fact]
    public async Task NoTenantContextSeesNothing()
    {
        var total = await factory.InTenantAsync(null, async db =>
            await db.ApiKeys.CountAsync() + await db.Adapters.CountAsync() + await db.Files.CountAsync() + await db.UsageRecords.CountAsync());
        Assert.Equal(0, total);
    }

    [Fact]
    public async Task OtherTenantsKeysAreInvisibleThroughTheApi()
    {
        var b = factory.ClientWithKey(_keyB);
        var list = await b.GetStringAsync("/v1/api_keys");
        Assert.DoesNotContain(_keyIdA.ToString(), list);
        Assert.Single(JsonDocument.Parse(list).RootElement.GetProperty("data").EnumerateArray());

        // B cannot revoke A's key: 404, and A's key keeps working.
        await ErrorAssert.IsEnvelopeAsync(await b.DeleteAsync($"/v1/api_keys/{_keyIdA}"), HttpStatusCode.NotFound, "api_key_not_found");
        Assert.Equal(HttpStatusCode.OK, (await factory.ClientWithKey(_keyA).GetAsync("/v1/models")).StatusCode);
    }

    [Fact]
    public async Task OtherTenantsAdaptersAreInvisibleAsModels()
    {
        var b = factory.ClientWithKey(_keyB);
        Assert.DoesNotContain("a-secret-adapter", await b.GetStringAsync("/v1/models"));
        await ErrorAssert.IsEnvelopeAsync(await b.GetAsync("/v1/models/a-secret-adapter"), HttpStatusCode.NotFound, "model_not_found", "model");

        var a = factory.ClientWithKey(_keyA);
        Assert.Contains("a-secret-adapter", await a.GetStringAsync("/v1/models"));
        var own = await a.GetAsync("/v1/models/a-secret-adapter");
        Assert.Equal(HttpStatusCode.OK, own.StatusCode);
        var model = JsonDocument.Parse(await own.Content.ReadAsStringAsync()).RootElement;
        Assert.Equal("model", model.GetProperty("object").GetString());
        Assert.True(model.GetProperty("created").GetInt64() > 0);
    }
}
