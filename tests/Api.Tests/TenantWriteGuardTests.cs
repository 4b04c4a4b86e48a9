using Loom.Data;
using Loom.Data.Entities;
using Loom.Data.Tenancy;
using Microsoft.EntityFrameworkCore;

namespace Loom.Api.Tests;

/// <summary>The write side of tenant scoping: a save never inserts, updates or deletes another tenant's rows.</summary>
public class TenantWriteGuardTests(LoomFactory factory) : IClassFixture<LoomFactory>, IAsyncLifetime
{
    private Tenant _a = null!, _b = null!;
    private Guid _keyA;

    public async Task InitializeAsync()
    {
        _a = await factory.CreateTenantAsync($"wa-{Guid.NewGuid():N}");
        _b = await factory.CreateTenantAsync($"wb-{Guid.NewGuid():N}");
        _keyA = (await factory.CreateKeyAsync(_a.Id, "a key")).Key.Id;
    }

    public Task DisposeAsync() => Task.CompletedTask;

    private static FileObject File(Guid tenant) => new()
    {
        Id = Guid.NewGuid(), TenantId = tenant, FileName = "x.jsonl", Purpose = "fine-tune", Bytes = 1,
        BlobSha256 = new string('2', 64), CreatedAt = DateTimeOffset.UtcNow,
    };

    private Task<int> CountFilesOfAAsync() => factory.InTenantAsync(_a.Id, db => db.Files.CountAsync());

    [Fact]
    public async Task InsertForAnotherTenantIsRefusedAndNothingIsStored()
    {
        await Assert.ThrowsAsync<TenantWriteException>(() => factory.InTenantAsync(_b.Id, db =>
        {
            db.Files.Add(File(_a.Id));
            return db.SaveChangesAsync();
        }));
        Assert.Equal(0, await CountFilesOfAAsync());
    }

    [Fact]
    public async Task InsertWithoutATenantIsRefused()
    {
        await Assert.ThrowsAsync<TenantWriteException>(() => factory.InTenantAsync(null, db =>
        {
            db.Files.Add(File(_a.Id));
            return db.SaveChangesAsync();
        }));
        Assert.Equal(0, await CountFilesOfAAsync());
    }

    [Fact]
    public void SynchronousSaveIsGuardedToo()
    {
        Assert.Throws<TenantWriteException>(() => factory.InTenantAsync(_b.Id, db =>
        {
            db.Files.Add(File(_a.Id));
            return Task.FromResult(db.SaveChanges());
        }).GetAwaiter().GetResult());
    }

    [Fact]
    public async Task UpdateAndDeleteOfAnotherTenantsRowAreRefused()
    {
        // Tenant B reaches A's key past the query filter (as a careless IgnoreQueryFilters would) and tries to write.
        await Assert.ThrowsAsync<TenantWriteException>(() => factory.InTenantAsync(_b.Id, async db =>
        {
            var key = await db.ApiKeys.IgnoreQueryFilters().SingleAsync(k => k.Id == _keyA);
            key.RevokedAt = DateTimeOffset.UtcNow;
            return await db.SaveChangesAsync();
        }));
        await Assert.ThrowsAsync<TenantWriteException>(() => factory.InTenantAsync(_b.Id, async db =>
        {
            db.ApiKeys.Remove(await db.ApiKeys.IgnoreQueryFilters().SingleAsync(k => k.Id == _keyA));
            return await db.SaveChangesAsync();
        }));
        var key = await factory.InTenantAsync(_a.Id, db => db.ApiKeys.AsNoTracking().SingleAsync(k => k.Id == _keyA));
        Assert.Null(key.RevokedAt);
    }

    [Fact]
    public async Task MovingOwnRowToAnotherTenantIsRefused()
    {
        await Assert.ThrowsAsync<TenantWriteException>(() => factory.InTenantAsync(_a.Id, async db =>
        {
            var key = await db.ApiKeys.SingleAsync(k => k.Id == _keyA);
            key.TenantId = _b.Id;
            return await db.SaveChangesAsync();
        }));
        Assert.Equal(1, await factory.InTenantAsync(_a.Id, db => db.ApiKeys.CountAsync(k => k.Id == _keyA)));
    }

    [Fact]
    public async Task OwnRowsAreWrittenAndCrossTenantWorkIsExplicit()
    {
        Assert.Equal(1, await factory.InTenantAsync(_b.Id, db =>
        {
            db.Files.Add(File(_b.Id));
            return db.SaveChangesAsync();
        }));
        Assert.Equal(1, await factory.InTenantAsync(null, async db =>
        {
            using (db.WritingAcrossTenants())
            {
                db.Files.Add(File(_a.Id));
                return await db.SaveChangesAsync();
            }
        }));
        // The permission ends with its handle.
        await Assert.ThrowsAsync<TenantWriteException>(() => factory.InTenantAsync(null, async db =>
        {
            using (db.WritingAcrossTenants()) { }
            db.Files.Add(File(_a.Id));
            return await db.SaveChangesAsync();
        }));
        Assert.Equal(1, await CountFilesOfAAsync());
    }
}
